/**
 * Step 3 of the data path: compare what the batch needs with what the table has, and say which
 * DDL (if any) must run. DDL is only ever planned when the catalog shows something missing.
 */
import type { TableInfo } from "./catalog.js";
import { COLUMN_SQL, type ColumnType, joinTypes, needsWidening, widenUsing } from "./columns.js";
import { KeyMismatchError, TableShapeError } from "./errors.js";
import { quoteIdent, quoteQualified } from "./identifiers.js";
import type { ValidatedBatch } from "./validate.js";

export interface TablePlan {
  create: boolean;
  add: [string, ColumnType][];
  widen: [string, ColumnType, ColumnType][];
  /** Every column the table will have after the DDL, with its type (system columns excluded). */
  columns: Map<string, ColumnType | "other">;
  /** The batch uses table_version and the table lacks the _table_version column. */
  addTableVersion: boolean;
  /** The table has (or will have) the _table_version column. */
  hasTableVersion: boolean;
}

const SYSTEM_COLUMN_DDL = [
  `"_sequence" bigint NOT NULL`,
  `"_loaded_at" timestamp with time zone NOT NULL DEFAULT now()`,
  `"_deleted_at" timestamp with time zone`,
];

/** Only on tables loaded with table_version (full-table replication): the version a row was loaded under. */
const TABLE_VERSION_DDL = `"_table_version" bigint`;

const SYSTEM_NAMES = new Set(["_sequence", "_loaded_at", "_deleted_at", "_table_version"]);

export function planTable(batch: ValidatedBatch, info: TableInfo): TablePlan {
  if (!info.exists) {
    const tv = batch.tableVersion !== null;
    return { create: true, add: [], widen: [], columns: new Map(batch.columns), addTableVersion: tv, hasTableVersion: tv };
  }
  if (info.columns.get("_sequence") !== "bigint" || !info.columns.has("_loaded_at") || !info.columns.has("_deleted_at")) {
    throw new TableShapeError(
      `table "${batch.table}" exists but is not a seqload table (it needs _sequence bigint, _loaded_at and _deleted_at columns); load into another table or schema`,
    );
  }
  if (info.keyNames.length !== batch.keyNames.length || info.keyNames.some((k, i) => k !== batch.keyNames[i])) {
    throw new KeyMismatchError(batch.table, info.keyNames, batch.keyNames);
  }
  const add: [string, ColumnType][] = [];
  const widen: [string, ColumnType, ColumnType][] = [];
  const columns = new Map<string, ColumnType | "other">();
  for (const [name, type] of info.columns) if (!SYSTEM_NAMES.has(name)) columns.set(name, type);
  for (const [name, wanted] of batch.columns) {
    const have = info.columns.get(name);
    if (have === undefined) {
      add.push([name, wanted]);
      columns.set(name, wanted);
    } else if (have !== "other" && needsWidening(have, wanted)) {
      const to = joinTypes(have, wanted);
      widen.push([name, have, to]);
      columns.set(name, to);
    }
  }
  const had = info.columns.has("_table_version");
  const addTableVersion = !had && batch.tableVersion !== null;
  return { create: false, add, widen, columns, addTableVersion, hasTableVersion: had || addTableVersion };
}

export function needsDdl(plan: TablePlan): boolean {
  return plan.create || plan.add.length > 0 || plan.widen.length > 0 || plan.addTableVersion;
}

/**
 * CREATE TABLE for a new table. With `primaryKey: false` the key is left out, for a first load
 * that adds it afterwards (addPrimaryKeySql): one sort then builds the index, instead of one
 * random index insert per row. The constraint gets the same name either way (<table>_pkey).
 */
export function createTableSql(schema: string, table: string, keyNames: string[], plan: TablePlan, primaryKey = true): string {
  const columns = plan.columns;
  const defs: string[] = [];
  for (const [name, type] of columns) {
    if (type === "other") continue;
    defs.push(`${quoteIdent(name)} ${COLUMN_SQL[type]}${keyNames.includes(name) ? " NOT NULL" : ""}`);
  }
  defs.push(...SYSTEM_COLUMN_DDL);
  if (plan.hasTableVersion) defs.push(TABLE_VERSION_DDL);
  if (keyNames.length > 0 && primaryKey) defs.push(`PRIMARY KEY (${keyNames.map(quoteIdent).join(", ")})`);
  return `CREATE TABLE ${quoteQualified(schema, table)} (\n  ${defs.join(",\n  ")}\n)`;
}

export function addPrimaryKeySql(schema: string, table: string, keyNames: string[]): string {
  return `ALTER TABLE ${quoteQualified(schema, table)} ADD PRIMARY KEY (${keyNames.map(quoteIdent).join(", ")})`;
}

export function alterTableSql(schema: string, table: string, plan: TablePlan): string | null {
  const clauses: string[] = [];
  if (plan.addTableVersion) clauses.push(`ADD COLUMN ${TABLE_VERSION_DDL}`);
  for (const [name, type] of plan.add) clauses.push(`ADD COLUMN ${quoteIdent(name)} ${COLUMN_SQL[type]}`);
  for (const [name, from, to] of plan.widen) {
    clauses.push(`ALTER COLUMN ${quoteIdent(name)} TYPE ${COLUMN_SQL[to]} USING ${widenUsing(quoteIdent(name), from, to)}`);
  }
  if (clauses.length === 0) return null;
  return `ALTER TABLE ${quoteQualified(schema, table)}\n  ${clauses.join(",\n  ")}`;
}
