// action "delete": a sequenced tombstone that an older upsert can never resurrect.
import { describe, expect, it } from "vitest";
import type { Batch } from "../src/index.js";
import { PATHS, uniqueTable, useDatabase } from "./helpers/context.js";

const ctx = useDatabase("deletes");
const schema = { properties: { id: { type: "integer" }, name: { type: "string" }, n: { type: "integer" } } };
const batch = (t: string, messages: Batch["messages"]): Batch => ({ table_name: t, key_names: ["id"], schema, messages });
const up = (id: number, sequence: number, name: string) => ({ action: "upsert", sequence, data: { id, name, n: sequence } });
const del = (id: number, sequence: number) => ({ action: "delete", sequence, data: { id } });
const state = (t: string) =>
  ctx.query(`select id, name, n, _sequence::int as seq, _deleted_at is not null as deleted from "${t}" order by id`);

describe.each(PATHS)("deletes ($path path)", ({ copyThreshold }) => {
  it("a newer delete sets _deleted_at, advances _sequence and keeps the other columns", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("tomb");
    await loader.loadBatch(batch(t, [up(1, 10, "Finn")]));
    expect(await loader.loadBatch(batch(t, [del(1, 11)]))).toMatchObject({ deleted: 1, skipped: 0 });
    expect(await state(t)).toEqual([{ id: "1", name: "Finn", n: "10", seq: 11, deleted: true }]);
  });

  it("an older delete is skipped", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("olddel");
    await loader.loadBatch(batch(t, [up(1, 10, "Finn")]));
    expect(await loader.loadBatch(batch(t, [del(1, 9), del(1, 10)]))).toMatchObject({ deleted: 0, skipped: 1, collapsed: 1 });
    expect(await state(t)).toEqual([{ id: "1", name: "Finn", n: "10", seq: 10, deleted: false }]);
  });

  it("delete then an older upsert leaves the tombstone; a newer upsert revives the row", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("revive");
    await loader.loadBatch(batch(t, [up(1, 10, "Finn")]));
    await loader.loadBatch(batch(t, [del(1, 20)]));
    expect(await loader.loadBatch(batch(t, [up(1, 15, "late older")]))).toMatchObject({ skipped: 1 });
    expect(await loader.loadBatch(batch(t, [up(1, 20, "same seq")]))).toMatchObject({ skipped: 1 });
    expect(await state(t)).toEqual([{ id: "1", name: "Finn", n: "10", seq: 20, deleted: true }]);
    expect(await loader.loadBatch(batch(t, [up(1, 21, "back")]))).toMatchObject({ updated: 1 });
    expect(await state(t)).toEqual([{ id: "1", name: "back", n: "21", seq: 21, deleted: false }]);
  });

  it("a delete for a key never seen leaves a tombstone, so a late older upsert cannot create a live row", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("unseen");
    await loader.loadBatch(batch(t, [up(99, 1, "other")]));
    expect(await loader.loadBatch(batch(t, [del(1, 50)]))).toMatchObject({ deleted: 1 });
    expect(await loader.loadBatch(batch(t, [up(1, 40, "late")]))).toMatchObject({ skipped: 1, inserted: 0 });
    expect(await state(t)).toEqual([
      { id: "1", name: null, n: null, seq: 50, deleted: true },
      { id: "99", name: "other", n: "1", seq: 1, deleted: false },
    ]);
    // Also when the very first batch of a new table is a delete.
    const t2 = uniqueTable("firstdel");
    await loader.loadBatch(batch(t2, [del(7, 5)]));
    await loader.loadBatch(batch(t2, [up(7, 4, "late")]));
    expect(await state(t2)).toEqual([{ id: "7", name: null, n: null, seq: 5, deleted: true }]);
  });

  it("update → delete → update of one key inside one batch ends as the highest sequence says", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("inbatch");
    await loader.loadBatch(batch(t, [up(1, 1, "v1"), up(2, 1, "v1")]));
    const r = await loader.loadBatch(
      batch(t, [up(1, 2, "v2"), del(1, 3), up(1, 4, "v4"), up(2, 2, "v2"), del(2, 5), up(2, 4, "v4 but older than the delete")]),
    );
    expect(r).toEqual({ table: t, received: 6, collapsed: 4, inserted: 0, updated: 1, deleted: 1, skipped: 0, rejected: 0 });
    expect(await state(t)).toEqual([
      { id: "1", name: "v4", n: "4", seq: 4, deleted: false },
      { id: "2", name: "v1", n: "1", seq: 5, deleted: true },
    ]);
  });

  it("a delete message may carry only the key properties, even when the schema requires others", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("keysonly");
    const strict = { properties: schema.properties, required: ["id", "name"], additionalProperties: false };
    await loader.loadBatch({ table_name: t, key_names: ["id"], schema: strict, messages: [up(1, 1, "a")] });
    expect(await loader.loadBatch({ table_name: t, key_names: ["id"], schema: strict, messages: [del(1, 2)] })).toMatchObject({
      deleted: 1,
    });
  });
});
