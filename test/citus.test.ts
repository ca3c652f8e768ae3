// Citus: only run against a Citus coordinator (SEQLOAD_TEST_CITUS=1 includes this file; see
// vitest.config.ts and .ci/citus.sh). Tables seqload creates are distributed where they should be,
// what Citus cannot do is refused with a clear error and nothing written, large batches load with
// exact counts, killed connections (the client's, or the coordinator's to a worker) leave all or
// nothing, and racing loaders end with every key at its highest sequence.
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Kysely, PostgresDialect, sql } from "kysely";
import pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { type Batch, DistributionChangeError, type Loader, SeqloadError, createLoader } from "../src/index.js";
import { uniqueTable, useDatabase } from "./helpers/context.js";
import { citusWorkers, urlForDatabase, withClient } from "./helpers/db.js";

const ctx = useDatabase("citus");
const schema = { properties: { id: { type: "integer" }, v: { type: "string" } } };
const rows = (from: number, n: number, sequence: number, v: string) =>
  Array.from({ length: n }, (_, i) => ({ action: "upsert", sequence, data: { id: from + i, v } }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(() => {
  if (citusWorkers().length < 2) {
    throw new Error("test/citus.test.ts needs a Citus coordinator with two workers (SEQLOAD_TEST_DATABASE_URL); see .ci/citus.sh");
  }
});

async function placement(table: string) {
  const [p] = await ctx.query<{ method: string; column: string | null; colocationid: number }>(
    `select partmethod as method, column_to_column_name(logicalrelid, partkey) as column, colocationid
       from pg_dist_partition where logicalrelid = $1::regclass`,
    [`"${table}"`],
  );
  const nodes = await ctx.query<{ port: number; shards: number }>(
    "select nodeport as port, count(*)::int as shards from citus_shards where table_name = $1::regclass group by nodeport order by nodeport",
    [`"${table}"`],
  );
  const [registry] = await ctx.query<{ distribution: string; distribution_column: string | null }>(
    "select distribution, distribution_column from seqload.tables where table_name = $1",
    [table],
  );
  return { partition: p ?? null, nodes, registry };
}

const workerPorts = () => citusWorkers().map((w) => Number(new URL(w).port));

describe("distribution", () => {
  it.each([
    { route: "small batch (array parameters)", copyThreshold: 1_000_000, n: 10 },
    { route: "new-table fast path (COPY, then the primary key)", copyThreshold: 0, n: 2_000 },
  ])("a new keyed table is hash-distributed on its first key column, shards on both workers: $route", async ({ copyThreshold, n }) => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("Dist Keyed");
    const keyed = { properties: { "Region ID": { type: "string" }, id: { type: "integer" }, v: { type: "string" } } };
    const messages = Array.from({ length: n }, (_, i) => ({
      action: "upsert",
      sequence: 1,
      data: { "Region ID": `r${i % 7}`, id: i, v: "x" },
    }));
    expect(await loader.loadBatch({ table_name: t, key_names: ["Region ID", "id"], schema: keyed, messages })).toMatchObject({
      inserted: n,
      updated: 0,
    });
    const p = await placement(t);
    expect(p.partition).toMatchObject({ method: "h", column: "Region ID" });
    expect(p.nodes.map((x) => x.port)).toEqual(workerPorts());
    expect(p.nodes.every((x) => x.shards > 0)).toBe(true);
    expect(p.registry).toEqual({ distribution: "hash", distribution_column: "Region ID" });
    // The primary key is on every shard (ON CONFLICT needs it there), in the batch's key order.
    const [pk] = await ctx.query<{ def: string }>(
      "select pg_get_constraintdef(oid) as def from pg_constraint where conrelid = $1::regclass and contype = 'p'",
      [`"${t}"`],
    );
    expect(pk?.def).toBe('PRIMARY KEY ("Region ID", id)');
    expect(await ctx.query(`select count(*)::int as n from "${t}"`)).toEqual([{ n }]);
  });

  it("a new keyless table is a single-shard distributed table (Citus 12+); distribute off keeps new tables local", async () => {
    const loader = await ctx.loader();
    const t = uniqueTable("dist_keyless");
    await loader.loadBatch({ table_name: t, schema, messages: rows(1, 3, 1, "a") });
    const p = await placement(t);
    expect(p.partition).toMatchObject({ method: "n", column: null });
    expect(p.partition?.colocationid).toBeGreaterThan(0);
    expect(p.nodes).toHaveLength(1);
    expect(workerPorts()).toContain(p.nodes[0]?.port);
    expect(p.registry).toEqual({ distribution: "single_shard", distribution_column: null });

    const local = await ctx.loader({ distribute: "off" });
    const l = uniqueTable("dist_off");
    await local.loadBatch({ table_name: l, key_names: ["id"], schema, messages: rows(1, 3, 1, "a") });
    const q = await placement(l);
    expect(q.partition).toBeNull();
    expect(q.registry).toEqual({ distribution: "local", distribution_column: null });
    // The same loader still loads a table distributed by hand, and records how it is placed.
    const h = uniqueTable("by_hand");
    await local.loadBatch({ table_name: h, key_names: ["id"], schema, messages: rows(1, 3, 1, "a") });
    await ctx.query("select create_distributed_table($1::regclass, 'id')", [`"${h}"`]);
    const more = { properties: { ...schema.properties, extra: { type: "boolean" } } };
    expect(
      await local.loadBatch({
        table_name: h,
        key_names: ["id"],
        schema: more,
        messages: [{ action: "upsert", sequence: 2, data: { id: 1, v: "b", extra: true } }],
      }),
    ).toMatchObject({ updated: 1 });
    expect((await placement(h)).registry).toEqual({ distribution: "hash", distribution_column: "id" });
  });

  it.each(["pg client after BEGIN", "kysely transaction"])(
    "in the caller's transaction (%s): a new table is distributed in that transaction; rolled back, nothing is left",
    async (mode) => {
      const loader = await ctx.loader();
      const pool = new pg.Pool({ connectionString: ctx.url, max: 1 });
      pool.on("error", () => {}); // the kill tests below terminate backends of this database
      const db = new Kysely<Record<string, Record<string, unknown>>>({ dialect: new PostgresDialect({ pool }) });
      try {
        const inTransaction = async (t: string, end: "COMMIT" | "ROLLBACK") => {
          const batch = { table_name: t, key_names: ["id"], schema, messages: rows(1, 50, 1, "a") };
          if (mode === "pg client after BEGIN") {
            const client = await pool.connect();
            try {
              await client.query("BEGIN");
              expect(await loader.loadBatch(batch, { client })).toMatchObject({ inserted: 50 });
              // Distributed already, inside the transaction, before the caller commits.
              const r = await client.query("select partmethod from pg_dist_partition where logicalrelid = $1::regclass", [`"${t}"`]);
              expect(r.rows).toEqual([{ partmethod: "h" }]);
              await client.query(end);
            } finally {
              client.release();
            }
          } else {
            const run = db.transaction().execute(async (trx) => {
              expect(await loader.loadBatch(batch, { transaction: trx })).toMatchObject({ inserted: 50 });
              const r = await sql<{
                partmethod: string;
              }>`select partmethod from pg_dist_partition where logicalrelid = ${`"${t}"`}::regclass`.execute(trx);
              expect(r.rows).toEqual([{ partmethod: "h" }]);
              if (end === "ROLLBACK") throw new Error("roll back");
            });
            if (end === "ROLLBACK") await expect(run).rejects.toThrow("roll back");
            else await run;
          }
        };
        const committed = uniqueTable("dist_caller");
        await inTransaction(committed, "COMMIT");
        const p = await placement(committed);
        expect(p.partition).toMatchObject({ method: "h", column: "id" });
        expect(p.nodes.map((x) => x.port)).toEqual(workerPorts());
        expect(p.registry).toEqual({ distribution: "hash", distribution_column: "id" });
        expect(await ctx.query(`select count(*)::int as n from "${committed}"`)).toEqual([{ n: 50 }]);
        const rolledBack = uniqueTable("dist_caller_rb");
        await inTransaction(rolledBack, "ROLLBACK");
        expect(await ctx.query("select to_regclass($1) as t", [`"${rolledBack}"`])).toEqual([{ t: null }]);
        expect(await ctx.query("select count(*)::int as n from seqload.tables where table_name = $1", [rolledBack])).toEqual([{ n: 0 }]);
      } finally {
        await db.destroy();
      }
    },
  );
});

describe("what Citus refuses", () => {
  it("widening the distribution column is a DistributionChangeError naming table and column; nothing is written", async () => {
    const loader = await ctx.loader();
    const t = uniqueTable("widen_key");
    await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages: rows(1, 5, 1, "a") });
    const wider = { properties: { id: { type: "number" }, v: { type: "string" }, added: { type: "string" } } };
    const err = await loader
      .loadBatch({
        table_name: t,
        key_names: ["id"],
        schema: wider,
        messages: [{ action: "upsert", sequence: 2, data: { id: 1.5, v: "b", added: "c" } }],
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DistributionChangeError);
    expect(err).toMatchObject({
      code: "DISTRIBUTION_COLUMN_CHANGE",
      table: t,
      column: "id",
      from: "bigint",
      to: "numeric",
      retryable: false,
    });
    expect((err as Error).message).toMatch(
      new RegExp(`table "${t}" is distributed by Citus on column "id".*from bigint to numeric.*Nothing was written`),
    );
    // Nothing written: no column added, the key's type unchanged, the rows and the load log as before.
    const columns = await ctx.query<{ name: string; type: string }>(
      "select attname as name, format_type(atttypid, atttypmod) as type from pg_attribute where attrelid = $1::regclass and attnum > 0 and not attisdropped order by attnum",
      [`"${t}"`],
    );
    expect(columns.map((c) => c.name)).not.toContain("added");
    expect(columns.find((c) => c.name === "id")?.type).toBe("bigint");
    expect(await ctx.query(`select count(*)::int as n, max(v) as v from "${t}"`)).toEqual([{ n: 5, v: "a" }]);
    expect(await ctx.query("select count(*)::int as n from seqload.loads where table_name = $1", [t])).toEqual([{ n: 1 }]);
  });

  it("a key already stored fails a COPY into a distributed table with XX000, not 23505: so on Citus a failed optimistic COPY rolls the whole transaction back", async () => {
    const loader = await ctx.loader({ copyThreshold: 1000 });
    const t = uniqueTable("copy_duplicate");
    await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages: rows(1, 1, 1, "a") });
    // What the optimistic COPY meets: the worker's unique violation, relayed without its SQLSTATE
    // (Citus's ReportCopyError keeps only the message and detail), so it cannot be told apart from
    // any other failure; so any failure of it rolls the loader's transaction back (src/route.ts) …
    const err = await withClient(ctx.url, async (c) => {
      await c.query("begin");
      try {
        const copy = c.query(copyFrom(`copy "${t}" (id, v, _sequence) from stdin`));
        return await pipeline(Readable.from(["100\tb\t2\n1\tb\t2\n"]), copy).catch((e: unknown) => e);
      } finally {
        await c.query("rollback");
      }
    });
    expect(err).toMatchObject({ code: "XX000", message: expect.stringMatching(/duplicate key/) });
    // … and a large batch of new keys with one stored key the sample misses runs again on the
    // staged upsert: exact counts, one load-log row, nothing of the failed COPY left.
    const batch = { table_name: t, key_names: ["id"], schema, messages: [...rows(1_000, 5_000, 2, "b"), ...rows(1, 1, 2, "b")] };
    const statements = vi.spyOn(pg.Client.prototype, "query");
    try {
      expect(await loader.loadBatch(batch)).toMatchObject({ inserted: 5_000, updated: 1, skipped: 0 });
      const texts = statements.mock.calls.map(([q]) => (typeof q === "string" ? q : ((q as { text?: string }).text ?? "")));
      const copies = texts.filter((q) => q.startsWith("COPY "));
      expect(copies.map((q) => (q.startsWith("COPY pg_temp.") ? "stage" : "table"))).toEqual(["table", "stage"]);
      expect(texts.slice(texts.indexOf(copies[0] as string))).toContain("ROLLBACK");
    } finally {
      statements.mockRestore();
    }
    expect(await ctx.query(`select count(*)::int as n, count(*) filter (where v = 'b')::int as b from "${t}"`)).toEqual([
      { n: 5_001, b: 5_001 },
    ]);
    expect(await ctx.query("select count(*)::int as n from seqload.loads where table_name = $1", [t])).toEqual([{ n: 2 }]);
  });

  it("drift of other columns propagates to the shards: a new column and a widened non-distribution key column", async () => {
    const loader = await ctx.loader();
    const t = uniqueTable("widen_other");
    const two = { properties: { id: { type: "integer" }, sub: { type: "integer" }, v: { type: "integer" } } };
    await loader.loadBatch({
      table_name: t,
      key_names: ["id", "sub"],
      schema: two,
      messages: [{ action: "upsert", sequence: 1, data: { id: 1, sub: 1, v: 1 } }],
    });
    const wider = { properties: { id: { type: "integer" }, sub: { type: "number" }, v: { type: "string" }, w: { type: "boolean" } } };
    expect(
      await loader.loadBatch({
        table_name: t,
        key_names: ["id", "sub"],
        schema: wider,
        messages: [
          { action: "upsert", sequence: 2, data: { id: 1, sub: 1, v: "one", w: true } },
          { action: "upsert", sequence: 2, data: { id: 1, sub: 1.5, v: "half", w: false } },
        ],
      }),
    ).toMatchObject({ inserted: 1, updated: 1 });
    expect(await ctx.query(`select sub::text, v, w from "${t}" order by sub`)).toEqual([
      { sub: "1", v: "one", w: true },
      { sub: "1.5", v: "half", w: false },
    ]);
  });
});

