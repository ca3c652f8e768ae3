// Validation happens before any write, and one error lists every problem with index and path.
import { describe, expect, it, vi } from "vitest";
import { BatchValidationError, validateBatch } from "../src/index.js";
import { PATHS, uniqueTable, useDatabase } from "./helpers/context.js";

const ctx = useDatabase("valid");
const schema = { properties: { id: { type: "integer" }, name: { type: "string" }, score: { type: ["null", "number"] } } };

function issuesOf(batch: unknown) {
  try {
    validateBatch(batch);
  } catch (e) {
    expect(e).toBeInstanceOf(BatchValidationError);
    return (e as BatchValidationError).issues;
  }
  throw new Error("expected the batch to be invalid");
}

describe("validateBatch (no database)", () => {
  it("accepts a valid batch and summarises it", () => {
    const s = validateBatch({
      table_name: "t",
      key_names: ["id"],
      schema,
      messages: [{ action: "upsert", sequence: 1, data: { id: 1, name: "a" } }],
    });
    expect(s).toEqual({ table: "t", keyNames: ["id"], received: 1, columns: { id: "bigint", name: "text", score: "numeric" } });
  });

  it("lists every problem in the batch with its message index and JSON path, not just the first", () => {
    const issues = issuesOf({
      table_name: "t",
      key_names: ["id"],
      schema,
      messages: [
        { action: "upsert", sequence: 1, data: { id: 1, name: "ok" } },
        { action: "upsert", data: { id: 2, name: "no sequence" } },
        { action: "upsert", sequence: 2.5, data: { id: 3, name: "fraction" } },
        { action: "upsert", sequence: "9223372036854775808", data: { id: 4, name: "too big" } },
        { action: "upsert", sequence: 5, data: { name: "missing key" } },
        { action: "upsert", sequence: 6, data: { id: null, name: "null key" } },
        { action: "upsert", sequence: 7, data: { id: 7, name: 42 } },
        { action: "merge", sequence: 8, data: { id: 8, name: "unknown action" } },
        { action: "upsert", sequence: Number.NaN, data: { id: 9, name: "NaN" } },
        { action: "upsert", sequence: "12abc", data: { id: 10, name: "not a number" } },
      ],
    });
    const byIndex = (i: number) => issues.filter((x) => x.index === i).map((x) => `${x.path}: ${x.message}`);
    expect(byIndex(0)).toEqual([]);
    expect(byIndex(1)).toEqual(["/messages/1/sequence: sequence is missing"]);
    expect(byIndex(2)).toEqual(["/messages/2/sequence: sequence must be an integer, got the fraction 2.5"]);
    expect(byIndex(3)[0]).toMatch(/^\/messages\/3\/sequence: .*above the signed 64-bit maximum/);
    expect(byIndex(4)).toContain('/messages/4/data/id: key property "id" is missing');
    expect(byIndex(5)).toContain('/messages/5/data/id: key property "id" is null');
    expect(byIndex(6)).toEqual(["/messages/6/data/name: does not conform to the schema: expected type string, found integer"]);
    expect(byIndex(7)[0]).toMatch(/^\/messages\/7\/action: unknown action "merge"/);
    expect(byIndex(8)[0]).toMatch(/^\/messages\/8\/sequence: sequence must be a finite integer/);
    expect(byIndex(9)[0]).toMatch(/^\/messages\/9\/sequence: sequence must be a decimal integer/);
  });

  it("checks the envelope: table name, key names, schema, unknown fields, empty messages", () => {
    const issues = issuesOf({
      table_name: "",
      key_name: ["id"],
      key_names: ["id", "nope"],
      schema: { properties: { id: { type: "integer" }, _sequence: { type: "integer" } } },
      messages: [],
    });
    const text = issues.map((i) => `${i.path}: ${i.message}`);
    expect(text).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^\/key_name: unknown field "key_name"/),
        "/table_name: table_name must not be empty",
        expect.stringMatching(/^\/schema\/properties\/_sequence: .*collides with a seqload system column/),
        expect.stringMatching(/^\/key_names\/1: key "nope" is not a property/),
        expect.stringMatching(/^\/messages: messages is empty/),
      ]),
    );
  });

  it("rejects non-objects with a clear message", () => {
    expect(issuesOf([])).toEqual([{ index: null, path: "", message: "a batch must be a JSON object, got an array" }]);
    expect(issuesOf(null)[0]?.message).toMatch(/got null/);
  });

  it("error message names the table and each problem", () => {
    const err = (() => {
      try {
        validateBatch({ table_name: "customers", schema, messages: [{ action: "upsert", sequence: 1.5, data: { id: 1 } }] });
      } catch (e) {
        return e as BatchValidationError;
      }
    })();
    expect(err?.code).toBe("BATCH_INVALID");
    expect(err?.message).toContain('batch for table "customers" is invalid (1 problem); nothing was written');
    expect(err?.message).toContain("message 0 (/messages/0/sequence): sequence must be an integer, got the fraction 1.5");
  });
});

