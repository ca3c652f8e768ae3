/**
 * The routes a validated batch can take, each a straight function over a Session:
 *   - `createAndLoad`: the table does not exist; create it and load it in one transaction
 *     (a large first load COPYs straight into the table and adds the key afterwards);
 *   - `applyOneStatement`: a small batch into a known table; one prepared statement applies the
 *     rows, counts them and writes the load-log row;
 *   - `applyInTransaction`: everything else; the rows are staged (COPY when large), applied,
 *     activate_version runs, the load-log row is written. A large batch whose sampled keys are
 *     all new is first COPYed straight into the table under a savepoint (no stage, no upsert); if a
 *     key exists after all (23505) or a racing loader deadlocks with it (40P01), it rolls back to
 *     the savepoint and takes the staged upsert. (On Citus, with no savepoint: any failure of that
 *     COPY rolls the whole transaction back and the batch runs again on the staged upsert.)
 * `alterTable` adds or widens columns first when the batch needs it. The loader (loader.ts)
 * chooses the route and owns transactions, retries and caches.
 */
import { createHash } from "node:crypto";
import {
  type ApplyCounts,
  type ApplyShape,
  activateVersionStatement,
  applyStatement,
  logLoadStatement,
  staleSampleStatement,
} from "./apply.js";
import type { Statement } from "./builder.js";
import { type TableInfo, readTableInfo } from "./catalog.js";
import { type Citus, checkAlterOnCitus, chooseDistribution, distributeNewTable } from "./citus.js";
import { type CollapsedBatch, cellEncoder, collapseBatch, keyOrdered } from "./collapse.js";
import { type ColumnType, systemColumnsOf } from "./columns.js";
import { quoteIdent, quoteQualified } from "./identifiers.js";
import { LOCK_NAMESPACE } from "./migrate.js";
import { insertRejected } from "./quarantine.js";
import type { ResolvedOptions } from "./options.js";
import { type TablePlan, addPrimaryKeyQuery, alterTableQuery, createTableQuery, planTable } from "./plan.js";
import type { Session } from "./session.js";
import { loadSql } from "./sql.js";
import { STAGE_TABLE, arrayValues, copyRows, createStageQuery, stageColumnNames } from "./stage.js";
import type { LoadResult } from "./types.js";
import type { ValidatedBatch, ValidatedMessage } from "./validate.js";

/** What the routes share: the options, the compiled statements per table shape, and Citus. */
export interface RouteContext {
  options: Readonly<ResolvedOptions>;
  statements: Map<string, Statement & { name: string }>;
  /** The citus extension of the target database, or null (found once the loader is prepared). */
  citus: Citus | null;
}

/** Thrown inside a transaction when the world changed under us (e.g. the table appeared): start over. */
export class Replan extends Error {}

/**
 * How a large batch whose sampled keys are all new may try the optimistic COPY:
 *   - `savepoint`: under a savepoint, rolled back to it when a key exists after all (PostgreSQL);
 *   - `transaction`: with no savepoint; any error of the COPY throws OptimismLost, and the loader
 *     rolls the whole transaction back and runs the batch again with `off` (Citus, in the loader's
 *     own transaction: see copyOptimistically);
 *   - `off`: not at all (Citus in a caller's transaction, the second run after OptimismLost, and
 *     routes that cannot take it).
 */
export type Optimism = "savepoint" | "transaction" | "off";

/** The optimistic COPY failed on Citus: roll the transaction back and run the batch again without it. */
export class OptimismLost extends Error {}

/** Keys sampled from a large batch to decide on the stale-row pre-filter. */
const PREFILTER_SAMPLE = 256;

/** Rows per array-parameter statement when a large batch cannot be COPYed (a kysely transaction). */
const ARRAY_CHUNK = 5000;

/** A statement for one shape, compiled on first use and kept; a warm batch builds and hashes nothing. */
function cached(ctx: RouteContext, key: string, build: () => Statement): Statement & { name: string } {
  let s = ctx.statements.get(key);
  if (s === undefined) {
    const built = build();
    s = { ...built, name: `seqload_${createHash("sha1").update(built.text).digest("hex").slice(0, 20)}` };
    if (ctx.statements.size >= 1000) ctx.statements.clear();
    ctx.statements.set(key, s);
  }
  return s;
}

