/**
 * Step 3 of the data path: compare what the batch needs with what the table has, and say which
 * DDL (if any) must run. DDL is only ever planned when the catalog shows something missing.
 */
import type { TableInfo } from "./catalog.js";
import {
  type AlterTableBuilder,
  AlterTableColumnAlteringBuilder,
  type ColumnDefinitionBuilder,
  type CompiledQuery,
  type CreateTableBuilder,
  sql,
} from "kysely";
import { TARGET, compileFor, db } from "./builder.js";
import {
  COLUMN_SQL,
  type ColumnType,
  SYSTEM_COLUMNS,
  SYSTEM_COLUMN_NAMES,
  joinTypes,
  needsWidening,
  systemColumnsOf,
  widenUsing,
} from "./columns.js";
import { KeyMismatchError, TableShapeError } from "./errors.js";
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

const SYSTEM_NAMES = new Set<string>(SYSTEM_COLUMN_NAMES);

/**
 * The column type the batch needs per property: what its schema says, except that an integer
 * property holding a value beyond int64 needs numeric (stored exactly).
 */
export function batchColumns(batch: ValidatedBatch): Map<string, ColumnType> {
  if (batch.beyondInt64.size === 0) return batch.columns;
  const columns = new Map(batch.columns);
  for (const name of batch.beyondInt64) columns.set(name, "numeric");
  return columns;
}

export function planTable(batch: ValidatedBatch, info: TableInfo): TablePlan {
  if (!info.exists) {
    const tv = batch.tableVersion !== null;
    return { create: true, add: [], widen: [], columns: new Map(batchColumns(batch)), addTableVersion: tv, hasTableVersion: tv };
  }
  const seqloadTable = systemColumnsOf(false).every((c) => info.columns.has(c.name)) && info.columns.get("_sequence") === "bigint";
  if (!seqloadTable) {
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
  for (const [name, wanted] of batchColumns(batch)) {
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

/** A column definition for the table's system columns. */
function systemColumn(c: (typeof SYSTEM_COLUMNS)[number]): (col: ColumnDefinitionBuilder) => ColumnDefinitionBuilder {
  return (col) => {
    let defined = c.notNull ? col.notNull() : col;
    if (c.defaultNow) defined = defined.defaultTo(sql`now()`);
    return defined;
  };
}

/**
 * CREATE TABLE for a new table. With `primaryKey: false` the key is left out, for a first load
 * that adds it afterwards (addPrimaryKeyQuery): one sort then builds the index, instead of one
 * random index insert per row. The constraint is left unnamed either way, so PostgreSQL names it
 * <table>_pkey (shortened to fit in 63 bytes, as it does for every table).
 */
export function createTableQuery(schema: string, table: string, keyNames: string[], plan: TablePlan, primaryKey = true): CompiledQuery {
  let create: CreateTableBuilder<string, string> = db.schema.createTable(TARGET);
  for (const [name, type] of plan.columns) {
    if (type === "other") continue;
    create = create.addColumn(name, COLUMN_SQL[type], (col) => (keyNames.includes(name) ? col.notNull() : col));
  }
  for (const c of systemColumnsOf(plan.hasTableVersion)) create = create.addColumn(c.name, COLUMN_SQL[c.type], systemColumn(c));
  if (keyNames.length > 0 && primaryKey) create = create.addPrimaryKeyConstraint(UNNAMED, keyNames);
  return compileFor(schema, table, create);
}

/** kysely leaves out the CONSTRAINT clause for an empty name: PostgreSQL then picks <table>_pkey. */
const UNNAMED = "";

export function addPrimaryKeyQuery(schema: string, table: string, keyNames: string[]): CompiledQuery {
  return compileFor(schema, table, db.schema.alterTable(TARGET).addPrimaryKeyConstraint(UNNAMED, keyNames));
}

/** ALTER TABLE adding and widening columns in one statement, or null when nothing changes. */
export function alterTableQuery(schema: string, table: string, plan: TablePlan): CompiledQuery | null {
  // kysely chains several alterations of one table into one ALTER TABLE statement.
  let alter: AlterTableBuilder | AlterTableColumnAlteringBuilder = db.schema.alterTable(TARGET);
  if (plan.addTableVersion) {
    for (const c of SYSTEM_COLUMNS) if (!c.always) alter = alter.addColumn(c.name, COLUMN_SQL[c.type], systemColumn(c));
  }
  for (const [name, type] of plan.add) alter = alter.addColumn(name, COLUMN_SQL[type]);
  for (const [name, from, to] of plan.widen) {
    // kysely's setDataType has no USING clause: the type expression carries it.
    const type = sql`${sql.raw(COLUMN_SQL[to])} USING ${widenUsing(name, from, to)}`;
    alter = alter.alterColumn(name, (col) => col.setDataType(type));
  }
  if (!(alter instanceof AlterTableColumnAlteringBuilder)) return null; // nothing to change
  return compileFor(schema, table, alter);
}
