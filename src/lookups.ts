/**
 * What is stored, for clients that resume or check before sending: a table's highest sequence
 * (from the load log, not a scan of the table), the stored sequence of given keys (tombstones
 * included), and a per-table summary for `seqload status`. Reads only; each is one snapshot.
 */
import type pg from "pg";
import { type TableInfo, readTableInfo } from "./catalog.js";
import { COLUMN_SQL, type ColumnType } from "./columns.js";
import { ConfigurationError, DatabaseError, SeqloadError, TableShapeError, isConnectionError, wrapPgError } from "./errors.js";
import { identifierProblem, quoteIdent, quoteQualified, showName } from "./identifiers.js";
import { loadSql } from "./sql.js";
import { encodeValue } from "./values.js";

type Queryable = Pick<pg.ClientBase, "query">;

/** The stored version of one key. */
export interface StoredSequence {
  /** The row's `_sequence`. */
  sequence: bigint;
  /** True for a tombstone (`_deleted_at` is set: a delete, or retired by activate_version). */
  deleted: boolean;
}

/** A key to look up: an object with a value per key column, or the bare value for a one-column key. */
export type KeyInput = Readonly<Record<string, unknown>> | string | number | bigint;

/** One managed table, as `seqload status` shows it. */
export interface TableStatus {
  table: string;
  /** Primary key columns; [] for an append-only table. */
  keyNames: string[];
  /** Rows stored, tombstones included. */
  rows: number;
  /** Rows without `_deleted_at`. */
  live: number;
  /** Tombstones (`_deleted_at` set). */
  deleted: number;
  /** The highest sequence seqload committed into the table, from the load log; null before any load. */
  maxSequence: bigint | null;
  /** Batches committed into the table (load log rows). */
  batches: number;
  /** When the last batch was committed; null before any load. */
  lastLoadedAt: Date | null;
}

interface StatusRow {
  table_name: string;
  key_names: string[];
  batches: string;
  max_sequence: string | null;
  last_loaded_at: Date | null;
}

const UNDEFINED_TABLE = "42P01";

function checkName(name: unknown, what: string): asserts name is string {
  const p = identifierProblem(name, what);
  if (p !== null) throw new ConfigurationError(p);
}

/** A read failed: connection problems as ConnectionError, anything else as a DatabaseError saying what was read. */
function readError(e: unknown, what: string): SeqloadError {
  if (e instanceof SeqloadError) return e;
  if (isConnectionError(e)) return wrapPgError(e, what);
  const err = e as { code?: string; message?: string };
  if (err.code === "28P01" || err.code === "3D000" || err.code === "28000") return wrapPgError(e, what);
  return new DatabaseError("DATABASE_ERROR", `${what}: ${err.message ?? String(e)} (SQLSTATE ${err.code ?? "none"})`, err.code, e, false);
}

/**
 * The highest sequence seqload committed into `table`, or null when nothing was loaded into it.
 * Read from the load log (seqload.loads keeps each batch's highest sequence), so it costs one index
 * probe whatever the table's size. It is at least every stored `_sequence`; it is higher only when
 * the highest message of some batch was an activate_version, or lost to a stored version, or when
 * rows were removed outside seqload.
 */
export async function maxSequence(db: Queryable, schema: string, table: string): Promise<bigint | null> {
  checkName(table, "table");
  try {
    const r = await db.query<{ max_sequence: string | null }>(loadSql("max-sequence"), [schema, table]);
    const max = r.rows[0]?.max_sequence ?? null;
    return max === null ? null : BigInt(max);
  } catch (e) {
    // No load log yet: seqload's migrations have not run on this database, so nothing was loaded.
    if ((e as { code?: string }).code === UNDEFINED_TABLE) return null;
    throw readError(e, `reading the highest sequence of table ${showName(table)}`);
  }
}

/** The value of each key column of one key, checked. */
function keyValues(key: KeyInput, index: number, keyNames: string[]): unknown[] {
  const isObject = typeof key === "object" && key !== null && !Array.isArray(key);
  if (!isObject) {
    if (keyNames.length !== 1 || key === null || key === undefined) {
      throw new ConfigurationError(
        `key ${index} must be an object with a value for each key column ${JSON.stringify(keyNames)}, got ${key === null ? "null" : typeof key}`,
      );
    }
    return [key];
  }
  const record = key;
  return keyNames.map((name) => {
    const v = record[name];
    if (v === undefined || v === null) throw new ConfigurationError(`key ${index} has no value for key column ${showName(name)}`);
    return v;
  });
}

/**
 * The stored sequence of each key in `keys`, in the same order: `{ sequence, deleted }`, or null
 * where the table holds no row for the key (or the table does not exist). Keys are matched as
 * loading matches them (a 19-digit integer key given as a bigint or a decimal string).
 */
