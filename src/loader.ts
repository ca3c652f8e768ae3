/**
 * createLoader / loadBatch: the data path end to end.
 *   validate → plan the table (DDL only if the catalog lacks something) → collapse → stage → apply
 * The route a batch takes is chosen once, in `loadOnce` (the routes are in route.ts). Each batch
 * is one transaction: the loader's own, retried as a whole after a transient failure (safe,
 * because replays change nothing), or the caller's (`{ client }` / `{ transaction }`), which is
 * never retried here.
 */
import type pg from "pg";
import { type TableInfo, readTableInfo } from "./catalog.js";
import { detectCitus } from "./citus.js";
import { collapseBatch } from "./collapse.js";
import {
  ConfigurationError,
  ConnectionError,
  RetryExhaustedError,
  SeqloadError,
  isConnectionError,
  isStaleShape,
  isTransient,
  wrapPgError,
} from "./errors.js";
import { quoteIdent } from "./identifiers.js";
import { LOCK_NAMESPACE, isUpToDate, migrateUp } from "./migrate.js";
import { type KeyInput, type StoredSequence, maxSequence, storedSequences } from "./lookups.js";
import { type LoaderOptions, type ResolvedOptions, checkOnInvalid, guardPool, makePool, redactUrl, resolveOptions } from "./options.js";
import { type LoadValidated, loadBatches } from "./pipeline.js";
import { needsDdl, planTable } from "./plan.js";
import type { OnInvalid } from "./quarantine.js";
import {
  type Optimism,
  OptimismLost,
  Replan,
  type RouteContext,
  alterTable,
  applyInTransaction,
  applyOneStatement,
  createAndLoad,
  isOneStatement,
  tableLockKey,
} from "./route.js";
import { type KyselyTransaction, type Session, kyselySession, pgSession } from "./session.js";
import { inPoolTransaction, withClient } from "./transaction.js";
import type { LoadResult } from "./types.js";
import { type ValidatedBatch, checkBatch, checkMessageCount } from "./validate.js";

/** Counters since the loader was created (for monitoring and the stress tests). */
export interface LoaderStats {
  /** Batches committed. */
  batches: number;
  /** Whole-batch retries after a deadlock, serialization failure, lock timeout or lost connection. */
  retries: number;
  /** Times a cached table shape was stale and the catalog was read again. */
  replans: number;
}

/** Options of one loadBatch call. */
export interface LoadOptions {
  /** Load inside this pg client's transaction (the caller has run BEGIN and will COMMIT or ROLLBACK). */
  client?: pg.ClientBase;
  /** Load inside this kysely Transaction (from `db.transaction().execute(trx => …)`). */
  transaction?: KyselyTransaction;
  /** Validation limits: `maxMessages` refuses a longer batch before its records are validated (the HTTP server uses 20,000). */
  limits?: { maxMessages?: number };
  /** Invalid messages: "fail" rejects the batch, "quarantine" writes them to seqload.rejected. Default: the loader's `onInvalid`. */
  onInvalid?: OnInvalid;
}

export interface Loader {
  /**
   * Validate and apply one batch atomically: in a transaction of its own, or in the caller's (`options`).
   * `batch` is a Batch, or anything parsed from JSON: validation says what is wrong.
   */
  loadBatch(batch: unknown, options?: LoadOptions): Promise<LoadResult>;
  /** Load a stream of batches (each as loadBatch takes it) in order, one transaction each, yielding each result as it commits (src/pipeline.ts). */
  loadBatches(batches: AsyncIterable<unknown> | Iterable<unknown>): AsyncGenerator<LoadResult>;
  /** The highest sequence committed into `table` (from the load log), or null. */
  maxSequence(table: string): Promise<bigint | null>;
  /** The stored sequence of each key (tombstones marked), or null where none. */
  sequences(table: string, keys: readonly KeyInput[]): Promise<(StoredSequence | null)[]>;
  /** Close the pool if seqload created it. */
  close(): Promise<void>;
  /** The pool in use. */
  readonly pool: pg.Pool;
  /** The resolved options. */
  readonly options: Readonly<ResolvedOptions>;
  /** Counters since creation. */
  readonly stats: Readonly<LoaderStats>;
}

/** Everything the data path shares between batches. */
interface LoaderContext extends RouteContext {
  pool: pg.Pool;
  /** The connection string with the password hidden, for connection errors. */
  target: string | undefined;
  /** Table shapes known to be committed (a caller's transaction never writes here). */
  tables: Map<string, TableInfo>;
  stats: LoaderStats;
  ready: Promise<void> | null;
}

/**
 * How a batch's statements run: on the loader's own connections (each transaction committed
 * before its shape is cached) or all in one caller's transaction.
 */
