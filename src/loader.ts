/**
 * createLoader / loadBatch: the data path end to end.
 *   validate → plan the table (DDL only if the catalog lacks something) → collapse → stage → apply
 * Each batch is one transaction; transient failures (deadlock, serialization, lock timeout, lost
 * connection) are retried as a whole, which is safe because replays change nothing.
 */
import { createHash } from "node:crypto";
import type pg from "pg";
import { type ApplyCounts, activateVersionSql, applySql, logParams, staleSampleParams, staleSampleSql } from "./apply.js";
import { type TableInfo, readTableInfo } from "./catalog.js";
import { type CollapsedBatch, collapseBatch } from "./collapse.js";
import { ConnectionError, RetryExhaustedError, SeqloadError, isConnectionError, isTransient, wrapPgError } from "./errors.js";
import { quoteIdent, quoteQualified } from "./identifiers.js";
import { LOCK_NAMESPACE, isUpToDate, migrateUp } from "./migrate.js";
import { type LoaderOptions, type ResolvedOptions, checkout, makePool, redactUrl, resolveOptions } from "./options.js";
import { type TablePlan, addPrimaryKeySql, alterTableSql, createTableSql, needsDdl, planTable } from "./plan.js";
import { loadSql } from "./sql.js";
import { STAGE_TABLE, arrayParams, copyRows, createStageSql, stageColumnNames, unnestSource } from "./stage.js";
import type { Batch, LoadResult } from "./types.js";
import { type ValidatedBatch, type ValidatedMessage, checkBatch } from "./validate.js";

/** Counters since the loader was created (for monitoring and the stress tests). */
export interface LoaderStats {
  /** Batches committed. */
  batches: number;
  /** Whole-batch retries after a deadlock, serialization failure, lock timeout or lost connection. */
  retries: number;
  /** Times a cached table shape was stale and the catalog was read again. */
  replans: number;
}

export interface Loader {
  /** Validate and apply one batch atomically. `batch` is a Batch, or anything parsed from JSON: validation says what is wrong. */
  loadBatch(batch: unknown): Promise<LoadResult>;
  /** Close the pool if seqload created it. */
  close(): Promise<void>;
  /** The pool in use. */
  readonly pool: pg.Pool;
  /** The resolved options. */
  readonly options: Readonly<ResolvedOptions>;
  /** Counters since creation. */
  readonly stats: Readonly<LoaderStats>;
}