/** Run once per batch at most: not worth a prepared statement on every connection. */
const unnamed = (s: Statement): Statement => ({ text: s.text, slots: s.slots });

/** Advisory lock key (second int) for one table: 32 bits of SHA-256, stable across versions. */
export function tableLockKey(schema: string, table: string): number {
  return createHash("sha256").update(`${schema}\u0000${table}`).digest().readInt32BE(0);
}

/** Take the table's transaction-level lock (released at the end of the transaction, the caller's included). */
async function lockTable(ctx: RouteContext, s: Session, table: string): Promise<void> {
  await s.setLocal("lock_timeout", String(Number(ctx.options.lockTimeoutMs)));
  await s.query("SELECT pg_advisory_xact_lock($1, $2)", [LOCK_NAMESPACE, tableLockKey(ctx.options.schema, table)]);
}

async function register(ctx: RouteContext, s: Session, v: ValidatedBatch, plan: TablePlan): Promise<void> {
  await s.query(loadSql("register-table"), [ctx.options.schema, v.table, v.keyNames, JSON.stringify(Object.fromEntries(plan.columns))]);
}

/** Add or widen columns, re-checked under the table's lock. Returns the table's shape afterwards. */
export async function alterTable(ctx: RouteContext, s: Session, v: ValidatedBatch): Promise<TableInfo> {
  await lockTable(ctx, s, v.table);
  await s.setLocal("TimeZone", "UTC"); // the USING conversion of a timestamp to text writes UTC
  const info = await readTableInfo(s, ctx.options.schema, v.table);
  if (!info.exists) throw new Replan();
  const plan = planTable(v, info);
  const ddl = alterTableQuery(ctx.options.schema, v.table, plan);
  // Citus cannot change a distribution column's type: refused before any DDL (and placement recorded).
  if (ddl !== null && ctx.citus !== null) await checkAlterOnCitus(s, ctx.options.schema, v.table, plan);
  if (ddl !== null) {
    await s.query(ddl.sql, ddl.parameters);
    await register(ctx, s, v, plan);
  }
  return shapeAfter(v, plan);
}

/** The table's shape once `plan` ran: what the loader caches. */
function shapeAfter(v: ValidatedBatch, plan: TablePlan): TableInfo {
  const columns = new Map<string, ColumnType | "other">(plan.columns);
  for (const c of systemColumnsOf(plan.hasTableVersion)) columns.set(c.name, c.type);
  return { exists: true, columns, keyNames: v.keyNames };
}

function emptyResult(v: ValidatedBatch, c: CollapsedBatch, received: number): LoadResult {
  return { table: v.table, received, collapsed: c.collapsed, inserted: 0, updated: 0, deleted: 0, skipped: 0, rejected: v.rejected.length };
}

/** Messages of the batch that are neither rows to apply, nor collapsed, nor rejected: skipped. */
function unapplied(v: ValidatedBatch, c: CollapsedBatch, received: number): number {
  return received - v.rejected.length - c.collapsed - c.winners.length;
}

/** The batch's quarantined messages, into seqload.rejected in its transaction. */
async function quarantine(ctx: RouteContext, s: Session, v: ValidatedBatch): Promise<void> {
  if (v.rejected.length > 0) await insertRejected(s, ctx.options.schema, v.table, v.rejected);
}

/**
 * First load into a table that does not exist: create it and load it, in the session's
 * transaction. Returns the result and the table's shape (for the cache, once committed).
 */
