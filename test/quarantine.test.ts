// onInvalid: "quarantine": invalid messages go to seqload.rejected in the batch's transaction,
// exactly as received; problems of the batch as a whole still reject it whole.
import pg from "pg";
import { describe, expect, it } from "vitest";
import { parseJson } from "../src/json.js";
import { type Batch, BatchValidationError, ConfigurationError, KeyMismatchError, type LoadResult } from "../src/index.js";
import { PATHS, uniqueTable, useDatabase } from "./helpers/context.js";

const ctx = useDatabase("quarantine");
const schema = { properties: { id: { type: "integer" }, v: { type: ["null", "string"] }, n: { type: ["null", "number"] } } };
const batchOf = (table: string, messages: unknown[], keys: string[] = ["id"]): Batch =>
  ({ table_name: table, key_names: keys, schema, messages }) as Batch;
const up = (id: unknown, sequence: unknown, v: unknown = "x") => ({ action: "upsert", sequence, data: { id, v } });

interface RejectedRow {
  schema_name: string;
  table_name: string;
  sequence: string | null;
  reason: string;
  issues: { index: number; path: string; message: string; kind: string }[];
  message: string;
}

const rejectedOf = (table: string) =>
  ctx.query<RejectedRow & pg.QueryResultRow>(
    "SELECT schema_name, table_name, sequence, reason, issues, message FROM seqload.rejected WHERE table_name = $1 ORDER BY id",
    [table],
  );

const sumHolds = (r: LoadResult) => expect(r.received).toBe(r.collapsed + r.inserted + r.updated + r.deleted + r.skipped + r.rejected);

describe("quarantine: fail stays the default", () => {
  it("fail mode rejects the whole batch and reports rejected 0 on a good one", async () => {
    const loader = await ctx.loader();
    expect(loader.options.onInvalid).toBe("fail");
    const t = uniqueTable("dflt");
    const r = await loader.loadBatch(batchOf(t, [up(1, 1)]));
    expect(r.rejected).toBe(0);
    sumHolds(r);
    await expect(loader.loadBatch(batchOf(t, [up(2, 2), up("two", 3)]))).rejects.toBeInstanceOf(BatchValidationError);
    expect(await ctx.query(`SELECT id::text FROM "${t}"`)).toEqual([{ id: "1" }]);
    expect(await rejectedOf(t)).toEqual([]);
  });

  it("refuses an unknown onInvalid, on createLoader and per call", async () => {
    await expect(ctx.loader({ onInvalid: "skip" as "fail" })).rejects.toBeInstanceOf(ConfigurationError);
    const loader = await ctx.loader();
    await expect(loader.loadBatch(batchOf(uniqueTable("bad"), [up(1, 1)]), { onInvalid: "drop" as "fail" })).rejects.toThrow(
      /onInvalid must be "fail" or "quarantine"/,
    );
  });
});