export async function storedSequences(
  db: Queryable,
  schema: string,
  table: string,
  keys: readonly KeyInput[],
): Promise<(StoredSequence | null)[]> {
  checkName(table, "table");
  // A JavaScript caller may pass anything. (Checked on an `unknown` copy: isArray would narrow
  // `keys` itself to any[].)
  const given: unknown = keys;
  if (!Array.isArray(given)) throw new ConfigurationError("keys must be an array");
  const what = `looking up ${keys.length} key${keys.length === 1 ? "" : "s"} in table ${showName(table)}`;
  let info: TableInfo;
  try {
    info = await readTableInfo(db, schema, table);
  } catch (e) {
    throw readError(e, what);
  }
  const result: (StoredSequence | null)[] = keys.map(() => null);
  if (!info.exists || keys.length === 0) return result;
  const keyNames = info.keyNames;
  if (keyNames.length === 0) {
    throw new TableShapeError(
      `table ${showName(table)} is append-only (no key_names): every message is a row of its own, so there is no stored sequence per key`,
    );
  }
  const types = keyNames.map((name) => {
    const type = info.columns.get(name);
    if (type === undefined || type === "other") {
      throw new TableShapeError(`table ${showName(table)}: key column ${showName(name)} has a type seqload did not create`);
    }
    return type;
  });
  const columns: (string | null)[][] = keyNames.map(() => []);
  keys.forEach((key, i) => {
    keyValues(key, i, keyNames).forEach((v, k) => (columns[k] as (string | null)[]).push(encodeValue(v, types[k] as ColumnType)));
  });
  const arrays = types.map((type, k) => `$${k + 1}::${COLUMN_SQL[type]}[]`);
  const names = keyNames.map((_, k) => `k${k}`);
  const match = keyNames.map((name, k) => `t.${quoteIdent(name)} = k.k${k}`).join(" AND ");
  const text = `SELECT k.ord::int AS i, t."_sequence"::text AS sequence, t."_deleted_at" IS NOT NULL AS deleted
FROM unnest(${arrays.join(", ")}) WITH ORDINALITY AS k(${names.join(", ")}, ord)
JOIN ${quoteQualified(schema, table)} AS t ON ${match}`;
  let rows: { i: number; sequence: string; deleted: boolean }[];
  try {
    rows = (await db.query<{ i: number; sequence: string; deleted: boolean }>(text, columns)).rows;
  } catch (e) {
    if ((e as { code?: string }).code === UNDEFINED_TABLE) return result; // dropped meanwhile
    throw readError(e, what);
  }
  for (const row of rows) result[row.i - 1] = { sequence: BigInt(row.sequence), deleted: row.deleted };
  return result;
}

/**
 * The tables seqload manages in `schema` (or only `table`), with row counts (an exact count: it
 * reads each table), the highest sequence and the last load from the load log. Tables dropped
 * since they were loaded are left out; an empty list when nothing was ever loaded.
 */
export async function tableStatus(db: Queryable, schema: string, table?: string): Promise<TableStatus[]> {
  checkName(schema, "schema");
  if (table !== undefined) checkName(table, "table");
  const what =
    table === undefined
      ? `reading the status of the tables in schema ${showName(schema)}`
      : `reading the status of table ${showName(table)}`;
  try {
    let log: pg.QueryResult<StatusRow>;
    try {
      log = await db.query<StatusRow>(loadSql("table-status"), [schema, table ?? null]);
    } catch (e) {
      if ((e as { code?: string }).code === UNDEFINED_TABLE) return []; // seqload never ran here
      throw e;
    }
    const out: TableStatus[] = [];
    for (const row of log.rows) {
      let counts: pg.QueryResult<{ rows: string; live: string }>;
      try {
        counts = await db.query<{ rows: string; live: string }>(
          `SELECT count(*)::text AS rows, count(*) FILTER (WHERE "_deleted_at" IS NULL)::text AS live FROM ${quoteQualified(schema, row.table_name)}`,
        );
      } catch (e) {
        if ((e as { code?: string }).code === UNDEFINED_TABLE) continue; // dropped meanwhile
        throw e;
      }
      const rows = Number(counts.rows[0]?.rows ?? 0);
      const live = Number(counts.rows[0]?.live ?? 0);
      out.push({
        table: row.table_name,
        keyNames: row.key_names,
        rows,
        live,
        deleted: rows - live,
        maxSequence: row.max_sequence === null ? null : BigInt(row.max_sequence),
        batches: Number(row.batches),
        lastLoadedAt: row.last_loaded_at,
      });
    }
    return out;
  } catch (e) {
    throw readError(e, what);
  }
}
