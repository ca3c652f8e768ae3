// The counts a load reports (and logs) must be exact whichever way they are taken: from RETURNING
// (small batches, batches with deletes) or, for large batches, from the command tag and the
// transaction's own statistics — which a server with track_counts = off does not keep.
import pg from "pg";
import { describe, expect, it } from "vitest";
import { createLoader } from "../src/index.js";
import { uniqueTable, useDatabase } from "./helpers/context.js";

const ctx = useDatabase("counts");
const schema = { properties: { id: { type: "integer" }, v: { type: "string" } } };

const upserts = (ids: number[], sequence: number) =>
  ids.map((id) => ({ action: "upsert", sequence, data: { id, v: `v${id}@${sequence}` } }));

describe.each([
  { name: "COPY path, track_counts on", copyThreshold: 0, trackCounts: "on" },
  { name: "COPY path, track_counts off", copyThreshold: 0, trackCounts: "off" },
  { name: "array path", copyThreshold: 1_000_000_000, trackCounts: "on" },
])("$name", ({ copyThreshold, trackCounts }) => {
  it("reports inserted, updated and skipped exactly, and logs the same", async () => {
    const pool = new pg.Pool({ connectionString: ctx.url, max: 2, options: `-c track_counts=${trackCounts}` });
    const loader = await createLoader({ pool, copyThreshold });
    try {
      const table = uniqueTable("counts");
      await loader.loadBatch({ table_name: table, key_names: ["id"], schema, messages: upserts([1, 2, 3, 4, 5, 6], 10) });
      // 1, 2: newer (updated); 3, 4: older or equal (skipped); 7, 8, 9: new (inserted); 9 twice (collapsed).
      const result = await loader.loadBatch({
        table_name: table,
        key_names: ["id"],
        schema,
        messages: [...upserts([1, 2], 11), ...upserts([3], 9), ...upserts([4], 10), ...upserts([7, 8, 9], 1), ...upserts([9], 2)],
      });
      expect(result).toEqual({ table, received: 8, collapsed: 1, inserted: 3, updated: 2, deleted: 0, skipped: 2, rejected: 0 });
      const logged = await ctx.query(
        "SELECT received, collapsed, inserted, updated, deleted, skipped FROM seqload.loads WHERE table_name = $1 ORDER BY id DESC LIMIT 1",
        [table],
      );
      expect(logged).toEqual([{ received: 8, collapsed: 1, inserted: 3, updated: 2, deleted: 0, skipped: 2 }]);
      // With a delete in the batch: counted through RETURNING on every path.
      const withDelete = await loader.loadBatch({
        table_name: table,
        key_names: ["id"],
        schema,
        messages: [...upserts([1], 12), { action: "delete", sequence: 12, data: { id: 2 } }, ...upserts([10], 1)],
      });
      expect(withDelete).toMatchObject({ inserted: 1, updated: 1, deleted: 1, skipped: 0 });
    } finally {
      await loader.close();
      await pool.end();
    }
  });
});