/** Advisory lock key (second int) for one table: 32 bits of SHA-256, stable across versions. */
function tableLockKey(schema: string, table: string): number {
  return createHash("sha256").update(`${schema}\u0000${table}`).digest().readInt32BE(0);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Keys sampled from a large batch to decide on the stale-row pre-filter. */
const PREFILTER_SAMPLE = 256;

/** Thrown inside a transaction when the world changed under us (e.g. the table appeared): start over. */
class Replan extends Error {}

export async function createLoader(input: LoaderOptions): Promise<Loader> {
  const options = resolveOptions(input);
  const { pool, owned } = makePool(input);
  // An idle pooled connection that dies (server restart, terminated backend) emits 'error' on the
  // pool; without a listener that would crash the process. The pool drops the client by itself.
  pool.on("error", () => {});
  // Named in connection errors, password hidden.
  const target = input.connectionString ? redactUrl(input.connectionString) : undefined;
  const tables = new Map<string, TableInfo>();
  /** Small-batch statements (name and text) per table shape. */
  const statements = new Map<string, { name: string; text: string }>();
  const stats: LoaderStats = { batches: 0, retries: 0, replans: 0 };
  let ready: Promise<void> | null = null;

  async function prepare(): Promise<void> {
    try {
      if (options.migrate && !(await isUpToDate(pool))) await migrateUp(pool);
      const r = await pool.query<{ ok: boolean }>("SELECT to_regnamespace($1) IS NOT NULL AS ok", [quoteIdent(options.schema)]);
      if (!r.rows[0]?.ok) {
        await inTransaction(async (client) => {
          await client.query("SELECT pg_advisory_xact_lock($1, $2)", [LOCK_NAMESPACE, tableLockKey(options.schema, "")]);
          await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(options.schema)}`);
        });
      }
    } catch (e) {
      ready = null; // let the next call try again
      throw wrapPgError(e, "preparing the database (migrations, target schema)", { target });
    }
  }

  async function inTransaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await checkout(pool);
    try {
      await client.query("BEGIN");
      const result = await fn(client);
      await client.query("COMMIT");
      client.release();
      return result;
    } catch (e) {
      if (isConnectionError(e)) {
        client.release(e as Error); // destroy it: the pool must not hand out a broken connection
      } else {
        await client.query("ROLLBACK").then(
          () => client.release(),
          (rollbackError: Error) => client.release(rollbackError),
        );
      }
      throw e;
    }
  }

  async function tableInfo(db: Pick<pg.ClientBase, "query">, table: string, fresh: boolean): Promise<TableInfo> {
    const cacheKey = table;
    const cached = tables.get(cacheKey);
    if (cached && !fresh) return cached;
    const info = await readTableInfo(db, options.schema, table);
    if (info.exists) tables.set(cacheKey, info);
    else tables.delete(cacheKey);
    return info;
  }

  function remember(table: string, keyNames: string[], plan: TablePlan): void {
    const columns = new Map(plan.columns);
    for (const s of ["_sequence", "_loaded_at", "_deleted_at"]) columns.set(s, s === "_sequence" ? "bigint" : "timestamptz");
    if (plan.hasTableVersion) columns.set("_table_version", "bigint");
    tables.set(table, { exists: true, columns, keyNames });
  }

  async function lockTable(client: pg.PoolClient, table: string): Promise<void> {
    await client.query(`SET LOCAL lock_timeout = ${Number(options.lockTimeoutMs)}`);
    await client.query("SELECT pg_advisory_xact_lock($1, $2)", [LOCK_NAMESPACE, tableLockKey(options.schema, table)]);
  }

  function registryColumns(plan: TablePlan): string {
    return JSON.stringify(Object.fromEntries(plan.columns));
  }

  /** Add or widen columns in a short transaction of its own, re-checked under the table's lock. */
  async function alterTable(v: ValidatedBatch): Promise<void> {
    await inTransaction(async (client) => {
      await lockTable(client, v.table);
      await client.query("SET LOCAL TimeZone = 'UTC'");
      const info = await tableInfo(client, v.table, true);
      if (!info.exists) throw new Replan();
      const plan = planTable(v, info);
      const ddl = alterTableSql(options.schema, v.table, plan);
      if (ddl !== null) {
        await client.query(ddl);
        await client.query(loadSql("register-table"), [options.schema, v.table, v.keyNames, registryColumns(plan)]);
      }
      remember(v.table, v.keyNames, plan);
    });
  }

  /**
   * Whether a large batch should be pre-filtered for stale rows: asks the table about an even sample
   * of the batch's keys, and filters as soon as one of them is stale. Filtering costs an index probe
   * per row; not filtering costs a row lock (and its write) per stale row, about three times as
   * much, and under concurrent loaders those locks make the others wait. A batch of only new or
   * newer rows (a first load, an update run) skips the filter.
   */
  async function anyStale(client: pg.PoolClient, v: ValidatedBatch, c: CollapsedBatch): Promise<boolean> {
    const n = Math.min(PREFILTER_SAMPLE, c.winners.length);
    const step = c.winners.length / n;
    const sample = Array.from({ length: n }, (_, i) => c.winners[Math.floor(i * step)] as ValidatedMessage);
    const r = await client.query<{ stale: number }>(staleSampleSql(options.schema, v.table, v.keyNames, c), staleSampleParams(c, sample));
    return (r.rows[0]?.stale ?? 0) > 0;
  }

  /**
   * Rows of the table updated so far by this transaction (its own statistics), or null when the
   * server keeps no such counts (track_counts off).
   */
  async function tuplesUpdated(client: pg.PoolClient, quotedTable: string): Promise<bigint | null> {
    const r = await client.query<{ updated: string; on: boolean }>(
      "SELECT pg_stat_get_xact_tuples_updated($1::regclass)::text AS updated, current_setting('track_counts') = 'on' AS on",
      [quotedTable],
    );
    const row = r.rows[0];
    return row?.on ? BigInt(row.updated) : null;
  }

  /** Stage and apply the rows, retire older table versions, write the load log. Returns the counts. */
  async function applyRows(
    client: pg.PoolClient,
    v: ValidatedBatch,
    plan: TablePlan,
    c: CollapsedBatch,
    received: number,
  ): Promise<LoadResult> {
    const result: LoadResult = { table: v.table, received, collapsed: c.collapsed, inserted: 0, updated: 0, deleted: 0, skipped: 0 };
    const log = logParams(options.schema, v.table, received, c, v.tableVersion);
    // The log row rides on the apply statement unless activations must run first.
    const logInline = c.activations.length === 0;
    let logged = false; // whether the apply statement wrote the log row
    if (c.winners.length > 0) {
      const copy = c.winners.length >= options.copyThreshold;
      let params: unknown[] = [];
      if (copy) {
        await client.query(createStageSql(c));
        // The key-order sort of a large batch would spill to disk at the default 4MB.
        await client.query("SET LOCAL work_mem = '256MB'");
        await copyRows(client, STAGE_TABLE, stageColumnNames(c), c, "flag");
      } else {
        params = arrayParams(c);
      }
      const tableVersionParam = v.tableVersion !== null && plan.hasTableVersion ? params.length + 1 : null;
      if (tableVersionParam !== null) params.push(v.tableVersion?.toString());
      const quotedTable = quoteQualified(options.schema, v.table);
      const prefilter = copy && v.keyNames.length > 0 && (await anyStale(client, v, c));
      // A large batch without deletes takes its counts from the command tag and the transaction's
      // own statistics rather than from RETURNING, whose million-row result PostgreSQL would
      // materialise just to be counted. (Deletes must be told apart from updates: RETURNING.)
      const updatedBefore = copy && c.deletes === 0 ? await tuplesUpdated(client, quotedTable) : null;
      const counted = updatedBefore !== null;
      let stagedParam: number | null = null;
      let firstLogParam: number | null = null;
      if (!counted) {
        params.push(c.winners.length);
        stagedParam = params.length;
        if (logInline) {
          firstLogParam = params.length + 1;
          params.push(...log);
        }
      }
      const build = () =>
        applySql({
          schema: options.schema,
          table: v.table,
          keyNames: v.keyNames,
          batch: c,
          source: copy ? `${STAGE_TABLE} AS s` : unnestSource(c, 1),
          tableVersionParam,
          stagedParam,
          prefilter,
          firstLogParam,
        });
      let query: pg.QueryConfig;
      if (copy) {
        query = { text: build(), values: params };
      } else {
        // The array-parameter statement's text depends only on the table's shape, so it is prepared
        // once per connection (named) and only executed afterwards: no parse or plan per batch.
        // Its text and name are kept per shape, so a warm small batch builds no SQL at all.
        const shape = JSON.stringify([v.table, v.keyNames, c.columns, c.types, tableVersionParam !== null, logInline]);
        let statement = statements.get(shape);
        if (statement === undefined) {
          const text = build();
          statement = { name: `seqload_${createHash("sha1").update(text).digest("hex").slice(0, 20)}`, text };
          if (statements.size >= 1000) statements.clear();
          statements.set(shape, statement);
        }
        query = { ...statement, values: params };
      }
      const applied = await client.query<ApplyCounts>(query);
      if (updatedBefore !== null) {
        const rows = applied.rowCount ?? 0;
        const updated = Number(((await tuplesUpdated(client, quotedTable)) ?? updatedBefore) - updatedBefore);
        Object.assign(result, { inserted: rows - updated, updated, deleted: 0, skipped: c.winners.length - rows });
      } else {
        Object.assign(result, applied.rows[0] as ApplyCounts);
      }
      logged = firstLogParam !== null;
    }
    // Messages that are not rows: activate_version. The first does the work; repeats in the same batch are superseded.
    const nonRows = received - c.collapsed - c.winners.length;
    if (c.activations.length > 0) {
      const retired = await client.query(activateVersionSql(options.schema, v.table), [v.tableVersion?.toString()]);
      result.collapsed += c.activations.length - 1;
      if ((retired.rowCount ?? 0) > 0) result.deleted += 1;
      else result.skipped += 1;
    } else {
      result.skipped += nonRows;
    }
    if (!logged) {
      await client.query(loadSql("log-load"), [
        ...log.slice(0, 2),
        received,
        result.collapsed,
        ...log.slice(4),
        result.inserted,
        result.updated,
        result.deleted,
        result.skipped,
      ]);
    }
    return result;
  }

  /** First load into a table that does not exist: create it and load it in one transaction. */
  async function createAndLoad(v: ValidatedBatch, received: number): Promise<LoadResult> {
    return inTransaction(async (client) => {
      await lockTable(client, v.table);
      const info = await tableInfo(client, v.table, true);
      if (info.exists) throw new Replan(); // another loader created it meanwhile
      const plan = planTable(v, info);
      const c = collapseBatch(v, plan.columns);
      // Nothing can conflict in a table this transaction creates and still holds: COPY straight
      // in, then build the primary key with one sort (much cheaper than an index insert per row).
      const fast = c.winners.length >= options.copyThreshold && c.activations.length === 0 && v.tableVersion === null;
      await client.query(createTableSql(options.schema, v.table, v.keyNames, plan, !fast));
      await client.query(loadSql("register-table"), [options.schema, v.table, v.keyNames, registryColumns(plan)]);
      let result: LoadResult;
      if (fast) {
        await copyRows(client, quoteQualified(options.schema, v.table), c.columns.map(quoteIdent), c, "timestamp");
        if (v.keyNames.length > 0) {
          await client.query("SET LOCAL maintenance_work_mem = '256MB'");
          await client.query(addPrimaryKeySql(options.schema, v.table, v.keyNames));
        }
        result = {
          table: v.table,
          received,
          collapsed: c.collapsed,
          inserted: c.winners.length - c.deletes,
          updated: 0,
          deleted: c.deletes,
          skipped: received - c.collapsed - c.winners.length,
        };
        const log = logParams(options.schema, v.table, received, c, v.tableVersion);
        await client.query(loadSql("log-load"), [...log, result.inserted, 0, c.deletes, result.skipped]);
      } else {
        result = await applyRows(client, v, plan, c, received);
      }
      remember(v.table, v.keyNames, plan);
      return result;
    });
  }

  async function loadOnce(v: ValidatedBatch, received: number): Promise<LoadResult> {
    for (let replans = 0; ; replans++) {
      try {
        const info = await tableInfo(pool, v.table, false);
        if (!info.exists) return await createAndLoad(v, received);
        let plan = planTable(v, info);
        if (needsDdl(plan)) {
          await alterTable(v);
          plan = planTable(v, tables.get(v.table) as TableInfo);
        }
        const c = collapseBatch(v, plan.columns);
        if (c.winners.length < options.copyThreshold && c.winners.length > 0 && c.activations.length === 0) {
          // One statement: atomic on its own, one round trip.
          const client = await checkout(pool);
          try {
            const r = await applyRows(client, v, plan, c, received);
            client.release();
            return r;
          } catch (e) {
            client.release(isConnectionError(e) ? (e as Error) : undefined);
            throw e;
          }
        }
        return await inTransaction((client) => applyRows(client, v, plan, c, received));
      } catch (e) {
        const state = (e as { code?: string }).code;
        // Another loader created, widened or extended the table since we cached its shape:
        // undefined table/column, or a value type our cache thought the column had (42804).
        const stale = e instanceof Replan || state === "42P01" || state === "42703" || state === "42804";
        if (!stale || replans >= 3) throw e;
        stats.replans += 1;
        tables.delete(v.table); // the cached shape was stale: read the catalog again
      }
    }
  }

  async function loadBatch(batch: unknown): Promise<LoadResult> {
    const v = checkBatch(batch);
    const received = Array.isArray((batch as Batch).messages) ? (batch as Batch).messages.length : 0;
    ready ??= prepare();
    await ready;
    const what = `loading batch into table "${v.table}"`;
    for (let attempt = 0; ; attempt++) {
      try {
        const result = await loadOnce(v, received);
        stats.batches += 1;
        return result;
      } catch (e) {
        if (e instanceof SeqloadError) throw e;
        // A transient error rolled the batch back: always safe to run again. A lost connection may
        // have lost the COMMIT's answer: safe to replay for keyed tables (the guard makes it a no-op),
        // not for append-only ones, where a replay could append the rows twice.
        const retryable = isTransient(e) || (isConnectionError(e) && v.keyNames.length > 0);
        if (!retryable) throw wrapPgError(e, what, { replaySafe: v.keyNames.length > 0, target });
        if (attempt >= options.maxRetries) {
          const wrapped = wrapPgError(e, what, { replaySafe: v.keyNames.length > 0, target });
          if (wrapped instanceof ConnectionError) throw wrapped;
          throw new RetryExhaustedError(
            "RETRY_EXHAUSTED",
            `${wrapped.message} (gave up after ${attempt + 1} attempts)`,
            (e as { code?: string }).code,
            e,
            true,
          );
        }
        stats.retries += 1;
        // Bounded exponential backoff with full jitter.
        await sleep(Math.random() * Math.min(2000, 25 * 2 ** attempt));
      }
    }
  }

  return {
    loadBatch,
    pool,
    options,
    stats,
    async close() {
      if (owned) await pool.end();
    },
  };
}