describe("exact counts on the COPY route", () => {
  it("a 20,000-row batch, its replay and its update (with deletes) load with exact counts, logged in the batch's transaction", async () => {
    const loader = await ctx.loader();
    const t = uniqueTable("big");
    const n = 20_000;
    const batch = (sequence: number, v: string): Batch => ({ table_name: t, key_names: ["id"], schema, messages: rows(0, n, sequence, v) });
    expect(await loader.loadBatch(batch(1, "first"))).toEqual({
      table: t,
      received: n,
      collapsed: 0,
      inserted: n,
      updated: 0,
      deleted: 0,
      skipped: 0,
      rejected: 0,
    });
    expect(await loader.loadBatch(batch(1, "replay"))).toEqual({
      table: t,
      received: n,
      collapsed: 0,
      inserted: 0,
      updated: 0,
      deleted: 0,
      skipped: n,
      rejected: 0,
    });
    // An update of every row, plus 5,000 new keys, 2,000 deletes and 3,000 stale rows.
    const update: Batch = {
      table_name: t,
      key_names: ["id"],
      schema,
      messages: [
        ...rows(0, 15_000, 2, "second"),
        ...Array.from({ length: 2_000 }, (_, i) => ({ action: "delete", sequence: 2, data: { id: 15_000 + i } })),
        ...rows(17_000, 3_000, 1, "stale"),
        ...rows(n, 5_000, 2, "new"),
      ],
    };
    expect(await loader.loadBatch(update)).toEqual({
      table: t,
      received: 25_000,
      collapsed: 0,
      inserted: 5_000,
      updated: 15_000,
      deleted: 2_000,
      skipped: 3_000,
      rejected: 0,
    });
    // A second large update without deletes (the route that counts from the command tag on a single node).
    expect(await loader.loadBatch({ ...batch(3, "third"), messages: rows(0, n + 5_000, 3, "third") })).toEqual({
      table: t,
      received: 25_000,
      collapsed: 0,
      inserted: 0,
      updated: 25_000,
      deleted: 0,
      skipped: 0,
      rejected: 0,
    });
    expect(
      await ctx.query(`select count(*)::int as n, count(_deleted_at)::int as deleted, min(_sequence)::int as seq from "${t}"`),
    ).toEqual([{ n: 25_000, deleted: 0, seq: 3 }]);
    expect(
      await ctx.query("select received, inserted, updated, deleted, skipped from seqload.loads where table_name = $1 order by id", [t]),
    ).toEqual([
      { received: n, inserted: n, updated: 0, deleted: 0, skipped: 0 },
      { received: n, inserted: 0, updated: 0, deleted: 0, skipped: n },
      { received: 25_000, inserted: 5_000, updated: 15_000, deleted: 2_000, skipped: 3_000 },
      { received: 25_000, inserted: 0, updated: 25_000, deleted: 0, skipped: 0 },
    ]);
  });

  it("full-table replication: activate_version retires older rows on every shard", async () => {
    const loader = await ctx.loader({ copyThreshold: 0 });
    const t = uniqueTable("fulltable");
    const v = (version: number, from: number, count: number, sequence: number): Batch => ({
      table_name: t,
      key_names: ["id"],
      schema,
      table_version: version,
      messages: [...rows(from, count, sequence, `v${version}`), { action: "activate_version", sequence }],
    });
    await loader.loadBatch(v(1, 0, 1_000, 1));
    expect(await loader.loadBatch(v(2, 500, 1_000, 2))).toMatchObject({ inserted: 500, updated: 500, deleted: 1, skipped: 0 });
    expect(await ctx.query(`select count(*) filter (where _deleted_at is null)::int as live, count(*)::int as n from "${t}"`)).toEqual([
      { live: 1_000, n: 1_500 },
    ]);
  });
});