interface Runner {
  /** Run `fn` in a transaction. */
  transaction<T>(fn: (s: Session) => Promise<T>): Promise<T>;
  /** Run one statement's worth of work, atomic on its own. */
  single<T>(fn: (s: Session) => Promise<T>): Promise<T>;
  /** Where the catalog is read outside a transaction. */
  catalog: Pick<Session, "query">;
  /** Statements run in the caller's transaction: after a PostgreSQL error it is aborted, so no replan. */
  caller: boolean;
  /** The table-shape cache to read and fill. */
  tables: Map<string, TableInfo>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A loader and its entry for batches already validated, which src/pipeline.ts loads (the CLI's
 * pipelined load uses it; not part of the public API).
 */
export interface OpenedLoader {
  loader: Loader;
  /** Load a batch checkBatch has accepted, in a transaction of its own (retried like loadBatch). */
  loadValidated: LoadValidated;
}

export async function createLoader(input: LoaderOptions): Promise<Loader> {
  return (await openLoader(input)).loader;
}

export async function openLoader(input: LoaderOptions): Promise<OpenedLoader> {
  const options = resolveOptions(input);
  const { pool, owned } = makePool(input);
  guardPool(pool); // once per pool: many loaders may share it
  const ctx: LoaderContext = {
    options,
    pool,
    target: input.connectionString ? redactUrl(input.connectionString) : undefined,
    tables: new Map(),
    statements: new Map(),
    stats: { batches: 0, retries: 0, replans: 0 },
    ready: null,
    citus: null,
  };
  const loadValidated: LoadValidated = (v) => loadChecked(ctx, v, null);
  const loader: Loader = {
    loadBatch: (batch, loadOptions) => loadBatch(ctx, batch, loadOptions),
    loadBatches: (batches) => loadBatches(loadValidated, batches, options.onInvalid),
    maxSequence: (table) => maxSequence(pool, options.schema, table),
    sequences: (table, keys) => storedSequences(pool, options.schema, table, keys),
    pool,
    options,
    stats: ctx.stats,
    async close() {
      if (owned) await pool.end();
    },
  };
  return { loader, loadValidated };
}

async function loadBatch(ctx: LoaderContext, batch: unknown, opts: LoadOptions = {}): Promise<LoadResult> {
  // An invalid batch throws before any SQL runs.
  if (opts.limits?.maxMessages !== undefined) checkMessageCount(batch, opts.limits.maxMessages);
  const onInvalid = opts.onInvalid === undefined ? ctx.options.onInvalid : checkOnInvalid(opts.onInvalid);
  const v = checkBatch(batch, { onInvalid });
  return loadChecked(ctx, v, callerSession(opts));
}

/** A validated batch, in the caller's transaction (`caller`) or in the loader's own, retried. */
async function loadChecked(ctx: LoaderContext, v: ValidatedBatch, caller: Session | null): Promise<LoadResult> {
  // Every message of the batch is loaded or quarantined.
  const received = v.messages.length + v.rejected.length;
  ctx.ready ??= prepare(ctx);
  await ctx.ready;
  if (caller !== null) return loadInCallerTransaction(ctx, caller, v, received);
  const runner = poolRunner(ctx);
  const what = `loading batch into table "${v.table}"`;
  for (let attempt = 0; ; attempt++) {
    try {
      const result = await loadOnce(ctx, runner, v, received);
      ctx.stats.batches += 1;
      return result;
    } catch (e) {
      if (e instanceof SeqloadError) throw e;
      // A transient error rolled the batch back: always safe to run again. A lost connection may
      // have lost the COMMIT's answer: safe to replay for keyed tables (the guard makes it a no-op),
      // not for append-only ones, where a replay could append the rows twice.
      const retryable = isTransient(e) || (isConnectionError(e) && v.keyNames.length > 0);
      const wrapped = wrapPgError(e, what, { replaySafe: v.keyNames.length > 0, target: ctx.target });
      if (!retryable) throw wrapped;
      if (attempt >= ctx.options.maxRetries) {
        if (wrapped instanceof ConnectionError) throw wrapped;
        const message = `${wrapped.message} (gave up after ${attempt + 1} attempts)`;
        throw new RetryExhaustedError("RETRY_EXHAUSTED", message, (e as { code?: string }).code, e, true);
      }
      ctx.stats.retries += 1;
      // Bounded exponential backoff with full jitter.
      await sleep(Math.random() * Math.min(2000, 25 * 2 ** attempt));
    }
  }
}

function callerSession(opts: LoadOptions): Session | null {
  if (opts.client !== undefined && opts.transaction !== undefined) {
    throw new ConfigurationError("loadBatch takes { client } or { transaction }, not both");
  }
  if (opts.client !== undefined) return pgSession(opts.client, true);
  if (opts.transaction !== undefined) {
    if (!opts.transaction.isTransaction)
      throw new ConfigurationError("loadBatch { transaction } needs a kysely Transaction, not a Kysely instance");
    return kyselySession(opts.transaction);
  }
  return null;
}

/** Migrations and the target schema, once per loader (again after a failure). */
async function prepare(ctx: LoaderContext): Promise<void> {
  const { pool, options } = ctx;
  try {
    if (options.migrate && !(await isUpToDate(pool))) await migrateUp(pool);
    ctx.citus = await detectCitus(pool);
    const r = await pool.query<{ ok: boolean }>("SELECT to_regnamespace($1) IS NOT NULL AS ok", [quoteIdent(options.schema)]);
    if (!r.rows[0]?.ok) {
      await inPoolTransaction(pool, async (client) => {
        await client.query("SELECT pg_advisory_xact_lock($1, $2)", [LOCK_NAMESPACE, tableLockKey(options.schema, "")]);
        await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(options.schema)}`);
      });
    }
  } catch (e) {
    ctx.ready = null; // let the next call try again
    throw wrapPgError(e, "preparing the database (migrations, target schema)", { target: ctx.target });
  }
}

function poolRunner(ctx: LoaderContext): Runner {
  return {
    transaction: (fn) => inPoolTransaction(ctx.pool, (client) => fn(pgSession(client, false))),
    single: (fn) => withClient(ctx.pool, (client) => fn(pgSession(client, false))),
    catalog: {
      async query<R>(text: string, params: readonly unknown[] = []) {
        const r = await ctx.pool.query({ text, values: [...params] });
        return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
      },
    },
    caller: false,
    tables: ctx.tables,
  };
}

/**
 * One attempt at a batch: read the table's shape (cached), create or alter the table if needed,
 * then apply the rows by the one route that fits.
 */
async function loadOnce(ctx: LoaderContext, runner: Runner, v: ValidatedBatch, received: number): Promise<LoadResult> {
  // On Citus the optimistic COPY gives way by rolling the whole transaction back: never a caller's.
  let optimism: Optimism = ctx.citus === null ? "savepoint" : runner.caller ? "off" : "transaction";
  for (let replans = 0; ; replans++) {
    try {
      let info = runner.tables.get(v.table) ?? (await readTableInfo(runner.catalog, ctx.options.schema, v.table));
      if (!info.exists) {
        const { result, shape } = await runner.transaction((s) => createAndLoad(ctx, s, v, received));
        runner.tables.set(v.table, shape); // committed (or, for a caller, cached for this batch only)
        return result;
      }
      runner.tables.set(v.table, info);
      let plan = planTable(v, info);
      if (needsDdl(plan)) {
        info = await runner.transaction((s) => alterTable(ctx, s, v));
        runner.tables.set(v.table, info);
        plan = planTable(v, info);
      }
      const c = collapseBatch(v, plan.columns);
      if (isOneStatement(ctx, v, c)) return await runner.single((s) => applyOneStatement(ctx, s, v, plan, c, received));
      return await runner.transaction((s) => applyInTransaction(ctx, s, v, plan, c, received, optimism));
    } catch (e) {
      if (e instanceof OptimismLost && optimism === "transaction") {
        // Rolled back: the same batch again, on the staged upsert (not a replan: the shape holds).
        optimism = "off";
        replans--;
        continue;
      }
      // Another loader created, widened or extended the table since we cached its shape.
      const stale = e instanceof Replan || (!runner.caller && isStaleShape(e));
      if (!stale || replans >= 3) throw e;
      ctx.stats.replans += 1;
      runner.tables.delete(v.table); // the cached shape was stale: read the catalog again
    }
  }
}

/**
 * A batch inside the caller's transaction: every statement on the caller's connection, no retry,
 * and table shapes cached for this batch only (the caller may still roll back the DDL).
 */
async function loadInCallerTransaction(ctx: LoaderContext, s: Session, v: ValidatedBatch, received: number): Promise<LoadResult> {
  const runner: Runner = { transaction: (fn) => fn(s), single: (fn) => fn(s), catalog: s, caller: true, tables: new Map() };
  try {
    // Outside a transaction every statement would commit on its own: refuse before writing anything.
    const open = await s.query<{ open: boolean }>("SELECT transaction_timestamp() <> statement_timestamp() AS open");
    if (!open.rows[0]?.open) {
      throw new ConfigurationError("loadBatch(batch, { client }) needs a client inside a transaction: run BEGIN on it first");
    }
    const result = await loadOnce(ctx, runner, v, received);
    await s.restoreSettings(); // (not counted in stats.batches: the caller may still roll back)
    return result;
  } catch (e) {
    // Refused by seqload itself (e.g. a key mismatch): the transaction still works, so leave it as found.
    if (e instanceof SeqloadError) await s.restoreSettings().catch(() => {});
    throw wrapPgError(e, `loading batch into table "${v.table}"`, { target: ctx.target, callerTransaction: true });
  }
}
