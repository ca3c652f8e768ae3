// loader.loadBatches and the pipeline under it (src/pipeline.ts): batches commit one at a time in
// order, the next batch is read and validated while the current one is in the database, and the
// first failure stops the stream with every earlier batch loaded and nothing after it. Each batch
// is validated once, by the pipeline, and loaded as validated: no validation is kept elsewhere.
import { describe, expect, it } from "vitest";
import { BatchValidationError, KeyMismatchError, type LoadResult } from "../src/index.js";
import { openLoader } from "../src/loader.js";
import { loadInOrder } from "../src/pipeline.js";
import { createTenants } from "../src/server/tenants.js";
import { uniqueTable, useDatabase } from "./helpers/context.js";

const ctx = useDatabase("pipeline");
const schema = { properties: { id: { type: "integer" }, name: { type: "string" } } };
const up = (id: number, sequence: number, name: string) => ({ action: "upsert", sequence, data: { id, name } });
const batch = (table: string, messages: unknown[], keyNames = ["id"]) => ({ table_name: table, key_names: keyNames, schema, messages });

async function collect<T>(it: AsyncIterable<T>): Promise<{ results: T[]; error: unknown }> {
  const results: T[] = [];
  try {
    for await (const r of it) results.push(r);
    return { results, error: null };
  } catch (e) {
    return { results, error: e };
  }
}