/**
 * A statement-level trigger that makes every write to `t` sleep on the shards (Citus runs it on the
 * workers; the test databases allow triggers on distributed tables): a window, mid-statement and
 * before the two-phase commit, in which to kill a connection.
 */
async function slowDown(t: string, seconds: number) {
  await ctx.query(
    `create function "${t}_slow"() returns trigger language plpgsql as $$ begin perform pg_sleep(${seconds}); return null; end $$`,
  );
  await ctx.query(`create trigger slow before insert on "${t}" for each statement execute function "${t}_slow"()`);
}

/** Polls `query` (rows of { pid }) until it returns some. */
async function waitForPids(db: { query(text: string): Promise<{ rows: { pid: string }[] }> }, query: string): Promise<string[]> {
  for (let i = 0; i < 400; i++) {
    const r = await db.query(query);
    if (r.rows.length > 0) return r.rows.map((x) => x.pid);
    await sleep(25);
  }
  throw new Error("the loader's statement never reached the trigger");
}

const sleeping = "wait_event = 'PgSleep' and datname = current_database()";

describe("killed connections leave all or nothing", () => {
  it("the client's connection killed during a large batch: nothing written, the retry lands it once", async () => {
    const t = uniqueTable("kill_client");
    const loader = await ctx.loader({ maxRetries: 0 });
    await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages: rows(0, 10, 1, "before") });
    await slowDown(t, 2);
    const load = loader
      .loadBatch({ table_name: t, key_names: ["id"], schema, messages: rows(0, 30_000, 2, "after") })
      .catch((e: unknown) => e);
    // The shards sleep in the trigger; the coordinator backend that sent them is the loader's.
    const [gpid] = await waitForPids(
      { query: async (text) => ({ rows: await ctx.query<{ pid: string }>(text) }) },
      `select global_pid::text as pid from citus_stat_activity where ${sleeping} limit 1`,
    );
    await ctx.query("select pg_terminate_backend($1::bigint)", [gpid]);
    const err = await load;
    expect(err).toBeInstanceOf(SeqloadError);
    expect(err).toMatchObject({ code: "CONNECTION_FAILED", retryable: true });
    await ctx.query(`drop trigger slow on "${t}"`);
    expect(await ctx.query(`select count(*)::int as n, max(v) as v from "${t}"`)).toEqual([{ n: 10, v: "before" }]);
    expect(await ctx.query("select count(*)::int as n from seqload.loads where table_name = $1", [t])).toEqual([{ n: 1 }]);
    expect(await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages: rows(0, 30_000, 2, "after") })).toMatchObject({
      inserted: 29_990,
      updated: 10,
    });
  });

  it("the coordinator's connections to a worker killed mid-batch: the batch rolls back on every node, then loads once", async () => {
    const t = uniqueTable("kill_worker");
    const loader = await ctx.loader({ maxRetries: 0 });
    await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages: rows(0, 10, 1, "before") });
    await slowDown(t, 2);
    const db = new URL(ctx.url).pathname.slice(1);
    const load = loader
      .loadBatch({ table_name: t, key_names: ["id"], schema, messages: rows(0, 30_000, 2, "after") })
      .catch((e: unknown) => e);
    // On one worker, end the coordinator's connections while they write to its shards.
    const killed = await withClient(urlForDatabase(citusWorkers()[1] as string, db), async (w) => {
      const pids = await waitForPids(w, `select pid::text as pid from pg_stat_activity where ${sleeping}`);
      for (const pid of pids) await w.query("select pg_terminate_backend($1::int)", [pid]);
      return pids;
    });
    expect(killed.length).toBeGreaterThan(0);
    const err = await load;
    // The coordinator rolled the distributed transaction back on every node: retryable.
    expect(err).toBeInstanceOf(SeqloadError);
    expect(err).toMatchObject({ retryable: true });
    await ctx.query(`drop trigger slow on "${t}"`);
    expect(await ctx.query(`select count(*)::int as n, max(v) as v from "${t}"`)).toEqual([{ n: 10, v: "before" }]);
    expect(await ctx.query("select count(*)::int as n from seqload.loads where table_name = $1", [t])).toEqual([{ n: 1 }]);
    expect(await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages: rows(0, 30_000, 2, "after") })).toMatchObject({
      inserted: 29_990,
      updated: 10,
    });
    expect(await ctx.query(`select count(*)::int as n, min(v) as v from "${t}"`)).toEqual([{ n: 30_000, v: "after" }]);
  });
});

