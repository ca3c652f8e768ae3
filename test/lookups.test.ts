// loader.maxSequence / loader.sequences / tableStatus: what is stored, read back for clients.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Batch, ConfigurationError, TableShapeError, createSequencer, maxSequence, tableStatus } from "../src/index.js";
import { loadSql } from "../src/sql.js";
import { PATHS, uniqueTable, useDatabase } from "./helpers/context.js";

const ctx = useDatabase("lookups");
const schema = { properties: { id: { type: "integer" }, name: { type: "string" } } };
const batch = (t: string, messages: Batch["messages"], keyNames = ["id"]): Batch => ({
  table_name: t,
  key_names: keyNames,
  schema,
  messages,
});
const up = (id: number | bigint, sequence: bigint | number, name = "x") => ({ action: "upsert", sequence, data: { id, name } });
const del = (id: number | bigint, sequence: bigint | number) => ({ action: "delete", sequence, data: { id } });

describe.each(PATHS)("lookups ($path path)", ({ copyThreshold }) => {
  it("maxSequence: null before any load, then the highest sequence committed, tombstones included; a replay of older versions does not lower it", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("max");
    expect(await loader.maxSequence(t)).toBeNull();
    await loader.loadBatch(batch(t, [up(1, 1795465705836066001n), up(2, 1795465705836066005n)]));
    expect(await loader.maxSequence(t)).toBe(1795465705836066005n);
    await loader.loadBatch(batch(t, [del(1, 1795465705836066009n)]));
    expect(await loader.maxSequence(t)).toBe(1795465705836066009n);
    await loader.loadBatch(batch(t, [up(1, 1795465705836066002n), up(2, 3)]));
    expect(await loader.maxSequence(t)).toBe(1795465705836066009n);
    const stored = await ctx.query<{ max: string }>(`select max(_sequence)::text as max from "${t}"`);
    expect(stored[0]?.max).toBe("1795465705836066009");
  });

  it("sequences: the stored sequence per key in the caller's order, tombstones marked, null for keys never stored; 19-digit keys exact", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("keys");
    const big = 9007199254740993n; // above 2^53: as a double it would be ...992
    await loader.loadBatch(
      batch(t, [up(1, 10), up(2, 20), up(big, 1795465705836066001n), up(9007199254740992n, 5), del(3, 30), up(2, 19, "older")]),
    );
    await loader.loadBatch(batch(t, [del(1, 11)]));
    const got = await loader.sequences(t, [{ id: 2 }, { id: 1 }, { id: 4 }, { id: big }, 3, "9007199254740993", { id: 2 }]);
    expect(got).toEqual([
      { sequence: 20n, deleted: false },
      { sequence: 11n, deleted: true },
      null,
      { sequence: 1795465705836066001n, deleted: false },
      { sequence: 30n, deleted: true },
      { sequence: 1795465705836066001n, deleted: false },
      { sequence: 20n, deleted: false },
    ]);
    expect(await loader.sequences(t, [])).toEqual([]);
    expect(await loader.sequences(uniqueTable("never"), [{ id: 1 }])).toEqual([null]);
  });

  it("sequences with a composite text/integer key, and rows retired by activate_version are tombstones", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("comp");
    const b = (messages: Batch["messages"], version: number): Batch => ({
      table_name: t,
      key_names: ["region", "id"],
      schema: { properties: { region: { type: "string" }, id: { type: "integer" } } },
      table_version: version,
      messages,
    });
    await loader.loadBatch(
      b(
        [
          { action: "upsert", sequence: 1, data: { region: "eu", id: 1 } },
          { action: "upsert", sequence: 2, data: { region: "us", id: 1 } },
        ],
        1,
      ),
    );
    await loader.loadBatch(
      b(
        [
          { action: "upsert", sequence: 3, data: { region: "eu", id: 1 } },
          { action: "activate_version", sequence: 4 },
        ],
        2,
      ),
    );
    expect(
      await loader.sequences(t, [
        { region: "us", id: 1 },
        { region: "eu", id: 1 },
        { region: "eu", id: 2 },
      ]),
    ).toEqual([{ sequence: 2n, deleted: true }, { sequence: 3n, deleted: false }, null]);
    // The activate_version message's own sequence counts as committed.
    expect(await loader.maxSequence(t)).toBe(4n);
    await expect(loader.sequences(t, [{ region: "us" }])).rejects.toThrow(ConfigurationError);
    await expect(loader.sequences(t, [{ region: "us" }])).rejects.toThrow(/key 0 has no value for key column "id"/);
    await expect(loader.sequences(t, ["us"])).rejects.toThrow(/must be an object with a value for each key column/);
  });
});