// Small batches take the prepared statement; 60 rows with copyThreshold 50 take the COPY route.
describe.each([
  { route: "prepared statement", copyThreshold: 1_000_000, good: 3 },
  { route: "COPY", copyThreshold: 50, good: 60 },
])("quarantine ($route route)", ({ copyThreshold, good }) => {
  const goodRows = (from: number) => Array.from({ length: good }, (_, i) => up(from + i, 10 + i, `ok ${i}`));

  it("loads the valid messages and writes every invalid one to seqload.rejected, with its problems", async () => {
    const loader = await ctx.loader({ copyThreshold, onInvalid: "quarantine" });
    const t = uniqueTable("mixed");
    // A first batch creates the table; the second takes the route into an existing table.
    for (const [i, base] of [0, 1000].entries()) {
      const messages: unknown[] = [
        ...goodRows(base),
        up("not an int", 5), // schema mismatch
        { action: "upsert", sequence: 6, data: { v: "no key" } }, // key missing
        up(null, 7), // key null
        up(base + 999, "1.5"), // bad sequence
        up(base + 998, 8, "nul\u0000here"), // unstorable value
      ];
      const r = await loader.loadBatch(batchOf(t, messages));
      expect(r).toMatchObject({ received: good + 5, inserted: good, rejected: 5, skipped: 0, collapsed: 0 });
      sumHolds(r);
      const rows = await rejectedOf(t);
      expect(rows).toHaveLength(5 * (i + 1));
      const these = rows.slice(5 * i);
      expect(these.map((x) => x.sequence)).toEqual(["5", "6", "7", "1.5", "8"]);
      expect(these.every((x) => x.schema_name === "public" && x.table_name === t)).toBe(true);
      expect(these.map((x) => x.issues.map((issue) => issue.kind))).toEqual([
        ["schema"],
        ["key_missing"],
        ["key_null", "schema"],
        ["message"],
        ["data"],
      ]);
      expect(these[0]?.issues[0]).toEqual({
        index: good,
        path: `/messages/${good}/data/id`,
        message: "does not conform to the schema: expected type integer, found string",
        kind: "schema",
      });
      expect(these[1]?.reason).toBe(`/messages/${good + 1}/data/id: key property "id" is missing`);
      expect(these[4]?.message).toBe(JSON.stringify(messages[good + 4]));
      expect(these[4]?.message).toContain("nul\\u0000here");
    }
    const stored = await ctx.query<{ n: string }>(`SELECT count(*)::text AS n FROM "${t}"`);
    expect(stored).toEqual([{ n: String(2 * good) }]);
    const logged = await ctx.query("SELECT received, rejected FROM seqload.loads WHERE table_name = $1 ORDER BY id", [t]);
    expect(logged).toEqual([
      { received: good + 5, rejected: 5 },
      { received: good + 5, rejected: 5 },
    ]);
  });

  it("keeps a rejected message exactly as received: 19-digit integers, 1.00, \\u0000, lone surrogates", async () => {
    const loader = await ctx.loader({ copyThreshold, onInvalid: "quarantine" });
    const t = uniqueTable("exact");
    const text =
      '{"action":"upsert","sequence":1795465705836060200,"data":{"id":"k","v":"a\\u0000b","n":1.00,"big":12345678901234567890123,"s":"\\ud800"},"time_extracted":"2024-01-01T00:00:00Z"}';
    const invalid = parseJson(text);
    const r = await loader.loadBatch(batchOf(t, [...goodRows(0), invalid]));
    expect(r).toMatchObject({ inserted: good, rejected: 1 });
    const [row] = await rejectedOf(t);
    expect(row?.message).toBe(text);
    expect(row?.sequence).toBe("1795465705836060200");
    expect(row?.reason).toContain("/messages/");
  });

  it("a batch with every message invalid commits its rejected rows and its load-log row", async () => {
    const loader = await ctx.loader({ copyThreshold, onInvalid: "quarantine" });
    const t = uniqueTable("allbad");
    const r = await loader.loadBatch(batchOf(t, [up("a", 1), up("b", 2)]));
    expect(r).toEqual({ table: t, received: 2, collapsed: 0, inserted: 0, updated: 0, deleted: 0, skipped: 0, rejected: 2 });
    expect(await rejectedOf(t)).toHaveLength(2);
    expect(await ctx.query("SELECT received, rejected, min_sequence FROM seqload.loads WHERE table_name = $1", [t])).toEqual([
      { received: 2, rejected: 2, min_sequence: null },
    ]);
  });

  it("per call: { onInvalid } overrides the loader's option both ways", async () => {
    const failing = await ctx.loader({ copyThreshold });
    const t = uniqueTable("percall");
    const r = await failing.loadBatch(batchOf(t, [...goodRows(0), up("bad", 1)]), { onInvalid: "quarantine" });
    expect(r.rejected).toBe(1);
    const quarantining = await ctx.loader({ copyThreshold, onInvalid: "quarantine" });
    await expect(quarantining.loadBatch(batchOf(t, [up("bad", 2)]), { onInvalid: "fail" })).rejects.toBeInstanceOf(BatchValidationError);
    expect(await rejectedOf(t)).toHaveLength(1);
  });

  it("problems of the batch as a whole still reject it whole: schema, unknown field, key_names change", async () => {
    const loader = await ctx.loader({ copyThreshold, onInvalid: "quarantine" });
    const t = uniqueTable("whole");
    await loader.loadBatch(batchOf(t, [up(1, 1)]));
    const badSchema = {
      ...batchOf(t, [up(2, 2), up("bad", 3)]),
      schema: { properties: { id: { type: "integer" }, _sequence: { type: "string" } } },
    };
    await expect(loader.loadBatch(badSchema)).rejects.toBeInstanceOf(BatchValidationError);
    const unknownField = { ...batchOf(t, [up(2, 2), up("bad", 3)]), extra: true };
    await expect(loader.loadBatch(unknownField)).rejects.toThrow(/unknown field "extra"/);
    await expect(loader.loadBatch(batchOf(t, [up(2, 2), up("bad", 3)], ["v"]))).rejects.toBeInstanceOf(KeyMismatchError);
    await expect(loader.loadBatch(batchOf(t, []))).rejects.toThrow(/messages is empty/);
    expect(await rejectedOf(t)).toEqual([]);
    expect(await ctx.query<{ n: string }>(`SELECT count(*)::text AS n FROM "${t}"`)).toEqual([{ n: "1" }]);
  });
});

