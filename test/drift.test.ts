// Schema drift: new columns, the widening lattice with values already stored, and key changes.
import { describe, expect, it } from "vitest";
import { type Batch, type JsonSchema, KeyMismatchError } from "../src/index.js";
import { parseJson } from "../src/json.js";
import { PATHS, uniqueTable, useDatabase } from "./helpers/context.js";

const ctx = useDatabase("drift");

async function columnTypes(table: string): Promise<Record<string, string>> {
  const rows = await ctx.query<{ name: string; type: string }>(
    "select attname::text as name, format_type(atttypid, atttypmod) as type from pg_attribute where attrelid = $1::regclass and attnum > 0 and not attisdropped order by attnum",
    [`"${table}"`],
  );
  return Object.fromEntries(rows.map((r) => [r.name, r.type]));
}

describe.each(PATHS)("schema drift ($path path)", ({ copyThreshold }) => {
  it("a new property adds a nullable column; columns are never dropped; absent properties are NULL in the new row", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("grow");
    await loader.loadBatch({
      table_name: t,
      key_names: ["id"],
      schema: { properties: { id: { type: "integer" }, a: { type: "string" } } },
      messages: [{ action: "upsert", sequence: 1, data: { id: 1, a: "a1" } }],
    });
    await loader.loadBatch({
      table_name: t,
      key_names: ["id"],
      schema: { properties: { id: { type: "integer" }, b: { type: "boolean" } } }, // "a" is gone from the schema
      messages: [
        { action: "upsert", sequence: 2, data: { id: 2, b: true } },
        { action: "upsert", sequence: 2, data: { id: 1 } }, // replaces row 1: a and b NULL now
      ],
    });
    expect(await columnTypes(t)).toEqual({
      id: "bigint",
      a: "text",
      _sequence: "bigint",
      _loaded_at: "timestamp with time zone",
      _deleted_at: "timestamp with time zone",
      b: "boolean",
    });
    expect(await ctx.query(`select id, a, b from "${t}" order by id`)).toEqual([
      { id: "1", a: null, b: null },
      { id: "2", a: null, b: true },
    ]);
    const notNull = await ctx.query(
      "select attname::text as n from pg_attribute where attrelid = $1::regclass and attnotnull and attnum > 0 order by attnum",
      [`"${t}"`],
    );
    expect(notNull).toEqual([{ n: "id" }, { n: "_sequence" }, { n: "_loaded_at" }]);
  });

  // Every edge of the lattice, with values already in the table when the column widens.
  const edges: {
    name: string;
    from: JsonSchema;
    first: unknown;
    to: JsonSchema;
    second: unknown;
    type: string;
    expected: [unknown, unknown];
  }[] = [
    {
      name: "integer → number",
      from: { type: "integer" },
      first: 15,
      to: { type: "number" },
      second: 15.5,
      type: "numeric",
      expected: ["15", "15.5"],
    },
    {
      name: "big integer → number",
      from: { type: "integer" },
      first: 9007199254740993n,
      to: { type: "number" },
      second: 0.1,
      type: "numeric",
      expected: ["9007199254740993", "0.1"],
    },
    {
      name: "integer → string",
      from: { type: "integer" },
      first: -42,
      to: { type: "string" },
      second: "x",
      type: "text",
      expected: ["-42", "x"],
    },
    {
      name: "number → string",
      from: { type: "number" },
      first: 19.99,
      to: { type: "string" },
      second: "",
      type: "text",
      expected: ["19.99", ""],
    },
    {
      name: "boolean → string",
      from: { type: "boolean" },
      first: true,
      to: { type: "string" },
      second: "NULL",
      type: "text",
      expected: ["true", "NULL"],
    },
    {
      name: "boolean → integer",
      from: { type: "boolean" },
      first: false,
      to: { type: "integer" },
      second: 7,
      type: "text",
      expected: ["false", "7"],
    },
    {
      name: "date-time → string",
      from: { type: "string", format: "date-time" },
      first: "2019-11-26T17:29:16-05:00",
      to: { type: "string" },
      second: "free text",
      type: "text",
      expected: ["2019-11-26T22:29:16+00:00", "free text"],
    },
    {
      name: "date → string",
      from: { type: "string", format: "date" },
      first: "2024-02-29",
      to: { type: "string" },
      second: "later",
      type: "text",
      expected: ["2024-02-29", "later"],
    },
    {
      name: "date → date-time",
      from: { type: "string", format: "date" },
      first: "2024-02-29",
      to: { type: "string", format: "date-time" },
      second: "2024-03-01T00:00:00Z",
      type: "text",
      expected: ["2024-02-29", "2024-03-01T00:00:00Z"],
    },
    {
      name: "integer → object",
      from: { type: "integer" },
      first: 12345678901234567n,
      to: { type: "object" },
      second: { a: [1, "b"] },
      type: "jsonb",
      expected: [12345678901234567n, { a: [1, "b"] }],
    },
    {
      name: "string → array",
      from: { type: "string" },
      first: "s",
      to: { type: "array" },
      second: [1, 2],
      type: "jsonb",
      expected: ["s", [1, 2]],
    },
    {
      name: "number → object",
      from: { type: "number" },
      first: 0.1,
      to: { type: "object" },
      second: {},
      type: "jsonb",
      expected: [0.1, {}],
    },
    {
      name: "boolean → array",
      from: { type: "boolean" },
      first: true,
      to: { type: "array" },
      second: [],
      type: "jsonb",
      expected: [true, []],
    },
    {
      name: "date-time → object",
      from: { type: "string", format: "date-time" },
      first: "2020-01-13T21:25:03+0000",
      to: { type: "object" },
      second: { k: null },
      type: "jsonb",
      expected: ["2020-01-13T21:25:03+00:00", { k: null }],
    },
  ];
  for (const e of edges) {
    it(`widens ${e.name} to ${e.type}, converting stored values losslessly`, async () => {
      const loader = await ctx.loader({ copyThreshold });
      const t = uniqueTable("widen");
      const batch = (schema: JsonSchema, sequence: number, id: number, v: unknown): Batch => ({
        table_name: t,
        key_names: ["id"],
        schema: { properties: { id: { type: "integer" }, v: schema } },
        messages: [{ action: "upsert", sequence, data: { id, v } }],
      });
      await loader.loadBatch(batch(e.from, 1, 1, e.first));
      await loader.loadBatch(batch(e.to, 2, 2, e.second));
      expect((await columnTypes(t)).v).toBe(e.type);
      const rows = await ctx.query<{ v: string }>(`select v::text as v from "${t}" order by id`);
      const read = rows.map((r) => (e.type === "jsonb" ? parseJson(r.v) : r.v));
      expect(read).toEqual(e.expected);
    });
  }

  it("a column never narrows: a later narrower schema keeps the wide column and stores values exactly", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("nonarrow");
    const b = (type: JsonSchema, sequence: number, id: number, v: unknown): Batch => ({
      table_name: t,
      key_names: ["id"],
      schema: { properties: { id: { type: "integer" }, v: type } },
      messages: [{ action: "upsert", sequence, data: { id, v } }],
    });
    await loader.loadBatch(b({ type: "number" }, 1, 1, 2.5));
    await loader.loadBatch(b({ type: "integer" }, 1, 2, 3));
    expect((await columnTypes(t)).v).toBe("numeric");
    expect(await ctx.query(`select v::text from "${t}" order by id`)).toEqual([{ v: "2.5" }, { v: "3" }]);
  });

  it("an integer beyond int64 never becomes a wrong value: the column holds it as numeric", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("huge");
    const batch =
      parseJson(`{"table_name": "${t}", "key_names": ["id"], "schema": {"properties": {"id": {"type": "integer"}, "n": {"type": "integer"}}},
      "messages": [{"action": "upsert", "sequence": 1, "data": {"id": 1, "n": 5}}, {"action": "upsert", "sequence": 1, "data": {"id": 2, "n": 123456789012345678901234567890}}]}`);
    await loader.loadBatch(batch);
    expect((await columnTypes(t)).n).toBe("numeric");
    expect(await ctx.query(`select n::text from "${t}" order by id`)).toEqual([{ n: "5" }, { n: "123456789012345678901234567890" }]);
  });

  it("key_names that differ from the table's primary key: an error naming both lists, nothing written", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("keys");
    const schema = { properties: { id: { type: "integer" }, org: { type: "string" }, x: { type: "string" } } };
    await loader.loadBatch({
      table_name: t,
      key_names: ["id"],
      schema,
      messages: [{ action: "upsert", sequence: 1, data: { id: 1, org: "a" } }],
    });
    const before = await ctx.query(`select *, xmin::text from "${t}"`);
    for (const keys of [["org", "id"], ["id", "org"], [], ["org"]]) {
      const err = await loader
        .loadBatch({
          table_name: t,
          key_names: keys,
          schema: { properties: { ...schema.properties, added: { type: "string" } } },
          messages: [{ action: "upsert", sequence: 5, data: { id: 1, org: "b", added: "z" } }],
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeyMismatchError);
      expect((err as KeyMismatchError).code).toBe("KEY_NAMES_CHANGED");
      expect((err as Error).message).toContain('primary key ["id"]');
      expect((err as Error).message).toContain(keys.length === 0 ? "key_names [] (append-only)" : `key_names ${JSON.stringify(keys)}`);
    }
    expect(await ctx.query(`select *, xmin::text from "${t}"`)).toEqual(before);
    expect(Object.keys(await columnTypes(t))).not.toContain("added");
  });

  it("a loader whose cached table shape is stale (another loader widened a column) re-reads the catalog and loads", async () => {
    const a = await ctx.loader({ copyThreshold });
    const b = await ctx.loader({ copyThreshold });
    const t = uniqueTable("stale");
    const batch = (type: JsonSchema, sequence: number, id: number, v: unknown): Batch => ({
      table_name: t,
      key_names: ["id"],
      schema: { properties: { id: { type: "integer" }, v: type } },
      messages: [{ action: "upsert", sequence, data: { id, v } }],
    });
    await a.loadBatch(batch({ type: "boolean" }, 1, 1, true)); // a caches v as boolean
    await b.loadBatch(batch({ type: "array" }, 1, 2, [1])); // b widens v to jsonb
    await a.loadBatch(batch({ type: "boolean" }, 1, 3, false)); // a's cache is stale: boolean[] into jsonb
    await b.loadBatch(batch({ type: "integer" }, 1, 4, 5)); // and new columns seen by the other loader
    expect(await ctx.query(`select id, v::text from "${t}" order by id`)).toEqual([
      { id: "1", v: "true" },
      { id: "2", v: "[1]" },
      { id: "3", v: "false" },
      { id: "4", v: "5" },
    ]);
  });
});