describe("racing loaders through the coordinator", () => {
  it("every key ends at its highest sequence, exact counts add up, on both routes", async () => {
    const t = uniqueTable("race");
    const keys = 3_000;
    const loaders: Loader[] = [];
    for (const copyThreshold of [0, 0, 1_000_000, 1_000_000]) {
      loaders.push(await createLoader({ connectionString: ctx.url, poolSize: 2, copyThreshold, maxRetries: 20 }));
    }
    try {
      // Each loader sends 6 batches over all keys; the sequence of (key, batch) is a fixed
      // permutation, so the highest one per key is known in advance.
      const seq = (loader: number, round: number, id: number) => ((id * 7 + loader * 13 + round * 29) % 97) * 100 + loader * 10 + round;
      const results = await Promise.all(
        loaders.map(async (loader, l) => {
          const out = [];
          for (let round = 0; round < 6; round++) {
            const messages = Array.from({ length: keys }, (_, id) => ({
              action: "upsert",
              sequence: seq(l, round, id),
              data: { id, v: `${l}/${round}` },
            }));
            out.push(await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages }));
          }
          return out;
        }),
      );
      const stored = await ctx.query<{ id: string; seq: number; v: string }>(`select id, _sequence::int as seq, v from "${t}" order by id`);
      expect(stored).toHaveLength(keys);
      for (const row of stored) {
        const id = Number(row.id);
        let best = { seq: -1, v: "" };
        for (let l = 0; l < 4; l++) for (let r = 0; r < 6; r++) if (seq(l, r, id) > best.seq) best = { seq: seq(l, r, id), v: `${l}/${r}` };
        expect(row).toEqual({ id: row.id, seq: best.seq, v: best.v });
      }
      const all = results.flat();
      const sum = (k: "inserted" | "updated" | "skipped") => all.reduce((s, r) => s + r[k], 0);
      expect(sum("inserted")).toBe(keys);
      expect(sum("inserted") + sum("updated") + sum("skipped")).toBe(keys * 24);
    } finally {
      for (const l of loaders) await l.close();
    }
  });
});