describe("quarantine in the caller's transaction", () => {
  it("a rollback removes the rejected rows with the valid ones; a commit keeps both", async () => {
    const loader = await ctx.loader({ onInvalid: "quarantine" });
    const t = uniqueTable("callertx");
    const pool = new pg.Pool({ connectionString: ctx.url, max: 1 });
    try {
      for (const outcome of ["ROLLBACK", "COMMIT"]) {
        const client = await pool.connect();
        try {
          await client.query("BEGIN");
          const r = await loader.loadBatch(batchOf(t, [up(1, 1), up("bad", 2)]), { client });
          expect(r).toMatchObject({ inserted: 1, rejected: 1 });
          // Visible inside the transaction, not outside it.
          expect((await client.query("SELECT count(*)::int AS n FROM seqload.rejected WHERE table_name = $1", [t])).rows).toEqual([
            { n: 1 },
          ]);
          expect(await rejectedOf(t)).toEqual([]);
          await client.query(outcome);
        } finally {
          client.release();
        }
        const expected = outcome === "ROLLBACK" ? 0 : 1;
        expect(await rejectedOf(t)).toHaveLength(expected);
        expect(await ctx.query("SELECT count(*)::int AS n FROM seqload.loads WHERE table_name = $1", [t])).toEqual([{ n: expected }]);
      }
      expect(await ctx.query(`SELECT id::text FROM "${t}"`)).toEqual([{ id: "1" }]);
    } finally {
      await pool.end();
    }
  });
});

describe("quarantine through loadBatches", () => {
  it("uses the loader's onInvalid", async () => {
    const loader = await ctx.loader({ onInvalid: "quarantine" });
    const t = uniqueTable("stream");
    const results: LoadResult[] = [];
    for await (const r of loader.loadBatches([batchOf(t, [up(1, 1), up("x", 2)]), batchOf(t, [up(2, 3)])])) results.push(r);
    expect(results.map((r) => [r.inserted, r.rejected])).toEqual([
      [1, 1],
      [1, 0],
    ]);
  });
});

// Both staging routes of the test-suite-wide PATHS too (array parameters and COPY from the first row).
describe.each(PATHS)("quarantine with deletes and collapse ($path path)", ({ copyThreshold }) => {
  it("the sum rule holds with collapsed, skipped, deleted and rejected messages together", async () => {
    const loader = await ctx.loader({ copyThreshold, onInvalid: "quarantine" });
    const t = uniqueTable("sum");
    await loader.loadBatch(batchOf(t, [up(1, 10), up(2, 10)]));
    const r = await loader.loadBatch(
      batchOf(t, [
        up(1, 5), // skipped (older)
        up(3, 11),
        up(3, 12), // collapses the one before
        { action: "delete", sequence: 13, data: { id: 2 } },
        up("bad", 14),
        { action: "upsert", sequence: 15 }, // no data
      ]),
    );
    expect(r).toEqual({ table: t, received: 6, collapsed: 1, inserted: 1, updated: 0, deleted: 1, skipped: 1, rejected: 2 });
  });
});

describe("quarantine: every message is checked", () => {
  it("sets aside 1,500 invalid messages (past the 1,000-problem cap of fail mode) and loads the rest", async () => {
    const loader = await ctx.loader({ onInvalid: "quarantine" });
    const t = uniqueTable("many");
    const messages = Array.from({ length: 3000 }, (_, i) => (i % 2 === 0 ? up(i, i) : up(`bad ${i}`, i)));
    const r = await loader.loadBatch(batchOf(t, messages));
    expect(r).toMatchObject({ received: 3000, inserted: 1500, rejected: 1500 });
    expect(
      await ctx.query(
        "SELECT count(*)::int AS n, min(sequence::int) AS lo, max(sequence::int) AS hi FROM seqload.rejected WHERE table_name = $1",
        [t],
      ),
    ).toEqual([{ n: 1500, lo: 1, hi: 2999 }]);
  });

  it("an integer beyond int64 in a rejected message does not widen its column", async () => {
    const loader = await ctx.loader({ onInvalid: "quarantine" });
    const t = uniqueTable("widen");
    const big = parseJson('{"action":"upsert","sequence":2,"data":{"id":12345678901234567890123,"v":7}}');
    const r = await loader.loadBatch(batchOf(t, [up(1, 1), big]));
    expect(r).toMatchObject({ inserted: 1, rejected: 1 });
    const type = await ctx.query("SELECT data_type FROM information_schema.columns WHERE table_name = $1 AND column_name = 'id'", [t]);
    expect(type).toEqual([{ data_type: "bigint" }]);
  });

  it("a message that cannot be written as JSON (a cycle, from the library) rejects the batch whole: nothing is lost", async () => {
    const loader = await ctx.loader({ onInvalid: "quarantine" });
    const t = uniqueTable("cycle");
    const data: Record<string, unknown> = { id: 1, v: "x" };
    data.self = data;
    const batch = { ...batchOf(t, [up(1, 1)]), schema: { properties: { ...schema.properties, self: { type: "object" } } } };
    batch.messages.push({ action: "upsert", sequence: 2, data });
    await expect(loader.loadBatch(batch)).rejects.toThrow(/cannot be quarantined: not writable as JSON/);
    expect(await rejectedOf(t)).toEqual([]);
  });
});
