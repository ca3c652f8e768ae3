// Where the SQL's shape is the point: what the prepared small-batch statement looks like.
import pg from "pg";
import { describe, expect, it } from "vitest";
import { createLoader } from "../src/index.js";
import { useDatabase } from "./helpers/context.js";

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