describe("lookups", () => {
  it("sequences on an append-only table is an error that says why", async () => {
    const loader = await ctx.loader();
    const t = uniqueTable("append");
    await loader.loadBatch(batch(t, [up(1, 1)], []));
    await expect(loader.sequences(t, [{ id: 1 }])).rejects.toThrow(TableShapeError);
    expect(await loader.maxSequence(t)).toBe(1n);
  });

  it("hostile table names go through the quoting helper; a name PostgreSQL would truncate is refused", async () => {
    const loader = await ctx.loader({ schema: 'we"ird sch;ema' });
    const t = `"; drop table x; --ünï`;
    await loader.loadBatch(batch(t, [up(1, 7), del(2, 8)]));
    expect(await loader.maxSequence(t)).toBe(8n);
    expect(await loader.sequences(t, [1, 2, 3])).toEqual([{ sequence: 7n, deleted: false }, { sequence: 8n, deleted: true }, null]);
    const [status] = await tableStatus((await ctx.loader()).pool, 'we"ird sch;ema', t);
    expect(status).toMatchObject({ table: t, rows: 2, live: 1, deleted: 1, maxSequence: 8n, batches: 1 });
    await expect(loader.maxSequence("x".repeat(64))).rejects.toThrow(/63 bytes/);
    // The same name in another schema is another table.
    expect(await (await ctx.loader()).maxSequence(t)).toBeNull();
  });

  it("maxSequence reads the load log through its index: one probe, not a read of every batch", async () => {
    const loader = await ctx.loader();
    const t = uniqueTable("plan");
    for (let i = 1; i <= 3; i++) await loader.loadBatch(batch(t, [up(i, i * 10)]));
    // A long history (lower sequences) and fresh statistics, so that the planner weighs the plans
    // as it would on a real load log: with 3 rows PostgreSQL 15 reads them all, which is cheaper.
    await ctx.query(
      `INSERT INTO seqload.loads (schema_name, table_name, received, collapsed, inserted, updated, deleted, skipped, min_sequence, max_sequence)
       SELECT 'public', $1, 1, 1, 1, 0, 0, 0, -g, -g FROM generate_series(1, 20000) AS g`,
      [t],
    );
    await ctx.query("ANALYZE seqload.loads");
    const plan = await ctx.query<{ "QUERY PLAN": string }>(
      `EXPLAIN (COSTS OFF) ${loadSql("max-sequence").replaceAll("$1", "'public'").replaceAll("$2", `'${t}'`)}`,
    );
    const text = plan.map((r) => r["QUERY PLAN"]).join("\n");
    expect(text).toContain("loads_max_sequence_idx");
    expect(text).toMatch(/Limit/);
    expect(await maxSequence(loader.pool, "public", t)).toBe(30n);
  });

  it("tableStatus: rows, live, deleted, max sequence, batches and last load per managed table", async () => {
    const loader = await ctx.loader({ schema: "status_lib" });
    expect(await tableStatus(loader.pool, "status_lib")).toEqual([]);
    await loader.loadBatch(batch("b_table", [up(1, 5), up(2, 6), del(3, 7)]));
    await loader.loadBatch(batch("a_table", [up(1, 1795465705836066001n)], []));
    await loader.loadBatch(batch("a_table", [up(1, 2)], []));
    const before = Date.now();
    const all = await tableStatus(loader.pool, "status_lib");
    expect(all.map((s) => ({ ...s, lastLoadedAt: null }))).toEqual([
      { table: "a_table", keyNames: [], rows: 2, live: 2, deleted: 0, maxSequence: 1795465705836066001n, batches: 2, lastLoadedAt: null },
      { table: "b_table", keyNames: ["id"], rows: 3, live: 2, deleted: 1, maxSequence: 7n, batches: 1, lastLoadedAt: null },
    ]);
    for (const s of all) expect(Math.abs((s.lastLoadedAt as Date).getTime() - before)).toBeLessThan(60_000);
    expect((await tableStatus(loader.pool, "status_lib", "b_table")).map((s) => s.table)).toEqual(["b_table"]);
    expect(await tableStatus(loader.pool, "status_lib", "nope")).toEqual([]);
    // A table dropped by hand is left out.
    await ctx.query(`drop table status_lib.b_table`);
    expect((await tableStatus(loader.pool, "status_lib")).map((s) => s.table)).toEqual(["a_table"]);
  });

  it("a client resumes from maxSequence: a sequencer started after it sends values that win, even with its clock far behind", async () => {
    const loader = await ctx.loader();
    const t = uniqueTable("resume");
    await loader.loadBatch(batch(t, [up(1, 9000000000000000000n, "from the future")]));
    const sequencer = createSequencer({ source: 3, after: await loader.maxSequence(t), now: () => 1_700_000_000_000_000n });
    const r = await loader.loadBatch(batch(t, [up(1, sequencer.next(), "newer")]));
    expect(r).toMatchObject({ updated: 1 });
    expect(await loader.sequences(t, [1])).toEqual([{ sequence: 9000000000000000003n, deleted: false }]);
  });

  it("concurrent loaders racing on the same keys: afterwards sequences() and maxSequence() match a model of the highest version per key, and maxSequence never goes down while they run", async () => {
    const t = uniqueTable("race");
    const loaders = await Promise.all(Array.from({ length: 4 }, (_, i) => ctx.loader({ copyThreshold: i % 2 === 0 ? 0 : 1_000_000 })));
    const reader = await ctx.loader();
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.array(fc.record({ id: fc.integer({ min: 1, max: 30 }), seq: fc.bigInt({ min: 1n, max: 2n ** 62n }), del: fc.boolean() }), {
            minLength: 1,
            maxLength: 40,
          }),
          { minLength: 4, maxLength: 12 },
        ),
        async (batches) => {
          await ctx.query(`drop table if exists "${t}"`);
          await ctx.query("delete from seqload.loads where table_name = $1", [t]);
          const model = new Map<number, { sequence: bigint; deleted: boolean }>();
          let max = 0n;
          for (const b of batches) {
            for (const m of b) {
              const cur = model.get(m.id);
              // Within a batch a later message wins a tie; across batches an equal one is skipped.
              // Sequences are unique per key here (ties would make the winner depend on commit order).
              if (cur === undefined || m.seq > cur.sequence) model.set(m.id, { sequence: m.seq, deleted: m.del });
              if (m.seq > max) max = m.seq;
            }
          }
          const seen = new Set<string>();
          // (A batch left empty by this, as fast-check's shrinking makes them, is not sent: an empty
          // batch is invalid and would hide the failure being shrunk.)
          const unique = batches
            .map((b) => b.filter((m) => !seen.has(`${m.id}/${m.seq}`) && seen.add(`${m.id}/${m.seq}`)))
            .filter((b) => b.length > 0);
          let stop = false;
          const observed: bigint[] = [];
          const poll = (async () => {
            while (!stop) {
              const v = await reader.maxSequence(t);
              if (v !== null) observed.push(v);
            }
          })();
          const loads = Promise.all(
            unique.map((b, i) =>
              (loaders[i % loaders.length] as (typeof loaders)[number]).loadBatch(
                batch(
                  t,
                  b.map((m) => (m.del ? del(m.id, m.seq) : up(m.id, m.seq))),
                ),
              ),
            ),
          );
          try {
            await loads;
          } catch (e) {
            // A failed load must not leave the poller running into a closed pool: stop it, then fail.
            stop = true;
            await poll.catch(() => {});
            throw e;
          }
          stop = true;
          await poll;
          for (let i = 1; i < observed.length; i++) expect(observed[i] as bigint).toBeGreaterThanOrEqual(observed[i - 1] as bigint);
          const ids = Array.from({ length: 30 }, (_, i) => i + 1);
          expect(await reader.sequences(t, ids)).toEqual(ids.map((id) => model.get(id) ?? null));
          expect(await reader.maxSequence(t)).toBe(max);
        },
      ),
      { numRuns: 15 },
    );
  });
});
