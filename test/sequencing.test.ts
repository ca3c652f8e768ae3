// The sequencing rules of DESIGN.md, against real PostgreSQL, through both staging paths.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BatchValidationError, type Batch } from "../src/index.js";
import { PATHS, uniqueTable, useDatabase } from "./helpers/context.js";

const ctx = useDatabase("seq");
const schema = { properties: { id: { type: "integer" }, v: { type: ["null", "string"] } } };
const batchOf = (table: string, messages: Batch["messages"], keys: string[] = ["id"]): Batch => ({
  table_name: table,
  key_names: keys,
  schema,
  messages,
});
const up = (id: number, sequence: number | bigint | string, v: string) => ({ action: "upsert", sequence, data: { id, v } });

describe.each(PATHS)("sequencing rules ($path path)", ({ copyThreshold }) => {
  it("across batches: lower and equal sequences never replace the stored row, a higher one does", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("across");
    await loader.loadBatch(batchOf(t, [up(1, 10, "ten"), up(2, 10, "ten")]));
    const lower = await loader.loadBatch(batchOf(t, [up(1, 9, "nine")]));
    expect(lower).toMatchObject({ received: 1, inserted: 0, updated: 0, skipped: 1 });
    const equal = await loader.loadBatch(batchOf(t, [up(1, 10, "ten again")]));
    expect(equal).toMatchObject({ received: 1, updated: 0, skipped: 1 });
    const higher = await loader.loadBatch(batchOf(t, [up(2, 11, "eleven")]));
    expect(higher).toMatchObject({ received: 1, updated: 1, skipped: 0 });
    expect(await ctx.query(`select id, v, _sequence from "${t}" order by id`)).toEqual([
      { id: "1", v: "ten", _sequence: "10" },
      { id: "2", v: "eleven", _sequence: "11" },
    ]);
  });

  it("replaying a whole batch changes nothing and reports every message as skipped", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("replay");
    const b = batchOf(t, [up(1, 5, "a"), up(2, 6, "b"), up(3, 7, "c")]);
    await loader.loadBatch(b);
    const before = await ctx.query(`select *, xmin::text as x from "${t}" order by id`);
    const r = await loader.loadBatch(b);
    expect(r).toEqual({ table: t, received: 3, collapsed: 0, inserted: 0, updated: 0, deleted: 0, skipped: 3, rejected: 0 });
    expect(await ctx.query(`select *, xmin::text as x from "${t}" order by id`)).toEqual(before);
  });

  it("in a batch, the highest sequence wins and on a tie the later message wins", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("tie");
    const r = await loader.loadBatch(
      batchOf(t, [up(1, 5, "first"), up(1, 7, "high"), up(1, 3, "low"), up(2, 4, "a"), up(2, 4, "b"), up(2, 4, "c")]),
    );
    expect(r).toMatchObject({ received: 6, collapsed: 4, inserted: 2 });
    expect(await ctx.query(`select id, v from "${t}" order by id`)).toEqual([
      { id: "1", v: "high" },
      { id: "2", v: "c" },
    ]);
  });

  for (const [label, toSeq] of [
    ["decimal strings", (s: string) => s],
    ["bigints", (s: string) => BigInt(s)],
  ] as const) {
    it(`sequences above 2^53 as ${label} choose the right winner and are stored exactly, in either order`, async () => {
      const loader = await ctx.loader({ copyThreshold });
      const lo = "1700000000000000001";
      const hi = "1700000000000000002";
      for (const order of [
        [lo, hi],
        [hi, lo],
      ]) {
        // In one batch…
        const t1 = uniqueTable("big_in");
        await loader.loadBatch(
          batchOf(
            t1,
            order.map((s) => up(1, toSeq(s), s)),
          ),
        );
        expect(await ctx.query(`select v, _sequence::text from "${t1}"`)).toEqual([{ v: hi, _sequence: hi }]);
        // …and across batches.
        const t2 = uniqueTable("big_across");
        for (const s of order) await loader.loadBatch(batchOf(t2, [up(1, toSeq(s), s)]));
        expect(await ctx.query(`select v, _sequence::text from "${t2}"`)).toEqual([{ v: hi, _sequence: hi }]);
      }
      // The extremes of int64 are stored exactly.
      const t3 = uniqueTable("extremes");
      await loader.loadBatch(batchOf(t3, [up(1, toSeq("-9223372036854775808"), "min"), up(2, toSeq("9223372036854775807"), "max")]));
      expect(await ctx.query(`select id, _sequence::text from "${t3}" order by id`)).toEqual([
        { id: "1", _sequence: "-9223372036854775808" },
        { id: "2", _sequence: "9223372036854775807" },
      ]);
    });
  }

  it("a JS number above 2^53 is rejected as unsafe", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("unsafe");
    // eslint-disable-next-line no-loss-of-precision -- the point: JavaScript has already rounded this literal
    const err = await loader.loadBatch(batchOf(t, [up(1, 1700000000000000001, "x")])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BatchValidationError);
    expect((err as BatchValidationError).issues).toEqual([
      { index: 0, path: "/messages/0/sequence", message: expect.stringMatching(/above 2\^53.*bigint or a decimal string/) },
    ]);
    expect(await ctx.query("select to_regclass($1) as t", [`"${t}"`])).toEqual([{ t: null }]);
  });

  it("composite keys: rows are identified by every key column, in order", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("composite");
    const cschema = { properties: { tenant: { type: "string" }, id: { type: "integer" }, v: { type: "string" } } };
    const mk = (tenant: string, id: number, sequence: number, v: string) => ({ action: "upsert", sequence, data: { tenant, id, v } });
    const r1 = await loader.loadBatch({
      table_name: t,
      key_names: ["tenant", "id"],
      schema: cschema,
      messages: [mk("a", 1, 1, "a1"), mk("b", 1, 1, "b1"), mk("a", 1, 2, "a1'")],
    });
    expect(r1).toMatchObject({ received: 3, collapsed: 1, inserted: 2 });
    const r2 = await loader.loadBatch({
      table_name: t,
      key_names: ["tenant", "id"],
      schema: cschema,
      messages: [mk("b", 1, 5, "b1'"), mk("a", 2, 1, "a2"), mk("a", 1, 1, "stale")],
    });
    expect(r2).toMatchObject({ inserted: 1, updated: 1, skipped: 1 });
    expect(await ctx.query(`select tenant, id, v from "${t}" order by tenant, id`)).toEqual([
      { tenant: "a", id: "1", v: "a1'" },
      { tenant: "a", id: "2", v: "a2" },
      { tenant: "b", id: "1", v: "b1'" },
    ]);
    const pk = await ctx.query<{ cols: string[] }>(
      `select array_agg(a.attname::text order by k.ord) as cols from pg_constraint c cross join unnest(c.conkey) with ordinality k(n, ord)
       join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.n where c.conrelid = $1::regclass and c.contype = 'p'`,
      [`"${t}"`],
    );
    expect(pk[0]?.cols).toEqual(["tenant", "id"]);
  });

  it("keyless tables append every message, duplicates included", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("keyless");
    const b: Batch = { table_name: t, schema, messages: [up(1, 1, "a"), up(1, 1, "a"), up(1, 0, "older")] };
    expect(await loader.loadBatch(b)).toEqual({
      table: t,
      received: 3,
      collapsed: 0,
      inserted: 3,
      updated: 0,
      deleted: 0,
      skipped: 0,
      rejected: 0,
    });
    expect(await loader.loadBatch({ ...b, key_names: [] })).toMatchObject({ inserted: 3 });
    expect(await ctx.query(`select count(*)::int as n from "${t}"`)).toEqual([{ n: 6 }]);
  });

  it("counts add up on a mixed batch: received = collapsed + inserted + updated + deleted + skipped", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("mixed");
    await loader.loadBatch(batchOf(t, [up(1, 10, "a"), up(2, 10, "b"), up(3, 10, "c"), up(4, 10, "d")]));
    const r = await loader.loadBatch(
      batchOf(t, [
        up(1, 11, "updated"), // updated
        up(2, 9, "stale"), // skipped
        up(2, 8, "staler"), // collapsed
        { action: "delete", sequence: 12, data: { id: 3 } }, // deleted
        up(5, 1, "new"), // inserted
        up(5, 2, "newer"), // wins over the previous one (collapsed): inserted once
        up(4, 10, "tie with stored"), // skipped
      ]),
    );
    expect(r).toEqual({ table: t, received: 7, collapsed: 2, inserted: 1, updated: 1, deleted: 1, skipped: 2, rejected: 0 });
    expect(r.received).toBe(r.collapsed + r.inserted + r.updated + r.deleted + r.skipped);
    expect(await ctx.query(`select id, v, _deleted_at is not null as deleted from "${t}" order by id`)).toEqual([
      { id: "1", v: "updated", deleted: false },
      { id: "2", v: "b", deleted: false },
      { id: "3", v: "c", deleted: true },
      { id: "4", v: "d", deleted: false },
      { id: "5", v: "newer", deleted: false },
    ]);
  });
});

