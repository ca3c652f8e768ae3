/**
 * Where the data path's statements run: a pooled connection of the loader's own, or the caller's
 * transaction (a pg client after BEGIN, or a kysely Transaction). The route functions only see a
 * Session, so each route reads the same in every mode.
 */
import { CompiledQuery } from "kysely";
import type pg from "pg";
import { type Statement, bind } from "./builder.js";

export interface Rows<R> {
  rows: R[];
  /** Rows written (INSERT/UPDATE command tag), or the rows returned. */
  rowCount: number;
}

/** What seqload needs of a kysely Transaction: any `Transaction<DB>` fits. */
export interface KyselyTransaction {
  readonly isTransaction: boolean;
  executeQuery<R>(query: CompiledQuery<R>): Promise<{ rows: R[]; numAffectedRows?: bigint }>;
}

export interface Session {
  /** Run SQL text with positional parameters. */
  query<R>(text: string, params?: readonly unknown[]): Promise<Rows<R>>;
  /** Run a compiled statement with the values of its slots; prepared once per connection when `name` is given. */
  run<R>(statement: Statement & { name?: string }, values: Readonly<Record<string, unknown>>): Promise<Rows<R>>;
  /** The pg client to COPY through, or null when this session cannot COPY (a kysely transaction). */
  readonly copyClient: pg.ClientBase | null;
  /** Statements run in a transaction the caller owns: no named statements, settings put back afterwards. */
  readonly caller: boolean;
  /** SET LOCAL `name` = `value` for the rest of the transaction (put back by `restoreSettings` for a caller's one). */
  setLocal(name: string, value: string): Promise<void>;
  /** Put back every setting changed by `setLocal` (caller's transaction only; a no-op otherwise). */
  restoreSettings(): Promise<void>;
}

/** A session on a pg client (the loader's own connection, or the caller's after BEGIN). */
export function pgSession(client: pg.ClientBase, caller: boolean): Session {
  const saved = new Map<string, string>();
  const query = async <R>(text: string, params: readonly unknown[] = []): Promise<Rows<R>> => {
    const r = await client.query({ text, values: params as unknown[] });
    return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
  };
  return {
    query,
    async run<R>(statement: Statement & { name?: string }, values: Readonly<Record<string, unknown>>) {
      const config: pg.QueryConfig = { text: statement.text, values: bind(statement, values) };
      // Named statements stay on a connection after its transaction: never on the caller's.
      if (statement.name !== undefined && !caller) config.name = statement.name;
      const r = await client.query(config);
      return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
    },
    copyClient: client,
    caller,
    setLocal: (name, value) => setLocal(query, saved, caller, name, value),
    restoreSettings: () => restore(query, saved),
  };
}

/** A session inside a caller's kysely transaction. kysely offers no supported way to reach the pg connection, so no COPY. */
export function kyselySession(trx: KyselyTransaction): Session {
  const saved = new Map<string, string>();
  const query = async <R>(text: string, params: readonly unknown[] = []): Promise<Rows<R>> => {
    const r = await trx.executeQuery<R>(CompiledQuery.raw(text, [...params]));
    return { rows: r.rows, rowCount: r.numAffectedRows === undefined ? r.rows.length : Number(r.numAffectedRows) };
  };
  return {
    query,
    run: (statement, values) => query(statement.text, bind(statement, values)),
    copyClient: null,
    caller: true,
    setLocal: (name, value) => setLocal(query, saved, true, name, value),
    restoreSettings: () => restore(query, saved),
  };
}

type Query = <R>(text: string, params?: readonly unknown[]) => Promise<Rows<R>>;

async function setLocal(query: Query, saved: Map<string, string>, remember: boolean, name: string, value: string): Promise<void> {
  const r = await query<{ old: string }>("SELECT current_setting($1) AS old, set_config($1, $2, true)", [name, value]);
  if (remember && !saved.has(name)) saved.set(name, r.rows[0]?.old ?? "");
}

async function restore(query: Query, saved: Map<string, string>): Promise<void> {
  for (const [name, old] of saved) await query("SELECT set_config($1, $2, true)", [name, old]);
  saved.clear();
}
