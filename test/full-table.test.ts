// table_version + activate_version (full-table replication) and what target-stitch really sends.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseJson } from "../src/json.js";
import { PATHS, uniqueTable, useDatabase } from "./helpers/context.js";

const ctx = useDatabase("fulltable");
const schema = { properties: { id: { type: "integer" }, name: { type: "string" } } };

describe.each(PATHS)("full-table replication ($path path)", ({ copyThreshold }) => {
  it("version 1 loads ids 1–3; version 2 loads ids 2–3 and activates: id 1 is deleted, 2–3 live", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("full");
    const v1 = await loader.loadBatch({
      table_name: t,
      key_names: ["id"],
      schema,
      table_version: 1,
      messages: [
        { action: "activate_version", sequence: 1 },
        ...[1, 2, 3].map((id) => ({ action: "upsert", sequence: 10 + id, data: { id, name: `v1-${id}` } })),
        { action: "activate_version", sequence: 20 },
      ],
    });
    expect(v1).toEqual({ table: t, received: 5, collapsed: 1, inserted: 3, updated: 0, deleted: 0, skipped: 1, rejected: 0 });
    const v2 = await loader.loadBatch({
      table_name: t,
      key_names: ["id"],
      schema,
      table_version: 2,
      messages: [
        ...[2, 3].map((id) => ({ action: "upsert", sequence: 30 + id, data: { id, name: `v2-${id}` } })),
        { action: "activate_version", sequence: 40 },
      ],
    });
    expect(v2).toEqual({ table: t, received: 3, collapsed: 0, inserted: 0, updated: 2, deleted: 1, skipped: 0, rejected: 0 });
    expect(
      await ctx.query(`select id, name, _table_version::int as v, _deleted_at is not null as deleted from "${t}" order by id`),
    ).toEqual([
      { id: "1", name: "v1-1", v: 1, deleted: true },
      { id: "2", name: "v2-2", v: 2, deleted: false },
      { id: "3", name: "v2-3", v: 2, deleted: false },
    ]);
    // The load log remembers the version of each batch.
    expect(await ctx.query("select table_version::int as v, deleted from seqload.loads where table_name = $1 order by id", [t])).toEqual([
      { v: 1, deleted: 0 },
      { v: 2, deleted: 1 },
    ]);
  });

  it("a table without table_version gets no _table_version column", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("plain");
    await loader.loadBatch({
      table_name: t,
      key_names: ["id"],
      schema,
      messages: [{ action: "upsert", sequence: 1, data: { id: 1, name: "a" } }],
    });
    const cols = await ctx.query<{ c: string }>(
      "select attname::text as c from pg_attribute where attrelid = $1::regclass and attnum > 0 order by attnum",
      [`"${t}"`],
    );
    expect(cols.map((r) => r.c)).toEqual(["id", "name", "_sequence", "_loaded_at", "_deleted_at"]);
  });
});

describe("target-stitch's real request body", () => {
  it("loads the body target-stitch 4.0.4 posted (test/fixtures, a copy of reference/target-stitch-request.json) unchanged (19-digit sequences, activate_version, table_version, time_extracted, bookmark_names)", async () => {
    const loader = await ctx.loader();
    const text = readFileSync(new URL("./fixtures/target-stitch-request.json", import.meta.url), "utf8");
    const batch = parseJson(text) as { table_name: string };
    const r = await loader.loadBatch(batch);
    expect(r).toEqual({ table: "customers", received: 5, collapsed: 2, inserted: 2, updated: 0, deleted: 0, skipped: 1, rejected: 0 });
    expect(
      await ctx.query(
        `select id, name, has_magic, updated_at, _sequence::text, _table_version::text, _deleted_at from customers order by id`,
      ),
    ).toEqual([
      {
        id: "1",
        name: "Finn",
        has_magic: false,
        updated_at: new Date("2019-11-26T22:29:16Z"),
        _sequence: "1795465705836066501",
        _table_version: "1574807000000",
        _deleted_at: null,
      },
      {
        id: "2",
        name: "Jake",
        has_magic: false,
        updated_at: new Date("2019-11-26T22:30:45Z"),
        _sequence: "1795465705836145003",
        _table_version: "1574807000000",
        _deleted_at: null,
      },
    ]);
  });
});
