// Hard values: every one stored exactly, or refused with a clear error naming message and field.
import { describe, expect, it } from "vitest";
import { BatchValidationError } from "../src/index.js";
import { parseJson } from "../src/json.js";
import { PATHS, uniqueTable, useDatabase } from "./helpers/context.js";

const ctx = useDatabase("values");

describe.each(PATHS)("values ($path path)", ({ copyThreshold }) => {
  it("date-times with any offset are stored as the right instant; dates stay dates", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("times");
    const values = [
      "2019-11-26T22:29:16Z",
      "2019-11-26T17:29:16-05:00",
      "2019-11-27T03:59:16+05:30",
      "2019-11-26T22:29:16+0000",
      "2019-11-26T23:29:16+01",
      "2019-11-26 22:29:16",
      "2019-11-26T22:29:16.000000Z",
    ];
    await loader.loadBatch({
      table_name: t,
      key_names: ["id"],
      schema: {
        properties: { id: { type: "integer" }, at: { type: "string", format: "date-time" }, d: { type: "string", format: "date" } },
      },
      messages: values.map((at, id) => ({ action: "upsert", sequence: 1, data: { id, at, d: "2024-02-29" } })),
    });
    const rows = await ctx.query<{ at: string; d: string }>(`select to_json(at)#>>'{}' as at, d::text from "${t}" order by id`);
    // The session time zone of the query does not matter: compare instants.
    const instants = await ctx.query<{ same: boolean }>(`select bool_and(at = '2019-11-26T22:29:16Z'::timestamptz) as same from "${t}"`);
    expect(instants).toEqual([{ same: true }]);
    expect(rows.every((r) => r.d === "2024-02-29")).toBe(true);
    // And with microseconds.
    const t2 = uniqueTable("micro");
    await loader.loadBatch({
      table_name: t2,
      key_names: ["id"],
      schema: { properties: { id: { type: "integer" }, at: { type: "string", format: "date-time" } } },
      messages: [{ action: "upsert", sequence: 1, data: { id: 1, at: "2019-11-26T22:29:16.123456+02:00" } }],
    });
    expect(await ctx.query(`select extract(epoch from at)::text as e from "${t2}"`)).toEqual([{ e: "1574800156.123456" }]);
  });

  it("numbers are stored exactly as written, through the lossless parse", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("nums");
    const text = `{"table_name": "${t}", "key_names": ["id"], "schema": {"properties": {"id": {"type": "integer"}, "x": {"type": "number"}, "i": {"type": ["null", "integer"]}}},
      "messages": [
        {"action": "upsert", "sequence": 1, "data": {"id": 1, "x": 19.99, "i": 9223372036854775807}},
        {"action": "upsert", "sequence": 1, "data": {"id": 2, "x": 0.1, "i": -9223372036854775808}},
        {"action": "upsert", "sequence": 1, "data": {"id": 3, "x": 12345678901234567890.5, "i": 9007199254740993}},
        {"action": "upsert", "sequence": 1, "data": {"id": 4, "x": 1e-7, "i": null}},
        {"action": "upsert", "sequence": 1, "data": {"id": 5, "x": 0.30000000000000004441, "i": 0}}
      ]}`;
    await loader.loadBatch(parseJson(text));
    expect(await ctx.query(`select x::text, i::text from "${t}" order by id`)).toEqual([
      { x: "19.99", i: "9223372036854775807" },
      { x: "0.1", i: "-9223372036854775808" },
      { x: "12345678901234567890.5", i: "9007199254740993" },
      { x: "0.0000001", i: null },
      { x: "0.30000000000000004441", i: "0" },
    ]);
  });

  it("the empty string stays empty, the string 'NULL' stays a string, \\N and tabs survive COPY", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("strings");
    const strings = ["", "NULL", "null", "\\N", "a\tb\nc\rd\\e", " leading and trailing ", "é 漢字 🎉", "'; drop table x; --", '"quoted"'];
    await loader.loadBatch({
      table_name: t,
      key_names: ["id"],
      schema: { properties: { id: { type: "integer" }, s: { type: ["null", "string"] } } },
      messages: [
        ...strings.map((s, id) => ({ action: "upsert", sequence: 1, data: { id, s } })),
        { action: "upsert", sequence: 1, data: { id: 100, s: null } },
      ],
    });
    const rows = await ctx.query<{ s: string | null }>(`select s from "${t}" order by id`);
    expect(rows.map((r) => r.s)).toEqual([...strings, null]);
  });

  it("nested objects and arrays round-trip through jsonb, big numbers inside them too", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("json");
    const text = `{"table_name": "${t}", "key_names": ["id"], "schema": {"properties": {"id": {"type": "integer"}, "doc": {"type": ["null", "object"]}, "list": {"type": "array"}}},
      "messages": [{"action": "upsert", "sequence": 1, "data": {"id": 1, "doc": {"a": {"b": [1, 2.5, "x", null, true]}, "big": 1795465705836060200, "dec": 12345678901234567890.5, "s": "tab\\there"}, "list": [[], {}, "NULL", ""]}}]}`;
    await loader.loadBatch(parseJson(text));
    const [row] = await ctx.query<{ doc: string; list: string }>(`select doc::text, list::text from "${t}"`);
    expect(parseJson(row?.doc ?? "")).toEqual(
      parseJson(`{"a": {"b": [1, 2.5, "x", null, true]}, "big": 1795465705836060200, "dec": 12345678901234567890.5, "s": "tab\\there"}`),
    );
    expect(row?.doc).toContain("1795465705836060200");
    expect(row?.doc).toContain("12345678901234567890.5");
    expect(JSON.parse(row?.list ?? "")).toEqual([[], {}, "NULL", ""]);
  });

  it("a string containing U+0000 is refused with an error naming the message and field; nothing written", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("nul");
    const err = await loader
      .loadBatch({
        table_name: t,
        key_names: ["id"],
        schema: { properties: { id: { type: "integer" }, s: { type: "string" }, o: { type: "object" } } },
        messages: [
          { action: "upsert", sequence: 1, data: { id: 1, s: "fine" } },
          { action: "upsert", sequence: 1, data: { id: 2, s: "bad\u0000value" } },
          { action: "upsert", sequence: 1, data: { id: 3, o: { deep: ["x\u0000"] } } },
        ],
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BatchValidationError);
    expect((err as BatchValidationError).issues).toEqual([
      { index: 1, path: "/messages/1/data/s", message: expect.stringContaining("U+0000") },
      { index: 2, path: "/messages/2/data/o", message: expect.stringContaining("U+0000") },
    ]);
    expect(await ctx.query("select to_regclass($1)::text as t", [`"${t}"`])).toEqual([{ t: null }]);
  });

  it("invalid date-times and dates are refused by validation, naming message and field", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const err = await loader
      .loadBatch({
        table_name: uniqueTable("baddates"),
        schema: { properties: { at: { type: "string", format: "date-time" }, d: { type: ["null", "string"], format: "date" } } },
        messages: [
          { action: "upsert", sequence: 1, data: { at: "yesterday" } },
          { action: "upsert", sequence: 1, data: { at: "2019-02-29T00:00:00Z" } },
          { action: "upsert", sequence: 1, data: { at: "2019-01-01T00:00:00Z", d: "2019-13-01" } },
        ],
      })
      .catch((e: unknown) => e);
    expect((err as BatchValidationError).issues.map((i) => i.path)).toEqual([
      "/messages/0/data/at",
      "/messages/1/data/at",
      "/messages/2/data/d",
    ]);
  });
});