/** The in-memory model of the rules: per key, the highest sequence wins; ties go to the later message. */
type ModelRow = { seq: bigint; v: string | null; deleted: boolean };
function applyToModel(model: Map<number, ModelRow>, messages: { id: number; seq: bigint; v: string | null; del: boolean }[]): void {
  const winners = new Map<number, { seq: bigint; v: string | null; del: boolean }>();
  for (const m of messages) {
    const w = winners.get(m.id);
    if (w === undefined || m.seq >= w.seq) winners.set(m.id, m);
  }
  for (const [id, m] of winners) {
    const stored = model.get(id);
    if (stored !== undefined && m.seq <= stored.seq) continue;
    model.set(id, { seq: m.seq, v: m.del ? (stored?.v ?? null) : m.v, deleted: m.del });
  }
}

describe.each(PATHS)("property: random batches end in the model's state ($path path)", ({ copyThreshold }) => {
  it("matches the in-memory model for random keys, sequences with ties and values near ±2^63, and deletes", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const seqArb = fc.oneof(
      fc.bigInt({ min: 0n, max: 6n }),
      fc.bigInt({ min: 9223372036854775800n, max: 9223372036854775807n }),
      fc.bigInt({ min: -9223372036854775808n, max: -9223372036854775800n }),
    );
    const msgArb = fc.record({
      id: fc.integer({ min: 1, max: 6 }),
      seq: seqArb,
      v: fc.option(fc.string({ maxLength: 5 }), { nil: null }),
      del: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
    });
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(msgArb, { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 5 }), async (batches) => {
        run += 1;
        const t = `prop_${copyThreshold}_${run}`;
        const model = new Map<number, ModelRow>();
        for (const b of batches) {
          applyToModel(model, b);
          await loader.loadBatch({
            table_name: t,
            key_names: ["id"],
            schema,
            messages: b.map((m) =>
              m.del
                ? { action: "delete", sequence: m.seq, data: { id: m.id } }
                : { action: "upsert", sequence: m.seq.toString(), data: { id: m.id, v: m.v } },
            ),
          });
        }
        const rows = await ctx.query<{ id: string; v: string | null; _sequence: string; deleted: boolean }>(
          `select id, v, _sequence, _deleted_at is not null as deleted from "${t}" order by id`,
        );
        const expected = [...model.entries()]
          .sort(([a], [b]) => a - b)
          .map(([id, r]) => ({ id: String(id), v: r.v, _sequence: r.seq.toString(), deleted: r.deleted }));
        expect(rows).toEqual(expected);
      }),
      { numRuns: 40, seed: 20261124 },
    );
  });
});
