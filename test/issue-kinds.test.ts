// ValidationIssue.kind: what programs (the HTTP server) branch on instead of parsing the words.
import { describe, expect, it } from "vitest";
import { BatchValidationError, type ValidationIssue, validateBatch } from "../src/index.js";
import { stitchValidationText } from "../src/server/replies.js";
import { useDatabase } from "./helpers/context.js";

const ctx = useDatabase("kinds");

function issuesOf(batch: unknown): ValidationIssue[] {
  try {
    validateBatch(batch);
  } catch (e) {
    if (e instanceof BatchValidationError) return e.issues;
    throw e;
  }
  throw new Error("expected the batch to be invalid");
}

describe("ValidationIssue.kind", () => {
  it("names each kind of problem, and the Stitch wording follows the kind", () => {
    const issues = issuesOf({
      table_name: "t",
      key_names: ["id/x"],
      schema: { properties: { "id/x": { type: "integer" }, name: { type: "string" } } },
      extra: 1,
      messages: [
        { action: "upsert", sequence: 1, data: { "id/x": 1, name: 5 } },
        { action: "upsert", sequence: 2, data: { name: "a" } },
        { action: "upsert", sequence: 3, data: { "id/x": null } },
        { action: "jump", sequence: 4, data: { "id/x": 2 } },
        { action: "upsert", sequence: 5, data: { "id/x": 3, name: "nul\u0000" } },
      ],
    });
    expect(issues.map((i) => [i.kind, i.index, i.path])).toEqual([
      ["batch", null, "/extra"],
      ["schema", 0, "/messages/0/data/name"],
      ["key_missing", 1, "/messages/1/data/id~1x"],
      ["key_null", 2, "/messages/2/data/id~1x"],
      ["schema", 2, "/messages/2/data/id~1x"],
      ["message", 3, "/messages/3/action"],
      ["data", 4, "/messages/4/data/name"],
    ]);
    expect(stitchValidationText(issues).split("\n")).toEqual([
      'Request failed validation:#/extra: unknown field "extra" (allowed: table_name, key_names, schema, messages, table_version, bookmark_names)',
      "Record 0 did not conform to schema: #/name: expected type string, found integer",
      "Record 1 is missing key property id/x",
      "Record 2 has a null key property id/x",
      "Record 2 did not conform to schema: #/id~1x: expected type integer, found null",
      'Request failed validation:#/messages/3/action: unknown action "jump" (expected "upsert", "delete" or "activate_version")',
      "Record 4 did not conform to schema: #/name: text contains U+0000 (NUL), which PostgreSQL cannot store",
    ]);
  });

  it("is not enumerable: an issue still prints and serialises as index, path and message", () => {
    const [issue] = issuesOf({ table_name: "t", schema: { properties: {} }, messages: [] });
    expect(JSON.parse(JSON.stringify(issue))).toEqual({ index: null, path: "/messages", message: expect.any(String) });
    expect(issue?.kind).toBe("batch");
  });
});

describe("loadBatch({ limits })", () => {
  it("refuses a batch over maxMessages before validating its records, with that one problem", async () => {
    const loader = await ctx.loader();
    const batch = {
      table_name: "limited",
      schema: { properties: { id: { type: "string" } } }, // every record below is invalid too
      messages: Array.from({ length: 11 }, (_, i) => ({ action: "upsert", sequence: i, data: { id: i } })),
    };
    const err = await loader.loadBatch(batch, { limits: { maxMessages: 10 } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BatchValidationError);
    expect((err as BatchValidationError).issues).toEqual([
      { index: null, path: "/messages", message: "the batch has 11 messages; at most 10 are accepted" },
    ]);
    expect((err as BatchValidationError).table).toBe("limited");
    const all = await loader.loadBatch(batch).catch((e: unknown) => e);
    expect((all as BatchValidationError).issues).toHaveLength(11);
  });
});
