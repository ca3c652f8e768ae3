// Where the SQL's shape is the point: what the prepared small-batch statement looks like.
import pg from "pg";
import { describe, expect, it } from "vitest";
import { createLoader } from "../src/index.js";
import { useDatabase } from "./helpers/context.js";
import { citusWorkers } from "./helpers/db.js";

const ctx = useDatabase("sqlshape");
const schema = { properties: { id: { type: "integer" }, v: { type: "string" } } };

describe("the small-batch statement", () => {
  it("is prepared once per connection, applies rows in key order with the guard, and has no stale-row pre-filter", async () => {
    // Regression: with the NOT EXISTS pre-filter, the prepared statement's generic plan (made while
    // the table was small) became a hash anti join that read the whole table on every batch.
    const pool = new pg.Pool({ connectionString: ctx.url, max: 1 });
    const loader = await createLoader({ pool });
    try {
      for (let b = 0; b < 3; b++) {
        await loader.loadBatch({
          table_name: "shape",
          key_names: ["id"],
          schema,
          messages: [{ action: "upsert", sequence: b, data: { id: b, v: "x" } }],
        });
      }
      const prepared = await pool.query<{ statement: string }>("select statement from pg_prepared_statements where name like 'seqload_%'");
      expect(prepared.rows).toHaveLength(1);
      const sql = prepared.rows[0]?.statement ?? "";
      expect(sql).toContain('ON CONFLICT ("id") DO UPDATE');
      expect(sql).toContain('WHERE excluded."_sequence" > t."_sequence"');
      expect(sql).toMatch(/ORDER BY s\.c0/);
      expect(sql).not.toContain("NOT EXISTS");
    } finally {
      await loader.close();
      await pool.end();
    }
  });
});

describe("the large-batch apply", () => {
  it("pre-filters stale rows only when a sample of the batch says most are stale (replays), and applies correctly either way", async () => {
    const pool = new pg.Pool({ connectionString: ctx.url, max: 1 });
    const texts: string[] = [];
    pool.on("connect", (client) => {
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as unknown as { query: unknown }).query = (...args: unknown[]) => {
        const q = args[0];
        texts.push(typeof q === "string" ? q : ((q as { text?: string }).text ?? ""));
        return query(...args);
      };
    });
    const loader = await createLoader({ pool, copyThreshold: 0 });
    const batch = (sequence: number, ids: number[]) => ({
      table_name: "prefilter",
      key_names: ["id"],
      schema,
      messages: ids.map((id) => ({ action: "upsert", sequence, data: { id, v: `${id}@${sequence}` } })),
    });
    const applies = () => texts.filter((t) => t.includes('ON CONFLICT ("id")'));
    try {
      const ids = Array.from({ length: 1000 }, (_, i) => i);
      await loader.loadBatch(batch(1, ids)); // new table: COPY straight in
      texts.length = 0;
      // Mostly replays: 900 stale, 100 newer.
      const replay = await loader.loadBatch({
        ...batch(1, ids.slice(0, 900)),
        messages: [...batch(1, ids.slice(0, 900)).messages, ...batch(2, ids.slice(900)).messages],
      });
      expect(replay).toMatchObject({ updated: 100, skipped: 900 });
      expect(applies()).toHaveLength(1);
      // On Citus the pre-filter is an outer join (it refuses the correlated NOT EXISTS over a local table).
      expect(applies()[0]).toContain(citusWorkers().length > 0 ? "LEFT JOIN" : "NOT EXISTS");
      texts.length = 0;
      // All newer: no pre-filter.
      const newer = await loader.loadBatch(batch(3, ids));
      expect(newer).toMatchObject({ updated: 1000, skipped: 0 });
      expect(applies()).toHaveLength(1);
      expect(applies()[0]).not.toMatch(/NOT EXISTS|LEFT JOIN/);
      const rows = await ctx.query<{ n: number }>(`SELECT count(*)::int AS n FROM public.prefilter WHERE _sequence = 3 AND v = id || '@3'`);
      expect(rows[0]?.n).toBe(1000);
    } finally {
      await loader.close();
      await pool.end();
    }
  });
});

describe("a warm loader", () => {
  it("sends a small batch into a known table as one statement: no catalog query, no DDL, no transaction", async () => {
    const pool = new pg.Pool({ connectionString: ctx.url, max: 1 });
    const texts: string[] = [];
    pool.on("connect", (client) => {
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as unknown as { query: unknown }).query = (...args: unknown[]) => {
        const q = args[0];
        texts.push(typeof q === "string" ? q : ((q as { text?: string }).text ?? ""));
        return query(...args);
      };
    });
    const loader = await createLoader({ pool });
    const batch = (sequence: number) => ({
      table_name: "warm",
      key_names: ["id"],
      schema,
      messages: [1, 2, 3].map((id) => ({ action: "upsert", sequence, data: { id, v: `${id}@${sequence}` } })),
    });
    try {
      await loader.loadBatch(batch(1)); // creates the table, reads the catalog
      await loader.loadBatch(batch(2));
      texts.length = 0;
      const result = await loader.loadBatch(batch(3));
      expect(result).toMatchObject({ updated: 3 });
      expect(texts).toHaveLength(1);
      expect(texts[0]).toContain('ON CONFLICT ("id")');
      expect(texts[0]).toContain("INSERT INTO seqload.loads");
    } finally {
      await loader.close();
      await pool.end();
    }
  });
});
