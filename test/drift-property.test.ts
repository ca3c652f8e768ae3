// Property: batches with drifting schemas and values; every value read back equals the value sent,
// after the documented widening (README "Types and widening").
import fc from "fast-check";
import { isLosslessNumber } from "lossless-json";
import { describe, expect, it } from "vitest";
import { type ColumnType, joinTypes } from "../src/columns.js";
import { parseJson } from "../src/json.js";
import { canonicalDecimal, canonicalTimestamp } from "../src/values.js";
import { useDatabase } from "./helpers/context.js";

const ctx = useDatabase("driftprop");

type Kind = "integer" | "number" | "string" | "boolean" | "datetime" | "date" | "object" | "array";
const SCHEMA: Record<Kind, object> = {
  integer: { type: ["null", "integer"] },
  number: { type: ["null", "number"] },
  string: { type: ["null", "string"] },
  boolean: { type: ["null", "boolean"] },
  datetime: { type: ["null", "string"], format: "date-time" },
  date: { type: ["null", "string"], format: "date" },
  object: { type: ["null", "object"] },
  array: { type: ["null", "array"] },
};
const COLUMN: Record<Kind, ColumnType> = {
  integer: "bigint",
  number: "numeric",
  string: "text",
  boolean: "boolean",
  datetime: "timestamptz",
  date: "date",
  object: "jsonb",
  array: "jsonb",
};

const valueOf: Record<Kind, fc.Arbitrary<unknown>> = {
  integer: fc.oneof(fc.integer(), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })),
  number: fc.oneof(
    fc.integer({ min: -1e6, max: 1e6 }).map((n) => n / 100),
    fc.constantFrom(0.1, 19.99, 1e-7, 123456.789, -0.5),
  ),
  string: fc.oneof(
    fc.string({ maxLength: 8 }).filter((s) => !s.includes("\u0000")),
    fc.constantFrom("", "NULL", "\\N", "a\tb\nc", "é漢🎉"),
  ),
  boolean: fc.boolean(),
  datetime: fc.constantFrom(
    "2019-11-26T22:29:16Z",
    "2019-11-26T17:29:16-05:00",
    "2020-01-13T21:25:03+0000",
    "2024-02-29T12:00:00.123456+02:00",
  ),
  date: fc.constantFrom("2024-02-29", "1999-12-31", "2000-01-01"),
  object: fc.record({ a: fc.integer(), s: fc.string({ maxLength: 4 }).filter((s) => !s.includes("\u0000")) }),
  array: fc.array(fc.oneof(fc.integer(), fc.boolean()), { maxLength: 3 }),
};

const kinds = Object.keys(SCHEMA) as Kind[];
const PROPS = ["p0", "p1", "p2"];

/**
 * How a value is represented after it was written into a column of type `types[0]` and that column
 * then widened through `types[1..]` — the documented lattice: a JSON value keeps its JSON type while
 * its column does; in a text column it becomes its text form; text moving to jsonb becomes a JSON string.
 */
type Rep = "num" | "bool" | "str" | "instant" | "json" | "numText" | "boolText";
function representation(kind: Kind, types: ColumnType[]): { rep: Rep; json: boolean } {
  let rep: Rep =
    kind === "integer" || kind === "number"
      ? "num"
      : kind === "boolean"
        ? "bool"
        : kind === "datetime"
          ? "instant"
          : kind === "object" || kind === "array"
            ? "json"
            : "str";
  let json = false;
  for (const t of types) {
    if (t === "text" && !json) {
      if (rep === "num") rep = "numText";
      if (rep === "bool") rep = "boolText";
    }
    if (t === "jsonb") json = true;
  }
  return { rep, json };
}

/** Does the text PostgreSQL returns equal the value sent, in its representation? */
function sameValue(sent: unknown, kind: Kind, read: string, types: ColumnType[]): boolean {
  const { rep, json } = representation(kind, types);
  const asText = (v: unknown) => (typeof v === "string" ? v : null);
  if (json) {
    const parsed = parseJson(read);
    switch (rep) {
      case "num":
        return (
          (typeof parsed === "number" || typeof parsed === "bigint" || isLosslessNumber(parsed)) &&
          canonicalDecimal(String(parsed)) === canonicalDecimal(String(sent))
        );
      case "numText":
        return asText(parsed) !== null && canonicalDecimal(parsed as string) === canonicalDecimal(String(sent));
      case "bool":
        return parsed === sent;
      case "boolText":
        return parsed === String(sent);
      case "instant":
        return asText(parsed) !== null && canonicalTimestamp(parsed as string) === canonicalTimestamp(sent as string);
      default:
        return JSON.stringify(parsed) === JSON.stringify(sent);
    }
  }
  switch (rep) {
    case "num":
    case "numText":
      return canonicalDecimal(read) === canonicalDecimal(String(sent));
    case "bool":
    case "boolText":
      return read === String(sent);
    case "instant": {
      // timestamptz's text form, or ISO 8601 text after widening, or the text as sent.
      const iso = read.replace(" ", "T").replace(/([+-]\d\d)$/, "$1:00");
      return canonicalTimestamp(iso) === canonicalTimestamp(sent as string);
    }
    default:
      return read === sent;
  }
}

