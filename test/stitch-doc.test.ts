// The requests in reference/stitch-record-sequencing.txt, and the rows that document says result.
import { describe, expect, it } from "vitest";
import { PATHS, uniqueTable, useDatabase } from "./helpers/context.js";

const ctx = useDatabase("stitchdoc");
const schema = {
  properties: { id: { type: "integer" }, name: { type: "string" }, age: { type: "integer" }, has_magic: { type: "boolean" } },
};

describe.each(PATHS)("Stitch record-sequencing document ($path path)", ({ copyThreshold }) => {
  it("request 1: a single record with sequence 1574800199000 is loaded", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const table = uniqueTable("customers");
    const r = await loader.loadBatch({
      table_name: table,
      key_names: ["id"],
      schema,
      messages: [{ action: "upsert", sequence: 1574800199000, data: { id: 1, name: "Finn", age: 15, has_magic: false } }],
    });
    expect(r).toEqual({ table, received: 1, collapsed: 0, inserted: 1, updated: 0, deleted: 0, skipped: 0, rejected: 0 });
    const rows = await ctx.query(`select id, name, age, has_magic, _sequence, _deleted_at from "${table}"`);
    expect(rows).toEqual([{ id: "1", name: "Finn", age: "15", has_magic: false, _sequence: "1574800199000", _deleted_at: null }]);
  });

  it("request 2: of two data points for id 2, only the one with the greater sequence (data point 1) is loaded", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const table = uniqueTable("customers");
    const r = await loader.loadBatch({
      table_name: table,
      key_names: ["id"],
      schema,
      messages: [
        { action: "upsert", sequence: 1574807445000, data: { id: 2, name: "Jake", has_magic: false } },
        { action: "upsert", sequence: 1574807395000, data: { id: 2, name: "Jake", has_magic: true } },
      ],
    });
    expect(r).toMatchObject({ received: 2, collapsed: 1, inserted: 1, skipped: 0 });
    expect(await ctx.query(`select id, name, has_magic, _sequence from "${table}"`)).toEqual([
      { id: "2", name: "Jake", has_magic: false, _sequence: "1574807445000" },
    ]);
  });

  it("request 3 (the example request): data points 1 and 2 continue, data point 3 does not", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const table = uniqueTable("customers");
    const r = await loader.loadBatch({
      table_name: table,
      messages: [
        { action: "upsert", sequence: 1574807356000, data: { id: 1, name: "Finn", has_magic: false } },
        { action: "upsert", sequence: 1574807445000, data: { id: 2, name: "Jake", has_magic: false } },
        { action: "upsert", sequence: 1574807395000, data: { id: 2, name: "Jake", has_magic: true } },
      ],
      key_names: ["id"],
      schema: { properties: { id: { type: "integer" }, name: { type: "string" }, has_magic: { type: "boolean" } } },
    });
    expect(r).toEqual({ table, received: 3, collapsed: 1, inserted: 2, updated: 0, deleted: 0, skipped: 0, rejected: 0 });
    expect(await ctx.query(`select id, name, has_magic, _sequence::text from "${table}" order by id`)).toEqual([
      { id: "1", name: "Finn", has_magic: false, _sequence: "1574807356000" },
      { id: "2", name: "Jake", has_magic: false, _sequence: "1574807445000" },
    ]);
    // Data point 3 sent again later, on its own: still older than what is stored, so nothing changes.
    const again = await loader.loadBatch({
      table_name: table,
      key_names: ["id"],
      schema: { properties: { id: { type: "integer" }, name: { type: "string" }, has_magic: { type: "boolean" } } },
      messages: [{ action: "upsert", sequence: 1574807395000, data: { id: 2, name: "Jake", has_magic: true } }],
    });
    expect(again).toMatchObject({ skipped: 1, updated: 0, inserted: 0 });
    expect(await ctx.query(`select has_magic from "${table}" where id = 2`)).toEqual([{ has_magic: false }]);
  });
});