describe("loader.loadBatches", () => {
  it("loads in order and yields each result as its batch commits", async () => {
    const loader = await ctx.loader();
    const t = uniqueTable("order");
    // Equal sequences: the stored row stays, so the first batch to commit decides the name.
    async function* stream() {
      yield batch(t, [up(1, 5, "first"), up(2, 1, "two")]);
      yield batch(t, [up(1, 5, "second"), up(3, 1, "three")]);
      yield batch(t, [up(2, 2, "two again")]);
    }
    const { results, error } = await collect(loader.loadBatches(stream()));
    expect(error).toBeNull();
    expect(results.map((r: LoadResult) => [r.inserted, r.updated, r.skipped])).toEqual([
      [2, 0, 0],
      [1, 0, 1],
      [0, 1, 0],
    ]);
    expect(await ctx.query(`select id::int, name from "${t}" order by id`)).toEqual([
      { id: 1, name: "first" },
      { id: 2, name: "two again" },
      { id: 3, name: "three" },
    ]);
    // A plain array works too.
    const again = await collect(loader.loadBatches([batch(t, [up(3, 9, "nine")])]));
    expect(again.results).toMatchObject([{ updated: 1 }]);
  });

  it("stops at the first failure: earlier batches loaded, the failing one and later ones not", async () => {
    const loader = await ctx.loader();
    const t = uniqueTable("fail");
    const after = uniqueTable("after");
    const batches = [
      batch(t, [up(1, 1, "a")]),
      batch(t, [up(2, 1, "b")]),
      batch(t, [{ action: "upsert", sequence: 1, data: { id: "not a number", name: "c" } }]),
      batch(after, [up(1, 1, "never")]),
    ];
    const { results, error } = await collect(loader.loadBatches(batches));
    expect(results).toHaveLength(2);
    expect(error).toBeInstanceOf(BatchValidationError);
    expect(await ctx.query(`select id::int from "${t}" order by id`)).toEqual([{ id: 1 }, { id: 2 }]);
    expect(await ctx.query("select to_regclass($1)::text as t", [`"${after}"`])).toEqual([{ t: null }]);
  });

  it("reads and validates batch N+1 while batch N is in the database, and starts N+1 only after N has committed", async () => {
    const { loader, loadValidated } = await openLoader({ connectionString: ctx.url });
    const t = uniqueTable("overlap");
    const events: string[] = [];
    // A batch that notes each time it is validated (checkBatch reads its messages once per check).
    const noted = (n: number) => {
      const b = batch(t, [up(n, n, `v${n}`)]);
      return Object.defineProperty({ ...b }, "messages", {
        enumerable: true,
        get() {
          events.push(`validate ${n}`);
          return b.messages;
        },
      });
    };
    async function* stream() {
      for (let n = 1; n <= 3; n++) {
        events.push(`read ${n}`);
        yield { n, value: noted(n) };
      }
    }
    const loaded: number[] = [];
    try {
      for await (const { item } of loadInOrder(stream(), {
        batch: (i) => i.value,
        load: async (validated) => {
          const n = validated.messages[0]?.sequence;
          events.push(`start ${n}`);
          const r = await loadValidated(validated);
          events.push(`commit ${n}`);
          return r;
        },
      })) {
        loaded.push(item.n);
      }
    } finally {
      await loader.close();
    }
    expect(loaded).toEqual([1, 2, 3]);
    // Each batch validated exactly once: ahead of its load, never again by the load itself.
    expect(events).toEqual([
      "read 1",
      "validate 1",
      "start 1",
      "read 2",
      "validate 2",
      "commit 1",
      "start 2",
      "read 3",
      "validate 3",
      "commit 2",
      "start 3",
      "commit 3",
    ]);
    expect(await ctx.query(`select count(*)::int as n from "${t}"`)).toEqual([{ n: 3 }]);
  });

  it("a consumer that stops early leaves nothing loading and closes the stream", async () => {
    const loader = await ctx.loader();
    const t = uniqueTable("early");
    const second = uniqueTable("second");
    let closed = false;
    async function* stream() {
      try {
        yield batch(t, [up(1, 1, "a")]);
        yield batch(second, [up(1, 1, "b")]);
        yield batch(second, [up(2, 1, "c")]);
      } finally {
        closed = true;
      }
    }
    for await (const r of loader.loadBatches(stream())) {
      expect(r.inserted).toBe(1);
      break;
    }
    expect(closed).toBe(true);
    expect(await ctx.query("select to_regclass($1)::text as t", [`"${second}"`])).toEqual([{ t: null }]);
  });

  it("an error of the stream itself comes after the result of the batch in flight", async () => {
    const loader = await ctx.loader();
    const t = uniqueTable("source");
    async function* stream() {
      yield batch(t, [up(1, 1, "a")]);
      throw new Error("the source broke");
    }
    const { results, error } = await collect(loader.loadBatches(stream()));
    expect(results).toMatchObject([{ inserted: 1 }]);
    expect((error as Error).message).toBe("the source broke");
    expect(await ctx.query(`select count(*)::int as n from "${t}"`)).toEqual([{ n: 1 }]);
  });

  it("loadBatches validates each batch once, ahead of its load", async () => {
    const loader = await ctx.loader();
    const t = uniqueTable("once");
    const reads = [0, 0];
    const counted = (n: number) => {
      const b = batch(t, [up(n + 1, 1, `v${n}`)]);
      return Object.defineProperty({ ...b }, "messages", {
        enumerable: true,
        get() {
          reads[n] = (reads[n] ?? 0) + 1;
          return b.messages;
        },
      });
    };
    const { results, error } = await collect(loader.loadBatches([counted(0), counted(1)]));
    expect(error).toBeNull();
    expect(results).toMatchObject([{ inserted: 1 }, { inserted: 1 }]);
    expect(reads).toEqual([1, 1]);
  });

  // No validation is kept for later (issue 15's first version cached it by object identity): a
  // batch read ahead, then not loaded because the one before it failed, and changed afterwards,
  // is checked again as it now is by a later loadBatch.
  it("a batch validated ahead but never loaded is validated afresh when loaded later", async () => {
    const loader = await ctx.loader();
    const t = uniqueTable("ahead");
    await loader.loadBatch(batch(t, [up(1, 1, "a")]));
    // The first batch fails in the database (other key_names), after the second was validated ahead.
    const second = batch(t, [up(2, 1, "b")]);
    const { results, error } = await collect(loader.loadBatches([batch(t, [up(3, 1, "c")], ["name"]), second]));
    expect(results).toEqual([]);
    expect(error).toBeInstanceOf(KeyMismatchError);
    // Changed since: its earlier validation must not be used.
    (second.messages[0] as { data: Record<string, unknown> }).data.id = "not a number";
    await expect(loader.loadBatch(second)).rejects.toBeInstanceOf(BatchValidationError);
    expect(await ctx.query(`select id::int from "${t}" order by id`)).toEqual([{ id: 1 }]);
  });

  it("a schema-bound tenant's loader (serve) forwards loadBatches to its real loader", async () => {
    const tenants = await createTenants({ connectionString: ctx.url }, 4);
    try {
      const t = uniqueTable("tenant");
      const loader = tenants.loaderFor("pipeline_tenant");
      const { results, error } = await collect(loader.loadBatches([batch(t, [up(1, 1, "a")]), batch(t, [up(1, 2, "b")])]));
      expect(error).toBeNull();
      expect(results).toMatchObject([{ inserted: 1 }, { updated: 1 }]);
      expect(await ctx.query(`select name from pipeline_tenant."${t}"`)).toEqual([{ name: "b" }]);
    } finally {
      await tenants.close();
    }
  });
});