describe("property: drifting schemas never lose or alter a value", () => {
  it("every value read back equals the value sent, after widening", async () => {
    const loader = await ctx.loader();
    const copyLoader = await ctx.loader({ copyThreshold: 0 });
    const batchArb = fc.record({
      kinds: fc.tuple(...PROPS.map(() => fc.constantFrom(...kinds))),
      rows: fc.integer({ min: 1, max: 4 }),
      copy: fc.boolean(),
    });
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(batchArb, { minLength: 1, maxLength: 4 }).chain((batches) =>
          fc.tuple(
            fc.constant(batches),
            fc.tuple(
              ...batches.map((b) =>
                fc.array(fc.tuple(...b.kinds.map((k) => fc.option(valueOf[k], { nil: null, freq: 4 }))), {
                  minLength: b.rows,
                  maxLength: b.rows,
                }),
              ),
            ),
          ),
        ),
        async ([batches, values]) => {
          run += 1;
          const t = `drift_${run}`;
          const finalType = new Map<string, ColumnType>();
          const history = new Map<string, ColumnType[]>(); // column type after each batch
          const sent: { id: number; prop: string; kind: Kind; value: unknown; batch: number }[] = [];
          let id = 0;
          for (const [bi, b] of batches.entries()) {
            const properties: Record<string, object> = { id: { type: "integer" } };
            PROPS.forEach((p, pi) => {
              const kind = b.kinds[pi] as Kind;
              properties[p] = SCHEMA[kind];
              let col = COLUMN[kind];
              // Integers beyond int64 are held as numeric (README).
              const rowsValues = (values[bi] ?? []).map((r) => r[pi]);
              if (kind === "integer" && rowsValues.some((v) => typeof v === "bigint" && (v > 2n ** 63n - 1n || v < -(2n ** 63n))))
                col = "numeric";
              const prev = finalType.get(p);
              const now = prev === undefined ? col : joinTypes(prev, col);
              finalType.set(p, now);
              history.set(p, [...(history.get(p) ?? []), now]);
            });
            const messages = (values[bi] ?? []).map((row) => {
              id += 1;
              const data: Record<string, unknown> = { id };
              PROPS.forEach((p, pi) => {
                data[p] = row[pi];
                if (row[pi] !== null) sent.push({ id, prop: p, kind: b.kinds[pi] as Kind, value: row[pi], batch: bi });
              });
              return { action: "upsert", sequence: 1, data };
            });
            const l = b.copy ? copyLoader : loader;
            await l.loadBatch({ table_name: t, key_names: ["id"], schema: { properties }, messages });
          }
          const rows = await ctx.query<Record<string, string | null>>(
            `select id::int as id, ${PROPS.map((p) => `${p}::text`).join(", ")} from "${t}"`,
          );
          const byId = new Map(rows.map((r) => [Number(r.id), r]));
          for (const s of sent) {
            const read = byId.get(s.id)?.[s.prop];
            const types = (history.get(s.prop) ?? []).slice(s.batch);
            if (read === null || read === undefined || !sameValue(s.value, s.kind, read, types)) {
              throw new Error(
                `row ${s.id} ${s.prop}: sent ${s.kind} ${String(s.value)}, read ${String(read)} from a column that went ${types.join(" → ")}`,
              );
            }
          }
          const types = await ctx.query<{ n: string; t: string }>(
            "select attname::text as n, format_type(atttypid, atttypmod) as t from pg_attribute where attrelid = $1::regclass and attname like 'p%'",
            [`"${t}"`],
          );
          for (const { n, t: ty } of types) expect(ty.replace("timestamp with time zone", "timestamptz")).toBe(finalType.get(n));
        },
      ),
      { numRuns: 60, seed: 4242 },
    );
  });
});
