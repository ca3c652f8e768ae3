/** `seqload query`: run SQL and print the rows, so nobody needs psql to look at a load. */
import pg from "pg";
import { openDatabase } from "./database.js";
import { CliError, EXIT_OK } from "./errors.js";
import { type Column, formatTable, jsonRow } from "./format.js";
import type { Io } from "./io.js";

export interface QueryFlags {
  databaseUrl?: string;
  schema?: string;
  json?: boolean;
}

/** Every value as PostgreSQL's own text: exact digits, timestamps with microseconds. */
const rawText = { getTypeParser: () => (value: string) => value } as unknown as pg.CustomTypesConfig;

export async function queryCommand(sql: string, flags: QueryFlags, io: Io): Promise<number> {
  const db = await openDatabase({ databaseUrl: flags.databaseUrl, log: io.err, poolSize: 1 });
  try {
    const client = await db.pool.connect();
    try {
      if (flags.schema !== undefined) await client.query(`SET search_path TO ${pg.escapeIdentifier(flags.schema)}, public`);
      let results: pg.QueryArrayResult | pg.QueryArrayResult[];
      try {
        results = await client.query({ text: sql, rowMode: "array", types: rawText });
      } catch (e) {
        throw queryFailure(sql, e);
      }
      for (const r of ([] as pg.QueryArrayResult[]).concat(results)) printResult(r, flags.json === true, io);
    } finally {
      client.release();
    }
    return EXIT_OK;
  } finally {
    await db.close();
  }
}

function printResult(r: pg.QueryArrayResult, json: boolean, io: Io): void {
  if (r.fields.length === 0) {
    // A statement without a result set: its command tag, like psql ("DELETE 3").
    const tag = `${r.command ?? ""}${r.rowCount === null ? "" : ` ${r.rowCount}`}`.trim();
    if (tag !== "") (json ? io.err : io.out)(tag);
    return;
  }
  const columns: Column[] = r.fields.map((f) => ({ name: f.name, typeOid: f.dataTypeID }));
  const rows = r.rows as (string | null)[][];
  if (json) for (const row of rows) io.out(jsonRow(columns, row));
  else for (const line of formatTable(columns, rows)) io.out(line);
}

function queryFailure(sql: string, e: unknown): CliError {
  const err = e as { message?: string; code?: string; position?: string; detail?: string; hint?: string };
  const parts = [`query failed: ${err.message ?? String(e)}${err.code !== undefined ? ` (SQLSTATE ${err.code})` : ""}`];
  const pos = Number(err.position);
  if (pos > 0) {
    const before = sql.slice(0, pos - 1);
    const line = before.split("\n").length;
    const column = pos - before.lastIndexOf("\n") - 1;
    parts.push(`at line ${line}, column ${column} of the query`);
  }
  if (err.detail) parts.push(`detail: ${err.detail}`);
  if (err.hint) parts.push(`hint: ${err.hint}`);
  return new CliError(parts.join("\n"));
}
