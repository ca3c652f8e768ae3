/**
 * JSON Schema → PostgreSQL column type, through one closed whitelist, and the widening lattice
 * used when a property's type changes. Nothing outside this table ever becomes a column type.
 *
 * Lattice (join = the least type that holds both exactly):
 *
 *        jsonb                 anything ∨ object/array = jsonb; text ∨ jsonb = jsonb
 *          |
 *        text                  two different scalars (other than the pairs below) = text
 *      /  |   \      \
 *  numeric boolean timestamptz date
 *     |
 *   bigint                     bigint ∨ numeric = numeric
 *
 * Widening an existing column converts stored values losslessly: bigint→numeric exactly,
 * scalars→text in their canonical text form (timestamps as ISO 8601 in UTC), anything→jsonb with
 * to_jsonb (numbers stay numbers, text becomes a JSON string).
 */
import { type ColumnDataType, type RawBuilder, sql } from "kysely";
import type { JsonSchema } from "./types.js";

export type ColumnType = "bigint" | "numeric" | "boolean" | "text" | "timestamptz" | "date" | "jsonb";

/** The whitelist: the only SQL type names seqload ever writes into DDL (as kysely data types). */
export const COLUMN_SQL: Readonly<Record<ColumnType, ColumnDataType>> = {
  bigint: "bigint",
  numeric: "numeric",
  boolean: "boolean",
  text: "text",
  timestamptz: "timestamptz",
  date: "date",
  jsonb: "jsonb",
};

/**
 * The columns seqload adds to every data table: the one list that DDL, the apply statement, the
 * stage, the catalog check and validation read. `_table_version` only exists on tables loaded
 * with table_version (full-table replication).
 */
export const SYSTEM_COLUMNS = [
  /** The row's version: the highest sequence applied to its key. */
  { name: "_sequence", type: "bigint", notNull: true, defaultNow: false, always: true },
  /** When the stored version was written. */
  { name: "_loaded_at", type: "timestamptz", notNull: true, defaultNow: true, always: true },
  /** Set by a delete (a tombstone) or by activate_version; null for a live row. */
  { name: "_deleted_at", type: "timestamptz", notNull: false, defaultNow: false, always: true },
  /** The table_version the row was loaded under. */
  { name: "_table_version", type: "bigint", notNull: false, defaultNow: false, always: false },
] as const satisfies readonly { name: string; type: ColumnType; notNull: boolean; defaultNow: boolean; always: boolean }[];

export type SystemColumnName = (typeof SYSTEM_COLUMNS)[number]["name"];

export const SYSTEM_COLUMN_NAMES: readonly SystemColumnName[] = SYSTEM_COLUMNS.map((c) => c.name);

/** The system columns a table has: all but _table_version unless it is loaded with table_version. */
export function systemColumnsOf(hasTableVersion: boolean) {
  return SYSTEM_COLUMNS.filter((c) => c.always || hasTableVersion);
}

/** format_type() output → ColumnType, for reading the catalog back. */
export function columnTypeFromCatalog(formatted: string): ColumnType | null {
  switch (formatted) {
    case "bigint":
      return "bigint";
    case "numeric":
      return "numeric";
    case "boolean":
      return "boolean";
    case "text":
      return "text";
    case "timestamp with time zone":
      return "timestamptz";
    case "date":
      return "date";
    case "jsonb":
      return "jsonb";
    default:
      return null;
  }
}

export function joinTypes(a: ColumnType, b: ColumnType): ColumnType {
  if (a === b) return a;
  if (a === "jsonb" || b === "jsonb") return "jsonb";
  if ((a === "bigint" && b === "numeric") || (a === "numeric" && b === "bigint")) return "numeric";
  return "text";
}

/** True when a column of type `from` must be altered to hold values of `to`. */
export function needsWidening(from: ColumnType, to: ColumnType): boolean {
  return joinTypes(from, to) !== from;
}

/** SQL expression converting the existing column `name` of type `from` to `to`, losslessly. */
export function widenUsing(name: string, from: ColumnType, to: ColumnType): RawBuilder<unknown> {
  const column = sql.id(name);
  if (to === "numeric") return sql`${column}::numeric`;
  if (to === "jsonb") return sql`to_jsonb(${column})`;
  // to text: timestamps in ISO 8601 (to_json gives "2019-11-26T22:29:16+00:00" under TimeZone UTC).
  if (from === "timestamptz") return sql`(to_json(${column}) #>> '{}')`;
  return sql`${column}::text`;
}

const KNOWN_JSON_TYPES = new Set(["null", "boolean", "integer", "number", "string", "object", "array"]);

export type SchemaTypeResult = { type: ColumnType | null } | { problem: string };

/**
 * The column type for one property schema. `type: null` means the property can only ever be
 * null: no column is created for it until a non-null type appears.
 */
export function columnTypeForSchema(schema: unknown): SchemaTypeResult {
  if (schema === true || (typeof schema === "object" && schema !== null && Object.keys(schema).length === 0)) {
    return { type: "jsonb" }; // no constraint at all: any JSON value
  }
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) {
    return { problem: "property schema must be an object" };
  }
  const s = schema as JsonSchema;
  let result: ColumnType | null = null;
  let sawAny = false;
  const add = (t: ColumnType | null) => {
    sawAny = true;
    if (t !== null) result = result === null ? t : joinTypes(result, t);
  };
  if (s.type !== undefined) {
    const types = Array.isArray(s.type) ? s.type : [s.type];
    for (const t of types) {
      if (typeof t !== "string" || !KNOWN_JSON_TYPES.has(t)) return { problem: `unknown JSON Schema type ${JSON.stringify(t)}` };
      add(scalarColumnType(t, s.format));
    }
  }
  for (const keyword of ["anyOf", "oneOf"] as const) {
    const branches = s[keyword];
    if (branches === undefined) continue;
    if (!Array.isArray(branches)) return { problem: `${keyword} must be an array` };
    for (const branch of branches) {
      const r = columnTypeForSchema(branch);
      if ("problem" in r) return r;
      add(r.type);
    }
  }
  if (!sawAny) {
    // No type information (e.g. only "properties" or only "format"): any JSON value.
    return { type: "jsonb" };
  }
  return { type: result };
}

function scalarColumnType(jsonType: string, format: unknown): ColumnType | null {
  switch (jsonType) {
    case "null":
      return null;
    case "boolean":
      return "boolean";
    case "integer":
      return "bigint";
    case "number":
      return "numeric";
    case "string":
      if (format === "date-time") return "timestamptz";
      if (format === "date") return "date";
      return "text";
    default:
      return "jsonb"; // object, array
  }
}