export async function createAndLoad(
  ctx: RouteContext,
  s: Session,
  v: ValidatedBatch,
  received: number,
): Promise<{ result: LoadResult; shape: TableInfo }> {
  const { schema } = ctx.options;
  await lockTable(ctx, s, v.table);
  const info = await readTableInfo(s, schema, v.table);
  if (info.exists) throw new Replan(); // another loader created it meanwhile
  const plan = planTable(v, info);
  const c = collapseBatch(v, plan.columns);
  // Nothing can conflict in a table this transaction creates and still holds: COPY straight in,
  // then build the primary key with one sort (much cheaper than an index insert per row).
  const copyClient = s.copyClient;
  const copyStraightIn =
    copyClient !== null && c.winners.length >= ctx.options.copyThreshold && c.activations.length === 0 && v.tableVersion === null;
  const create = createTableQuery(schema, v.table, v.keyNames, plan, !copyStraightIn);
  await s.query(create.sql, create.parameters);
  await register(ctx, s, v, plan);
  // On Citus: distributed while still empty, before any row, in the transaction that created it.
  await distributeNewTable(s, schema, v.table, chooseDistribution(ctx.citus, ctx.options.distribute, v.keyNames));
  // (A table this transaction creates holds no key: a batch not COPYed straight in has nothing to be optimistic about.)
  if (!copyStraightIn) return { result: await applyInTransaction(ctx, s, v, plan, c, received, "off"), shape: shapeAfter(v, plan) };
  await copyRows(copyClient, quoteQualified(schema, v.table), c.columns.map(quoteIdent), c, "timestamp", await transactionTime(s));
  if (v.keyNames.length > 0) {
    await s.setLocal("maintenance_work_mem", "256MB");
    const pk = addPrimaryKeyQuery(schema, v.table, v.keyNames);
    await s.query(pk.sql, pk.parameters);
  }
  const result: LoadResult = {
    ...emptyResult(v, c, received),
    inserted: c.winners.length - c.deletes,
    deleted: c.deletes,
    skipped: unapplied(v, c, received),
  };
  await writeLog(ctx, s, v, c, result);
  await quarantine(ctx, s, v);
  return { result, shape: shapeAfter(v, plan) };
}

/** The transaction's timestamp (ISO 8601): a tombstone COPYed straight into its table is dated like the upsert's `now()`. */
async function transactionTime(s: Session): Promise<string> {
  const r = await s.query<{ now: string }>("SELECT to_json(now()) #>> '{}' AS now");
  const now = r.rows[0]?.now;
  if (now === undefined) throw new Error("SELECT now() returned no row");
  return now;
}

/** Whether a batch's rows can go as one statement: rows to apply, few enough for array parameters, no activate_version. */
function fitsOneStatement(ctx: RouteContext, c: CollapsedBatch): boolean {
  return c.winners.length > 0 && c.winners.length < ctx.options.copyThreshold && c.activations.length === 0;
}

/** Whether the whole batch is that one statement (outside a transaction): it also has no message to quarantine. */
export function isOneStatement(ctx: RouteContext, v: ValidatedBatch, c: CollapsedBatch): boolean {
  return fitsOneStatement(ctx, c) && v.rejected.length === 0;
}

/**
 * A small batch into a known table: one statement applies the rows from array parameters, counts
 * them and writes the load-log row; atomic on its own, one round trip. Its text depends only on
 * the table's shape, so it is prepared once per connection and only executed afterwards.
 */
export async function applyOneStatement(
  ctx: RouteContext,
  s: Session,
  v: ValidatedBatch,
  plan: TablePlan,
  c: CollapsedBatch,
  received: number,
): Promise<LoadResult> {
  const shape = applyShape(ctx, v, plan, c, { source: "arrays", prefilter: false, counts: "returning", log: true });
  const statement = cached(ctx, JSON.stringify(shape), () => applyStatement(shape));
  const values = { ...arrayValues(c), ...logValues(ctx, v, c, received), staged: c.winners.length };
  const applied = await s.run<ApplyCounts>(statement, values);
  const result = { ...emptyResult(v, c, received), ...(applied.rows[0] as ApplyCounts) };
  result.skipped += unapplied(v, c, received);
  return result;
}

/**
 * Any batch, in the session's transaction: stage and apply the rows (COPY when large), retire
 * older table versions, write the load-log row. A batch that fits one statement takes it here too.
 */
export async function applyInTransaction(
  ctx: RouteContext,
  s: Session,
  v: ValidatedBatch,
  plan: TablePlan,
  c: CollapsedBatch,
  received: number,
  optimism: Optimism,
): Promise<LoadResult> {
  if (fitsOneStatement(ctx, c)) {
    const result = await applyOneStatement(ctx, s, v, plan, c, received);
    await quarantine(ctx, s, v);
    return result;
  }
  const result = emptyResult(v, c, received);
  if (c.winners.length > 0) {
    const copyClient = s.copyClient;
    const counts =
      c.winners.length >= ctx.options.copyThreshold && copyClient !== null
        ? await applyStaged(ctx, s, copyClient, v, plan, c, optimism)
        : await applyArrays(ctx, s, v, plan, c);
    Object.assign(result, counts);
  }
  // Messages that are not rows: activate_version. The first does the work; repeats in the same batch are superseded.
  if (c.activations.length > 0) {
    const retire = cached(ctx, JSON.stringify(["activate", ctx.options.schema, v.table]), () =>
      activateVersionStatement(ctx.options.schema, v.table),
    );
    const retired = await s.run(unnamed(retire), { tableVersion: v.tableVersion?.toString() ?? null });
    result.collapsed += c.activations.length - 1;
    if (retired.rowCount > 0) result.deleted += 1;
    else result.skipped += 1;
  } else {
    result.skipped += unapplied(v, c, received);
  }
  await writeLog(ctx, s, v, c, result);
  await quarantine(ctx, s, v);
  return result;
}

