/** Reading a table's shape from PostgreSQL's catalog, and caching it per loader. */
import { type ColumnType, columnTypeFromCatalog } from "./columns.js";
import { loadSql } from "./sql.js";

export interface TableInfo {
  exists: boolean;
  /** Column name → seqload type, or "other" for a type seqload did not create (left to PostgreSQL's casts). */
  columns: Map<string, ColumnType | "other">;
  /** Primary key columns in order; [] when the table has none (append-only). */
  keyNames: string[];
}

/** A Session (session.ts), or anything else that runs SQL text with parameters. */
interface Queryable {
  query<R>(text: string, params?: readonly unknown[]): Promise<{ rows: R[] }>;
}

export async function readTableInfo(db: Queryable, schema: string, table: string): Promise<TableInfo> {
  const r = await db.query<{ exists: boolean; columns: [string, string][]; key_names: string[] | null }>(loadSql("table-info"), [
    schema,
    table,
  ]);
  const row = r.rows[0];
  if (row === undefined || !row.exists) return { exists: false, columns: new Map(), keyNames: [] };
  const columns = new Map<string, ColumnType | "other">();
  for (const [name, type] of row.columns) columns.set(name, columnTypeFromCatalog(type) ?? "other");
  return { exists: true, columns, keyNames: row.key_names ?? [] };
}