describe.each(PATHS)("an invalid message anywhere leaves the table exactly as before ($path path)", ({ copyThreshold }) => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["missing sequence", { action: "upsert", data: { id: 500, name: "x" } }, /sequence is missing/],
    ["fractional sequence", { action: "upsert", sequence: 1.25, data: { id: 500, name: "x" } }, /fraction/],
    [
      "out-of-range sequence",
      { action: "upsert", sequence: "-9223372036854775809", data: { id: 500, name: "x" } },
      /below the signed 64-bit minimum/,
    ],
    ["null key", { action: "upsert", sequence: 9, data: { id: null, name: "x" } }, /key property "id" is null/],
    ["missing key", { action: "upsert", sequence: 9, data: { name: "x" } }, /key property "id" is missing/],
    [
      "data violating the schema",
      { action: "upsert", sequence: 9, data: { id: 500, name: ["not", "a", "string"] } },
      /expected type string/,
    ],
    ["unknown action", { action: "replace", sequence: 9, data: { id: 500, name: "x" } }, /unknown action "replace"/],
  ];
  for (const [label, bad, pattern] of cases) {
    it(`${label}`, async () => {
      const loader = await ctx.loader({ copyThreshold });
      const t = uniqueTable("inv");
      const good = (id: number, sequence: number) => ({ action: "upsert", sequence, data: { id, name: `n${id}` } });
      await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages: [good(1, 1), good(2, 1)] });
      const before = await ctx.query(`select *, xmin::text from "${t}" order by id`);
      const logBefore = await ctx.query("select count(*)::int as n from seqload.loads where table_name = $1", [t]);
      const messages = [good(1, 5), good(3, 5), good(4, 5)];
      messages.splice(2, 0, bad as never); // the bad one sits in the middle, at index 2
      const err = await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BatchValidationError);
      const issues = (err as BatchValidationError).issues;
      expect(issues.every((i) => i.index === 2)).toBe(true);
      expect(issues.map((i) => i.message).join("\n")).toMatch(pattern);
      expect(await ctx.query(`select *, xmin::text from "${t}" order by id`)).toEqual(before);
      expect(await ctx.query("select count(*)::int as n from seqload.loads where table_name = $1", [t])).toEqual(logBefore);
    });
  }

  it("an invalid first batch does not even create the table", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("never");
    await expect(
      loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages: [{ action: "upsert", sequence: 1, data: { id: "one" } }] }),
    ).rejects.toBeInstanceOf(BatchValidationError);
    expect(await ctx.query("select to_regclass($1)::text as t", [`"${t}"`])).toEqual([{ t: null }]);
  });
});

describe("schema compilation", () => {
  it("compiles a schema once, however many batches (and schema objects) carry it", async () => {
    const AjvModule = (await import("ajv-draft-04")) as unknown as { default: { prototype: { compile: (...a: unknown[]) => unknown } } };
    const compile = vi.spyOn(AjvModule.default.prototype, "compile");
    try {
      const schema = () => ({ properties: { id: { type: "integer" }, once: { type: "string", maxLength: 17 } } });
      for (let i = 0; i < 20; i++) {
        validateBatch({
          table_name: "t",
          key_names: ["id"],
          schema: schema(),
          messages: [{ action: "upsert", sequence: i, data: { id: i } }],
        });
      }
      expect(compile).toHaveBeenCalledTimes(1);
    } finally {
      compile.mockRestore();
    }
  });
});