/** The rows as array parameters, in chunks (only a kysely transaction sends a large batch this way). */
async function applyArrays(ctx: RouteContext, s: Session, v: ValidatedBatch, plan: TablePlan, c: CollapsedBatch): Promise<ApplyCounts> {
  const shape = applyShape(ctx, v, plan, c, { source: "arrays", prefilter: false, counts: "returning", log: false });
  const statement = cached(ctx, JSON.stringify(shape), () => applyStatement(shape));
  const total: ApplyCounts = { inserted: 0, updated: 0, deleted: 0, skipped: 0 };
  for (let start = 0; start < c.winners.length; start += ARRAY_CHUNK) {
    // The collapse left one winner per key, so chunks never touch the same row twice.
    const chunk = { ...c, winners: c.winners.slice(start, start + ARRAY_CHUNK) };
    const values = { ...arrayValues(chunk), staged: chunk.winners.length, tableVersion: v.tableVersion?.toString() ?? null };
    const applied = (await s.run<ApplyCounts>(statement, values)).rows[0] as ApplyCounts;
    for (const k of ["inserted", "updated", "deleted", "skipped"] as const) total[k] += applied[k];
  }
  return total;
}

/**
 * A large batch: when a sample of its keys finds none in the table, first the optimistic COPY
 * straight into the table (`copyOptimistically`); otherwise, or when that meets a key after all,
 * COPY into a temporary stage table, then one INSERT … SELECT from it.
 */
async function applyStaged(
  ctx: RouteContext,
  s: Session,
  copyClient: NonNullable<Session["copyClient"]>,
  v: ValidatedBatch,
  plan: TablePlan,
  c: CollapsedBatch,
  optimism: Optimism,
): Promise<ApplyCounts> {
  const sample = v.keyNames.length > 0 ? await sampleKeys(ctx, s, v, c) : null;
  // As createAndLoad's COPY straight in: rows only, nothing a table version or activate_version adds.
  const optimistic =
    optimisticCopy.enabled &&
    optimism !== "off" &&
    sample !== null &&
    sample.existing === 0 &&
    c.activations.length === 0 &&
    v.tableVersion === null;
  if (optimistic && (await copyOptimistically(ctx, s, copyClient, v, c, sample.now, optimism))) {
    // Every row was a new key: what the upsert would have counted (a tombstone counts as a delete).
    return { inserted: c.winners.length - c.deletes, updated: 0, deleted: c.deletes, skipped: 0 };
  }
  const stage = cached(ctx, JSON.stringify(["stage", c.types]), () => ({ text: createStageQuery(c).sql, slots: [] }));
  await s.query(stage.text);
  // The key-order sort of a large batch would spill to disk at the default 4MB.
  await s.setLocal("work_mem", "256MB");
  await copyRows(copyClient, STAGE_TABLE, stageColumnNames(c.columns), c, "flag", null);
  const prefilter = sample !== null && sample.stale > 0;
  const tableVersion = v.tableVersion?.toString() ?? null;
  // Without deletes, the counts come from the command tag and the transaction's own statistics
  // rather than from RETURNING, whose million-row result PostgreSQL would materialise just to be
  // counted. (Deletes must be told apart from updates: RETURNING.) Not on Citus: neither the
  // command tag of an INSERT … SELECT through the coordinator (rows sent, not rows written) nor the
  // coordinator's statistics (rows written on the workers) count the rows.
  const updatedBefore = c.deletes === 0 && ctx.citus === null ? await tuplesUpdated(s, quoteQualified(ctx.options.schema, v.table)) : null;
  const counts = updatedBefore === null ? "returning" : "tag";
  const shape = applyShape(ctx, v, plan, c, { source: "stage", prefilter, counts, log: false });
  const statement = cached(ctx, JSON.stringify(shape), () => applyStatement(shape));
  const applied = await s.run<ApplyCounts>(unnamed(statement), { tableVersion, staged: c.winners.length });
  if (updatedBefore === null) return applied.rows[0] as ApplyCounts;
  const rows = applied.rowCount;
  const updated = Number(((await tuplesUpdated(s, quoteQualified(ctx.options.schema, v.table))) ?? updatedBefore) - updatedBefore);
  return { inserted: rows - updated, updated, deleted: 0, skipped: c.winners.length - rows };
}