describe("JSON schemas as real senders write them", () => {
  it("type arrays with null, anyOf, formats, additionalProperties, missing properties, multipleOf on floats", async () => {
    const loader = await ctx.loader();
    const t = uniqueTable("senders");
    const schema = {
      type: "object",
      additionalProperties: false,
      properties: {
        id: { type: "integer" },
        price: { type: ["null", "number"], multipleOf: 0.00001 },
        amount: { type: "number", multipleOf: 0.01 },
        ts: { anyOf: [{ type: "string", format: "date-time" }, { type: "null" }] },
        label: { anyOf: [{ type: "string" }, { type: "integer" }] },
        day: { type: ["null", "string"], format: "date" },
        only_null: { type: "null" },
        capped: { type: "number", exclusiveMaximum: true, maximum: 100 },
      },
    };
    const r = await loader.loadBatch({
      table_name: t,
      key_names: ["id"],
      schema,
      messages: [
        {
          action: "upsert",
          sequence: 1,
          data: { id: 1, price: 1.27589, amount: 19.99, ts: "2020-01-13T21:25:03+0000", label: "a", day: null, capped: 99.5 },
        },
        { action: "upsert", sequence: 1, data: { id: 2, price: null, amount: 0.07, ts: null, label: 7 } },
        { action: "upsert", sequence: 1, data: { id: 3, amount: 4.35 } },
      ],
    });
    expect(r.inserted).toBe(3);
    expect(
      await ctx.query(`select id, price::text, amount::text, ts is not null as has_ts, label, day, capped::text from "${t}" order by id`),
    ).toEqual([
      { id: "1", price: "1.27589", amount: "19.99", has_ts: true, label: "a", day: null, capped: "99.5" },
      { id: "2", price: null, amount: "0.07", has_ts: false, label: "7", day: null, capped: null },
      { id: "3", price: null, amount: "4.35", has_ts: false, label: null, day: null, capped: null },
    ]);
    const cols = await ctx.query<{ n: string }>(
      "select attname::text as n from pg_attribute where attrelid = $1::regclass and attnum > 0 order by attnum",
      [`"${t}"`],
    );
    expect(cols.map((c) => c.n)).not.toContain("only_null");
    // additionalProperties: false and exclusiveMaximum (draft 4) are enforced.
    const err = await loader
      .loadBatch({
        table_name: t,
        key_names: ["id"],
        schema,
        messages: [
          { action: "upsert", sequence: 2, data: { id: 4, amount: 1, extra: 1 } },
          { action: "upsert", sequence: 2, data: { id: 5, amount: 1, capped: 100 } },
        ],
      })
      .catch((e: unknown) => e);
    expect((err as BatchValidationError).issues.map((i) => [i.index, i.path])).toEqual([
      [0, "/messages/0/data"],
      [1, "/messages/1/data/capped"],
    ]);
  });
});