/**
 * @internal The optimistic COPY can be turned off (tests compare its results with the staged
 * upsert's on the same batches).
 */
export const optimisticCopy = { enabled: true };

const SAVEPOINT = "seqload_optimistic";

/**
 * SQLSTATEs on which the optimistic COPY gives way to the staged upsert, rolled back to its
 * savepoint: that undoes its rows and frees the keys they took, so a loader waiting for one of
 * them goes on and inserts it. (A loader waiting for one of our keys when we commit instead: its
 * COPY meets 23505 and falls back too, its upsert applies the guard to our row.)
 */
const OPTIMISM_LOST: Readonly<Record<string, string>> = {
  /** Some key existed after all: one the sample missed, or one a racing loader committed meanwhile. */
  "23505": "unique violation",
  /**
   * Another loader inserts the same new keys in another order and each waits for a key the other
   * holds: text keys, which the COPY sends in batch order against the other's COPY, or against an
   * upsert in the index's order (integer keys go in key order, as the upsert's do, and wait for
   * each other instead). After the rollback to the savepoint, the upsert, in key order, waits for
   * the other's commit (test/optimistic-copy.test.ts). It can still meet the other's
   * COPY, if that is still running, in a second deadlock: outside the savepoint, so the loader
   * retries the batch, as it retries any deadlock (a caller's transaction gets the retryable error).
   */
  "40P01": "deadlock detected",
};

/**
 * COPY the winners straight into the table, as createAndLoad does into a new one (tombstones
 * included), in key order when the key is an integer (collapse.ts keyOrdered). True when every row
 * went in. With `savepoint`, under a savepoint in the batch's transaction: false, with nothing of
 * it left, when some key was there after all.
 *
 * With `transaction` (Citus), no savepoint: its COPY reports a worker's unique violation as XX000
 * (the worker's message, no SQLSTATE; test/citus.test.ts), which cannot be told from other
 * failures, and after a failed COPY, ROLLBACK TO SAVEPOINT did not always restore the workers'
 * connections (the upsert that followed met 25P02 from a worker). Any server error of the COPY
 * throws OptimismLost instead: the loader rolls the whole transaction back, which Citus does
 * cleanly, and runs the batch again on the staged upsert. A real failure then fails that run too.
 */
async function copyOptimistically(
  ctx: RouteContext,
  s: Session,
  copyClient: NonNullable<Session["copyClient"]>,
  v: ValidatedBatch,
  c: CollapsedBatch,
  deletedAt: string,
  optimism: Exclude<Optimism, "off">,
): Promise<boolean> {
  const ordered = keyOrdered(c);
  const rows = ordered === null ? c : { ...c, winners: ordered };
  const copy = () =>
    copyRows(copyClient, quoteQualified(ctx.options.schema, v.table), c.columns.map(quoteIdent), rows, "timestamp", deletedAt);
  if (optimism === "transaction") {
    try {
      await copy();
    } catch (e) {
      // A server error carries a SQLSTATE; a lost connection does not, and is the loader's to retry.
      if (typeof (e as { code?: unknown } | null)?.code !== "string") throw e;
      throw new OptimismLost("the optimistic COPY failed", { cause: e });
    }
    return true;
  }
  await s.query(`SAVEPOINT ${SAVEPOINT}`);
  try {
    await copy();
  } catch (e) {
    const code = (e as { code?: unknown } | null)?.code;
    if (typeof code !== "string" || OPTIMISM_LOST[code] === undefined) throw e;
    await s.query(`ROLLBACK TO SAVEPOINT ${SAVEPOINT}`);
    await s.query(`RELEASE SAVEPOINT ${SAVEPOINT}`);
    return false;
  }
  await s.query(`RELEASE SAVEPOINT ${SAVEPOINT}`);
  return true;
}

function applyShape(
  ctx: RouteContext,
  v: ValidatedBatch,
  plan: TablePlan,
  c: CollapsedBatch,
  how: Pick<ApplyShape, "source" | "prefilter" | "counts" | "log">,
): ApplyShape {
  const tableVersion = v.tableVersion !== null && plan.hasTableVersion;
  const prefilterJoin = how.prefilter && ctx.citus !== null;
  return {
    schema: ctx.options.schema,
    table: v.table,
    keyNames: v.keyNames,
    columns: c.columns,
    types: c.types,
    tableVersion,
    prefilterJoin,
    ...how,
  };
}

/** The values of the load-log row's slots (but its counts). */
function logValues(ctx: RouteContext, v: ValidatedBatch, c: CollapsedBatch, received: number): Record<string, unknown> {
  return {
    schema: ctx.options.schema,
    table: v.table,
    received,
    collapsed: c.collapsed,
    minSequence: c.minSequence?.toString() ?? null,
    maxSequence: c.maxSequence?.toString() ?? null,
    tableVersion: v.tableVersion?.toString() ?? null,
    rejected: v.rejected.length,
  };
}

async function writeLog(ctx: RouteContext, s: Session, v: ValidatedBatch, c: CollapsedBatch, result: LoadResult): Promise<void> {
  const { inserted, updated, deleted, skipped } = result;
  await s.run(logLoadStatement, {
    ...logValues(ctx, v, c, result.received),
    collapsed: result.collapsed,
    inserted,
    updated,
    deleted,
    skipped,
  });
}

interface KeySample {
  /** Sampled keys the table holds. */
  existing: number;
  /** Sampled keys the table holds at an equal or higher sequence. */
  stale: number;
  /** The transaction's timestamp, ISO 8601. */
  now: string;
}

/**
 * Asks the table about an even sample of a large batch's keys, in one statement. No key there at
 * all: the optimistic COPY. A stale one: the stale-row pre-filter. Filtering costs an index probe
 * per row; not filtering costs a row lock (and its write) per stale row, about three times as
 * much, and under concurrent loaders those locks make the others wait. A batch of only new or
 * newer rows (a first load, an update run) skips the filter.
 */
async function sampleKeys(ctx: RouteContext, s: Session, v: ValidatedBatch, c: CollapsedBatch): Promise<KeySample> {
  const n = Math.min(PREFILTER_SAMPLE, c.winners.length);
  const step = c.winners.length / n;
  const sample = Array.from({ length: n }, (_, i) => c.winners[Math.floor(i * step)] as ValidatedMessage);
  const positions = v.keyNames.map((k) => c.columns.indexOf(k));
  const keyTypes = positions.map((p) => c.types[p] as ColumnType);
  // On Citus as a join: Citus refuses the correlated EXISTS over `unnest`.
  const join = ctx.citus !== null;
  const statement = cached(ctx, JSON.stringify(["stale", ctx.options.schema, v.table, v.keyNames, keyTypes, join]), () =>
    staleSampleStatement(ctx.options.schema, v.table, v.keyNames, keyTypes, join),
  );
  const cell = cellEncoder(c);
  const values: Record<string, unknown> = { sequences: sample.map((m) => m.sequence.toString()) };
  positions.forEach((p, i) => {
    values[`k${i}`] = sample.map((m) => cell(m, p));
  });
  const r = await s.run<KeySample>(unnamed(statement), values);
  const row = r.rows[0];
  if (row === undefined) throw new Error("the key sample returned no row");
  return row;
}

/**
 * Rows of the table updated so far by this transaction (its own statistics), or null when the
 * server keeps no such counts (track_counts off).
 */
async function tuplesUpdated(s: Session, quotedTable: string): Promise<bigint | null> {
  const r = await s.query<{ updated: string; on: boolean }>(
    "SELECT pg_stat_get_xact_tuples_updated($1::regclass)::text AS updated, current_setting('track_counts') = 'on' AS on",
    [quotedTable],
  );
  const row = r.rows[0];
  return row?.on ? BigInt(row.updated) : null;
}
