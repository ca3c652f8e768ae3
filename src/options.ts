/** Loader options: the input type, the resolved type, resolved and checked once. */
import pg from "pg";
import type { DistributeMode } from "./citus.js";
import { ConfigurationError } from "./errors.js";
import { identifierProblem } from "./identifiers.js";
import { ON_INVALID_VALUES, type OnInvalid } from "./quarantine.js";

export interface LoaderOptions {
  /** PostgreSQL URL. One of connectionString or pool is required. */
  connectionString?: string;
  /** An existing pg.Pool to use instead (not closed by loader.close()). */
  pool?: pg.Pool;
  /** Target schema for data tables. Default "public"; created if missing. */
  schema?: string;
  /** Apply seqload's pending migrations on first use. Default true. */
  migrate?: boolean;
  /** Retries of a deadlock, serialization failure, lock timeout or lost connection. Default 5. */
  maxRetries?: number;
  /** lock_timeout for DDL and table creation, in ms. Default 5000. */
  lockTimeoutMs?: number;
  /** Batches with at least this many rows (after collapse) are staged with COPY; smaller ones as array parameters. Default 5000. */
  copyThreshold?: number;
  /** Size of the pool seqload creates from connectionString. Default 4. */
  poolSize?: number;
  /** statement_timeout (ms) on the connections of the pool seqload creates; 0 = none. Default 0. */
  statementTimeoutMs?: number;
  /**
   * A message that fails validation: "fail" rejects its whole batch (the Import API's rule);
   * "quarantine" writes it to seqload.rejected in the batch's transaction and loads the rest.
   * Problems of the batch as a whole reject it in either mode. Default "fail".
   */
  onInvalid?: OnInvalid;
  /** On a Citus coordinator, "auto" distributes each new table (keyed: hash on its first key; keyless: single shard); "off" keeps new tables local. Default "auto". */
  distribute?: DistributeMode;
}

export interface ResolvedOptions {
  schema: string;
  migrate: boolean;
  maxRetries: number;
  lockTimeoutMs: number;
  copyThreshold: number;
  onInvalid: OnInvalid;
  distribute: DistributeMode;
}

export function resolveOptions(input: LoaderOptions): ResolvedOptions {
  const schema = input.schema ?? "public";
  const p = identifierProblem(schema, "schema");
  if (p) throw new ConfigurationError(p);
  const nonNegativeInt = (name: string, v: number | undefined, dflt: number): number => {
    if (v === undefined) return dflt;
    if (!Number.isInteger(v) || v < 0) throw new ConfigurationError(`${name} must be a non-negative integer, got ${String(v)}`);
    return v;
  };
  return {
    schema,
    migrate: input.migrate ?? true,
    maxRetries: nonNegativeInt("maxRetries", input.maxRetries, 5),
    lockTimeoutMs: nonNegativeInt("lockTimeoutMs", input.lockTimeoutMs, 5000),
    copyThreshold: nonNegativeInt("copyThreshold", input.copyThreshold, 5000),
    onInvalid: input.onInvalid === undefined ? "fail" : checkOnInvalid(input.onInvalid),
    distribute: distributeMode(input.distribute),
  };
}

/** An onInvalid value, checked (it may come from plain JavaScript or a config file). */
export function checkOnInvalid(v: unknown): OnInvalid {
  if (!(ON_INVALID_VALUES as readonly unknown[]).includes(v)) {
    throw new ConfigurationError(`onInvalid must be "fail" or "quarantine", got ${JSON.stringify(v) ?? String(v)}`);
  }
  return v as OnInvalid;
}

function distributeMode(v: unknown): DistributeMode {
  if (v === undefined) return "auto";
  if (v === "auto" || v === "off") return v;
  throw new ConfigurationError(`distribute must be "auto" or "off", got ${JSON.stringify(v)}`);
}

export function makePool(input: LoaderOptions): { pool: pg.Pool; owned: boolean } {
  if (input.pool !== undefined) return { pool: input.pool, owned: false };
  if (input.connectionString === undefined || input.connectionString === "") {
    throw new ConfigurationError("createLoader needs connectionString or pool");
  }
  const pool = new pg.Pool({
    connectionString: input.connectionString,
    max: input.poolSize ?? 4,
    ...(input.statementTimeoutMs ? { statement_timeout: input.statementTimeoutMs } : {}),
  });
  return { pool, owned: true };
}

/** A connection string with its password replaced by ***, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== "") u.password = "***";
    return u.toString();
  } catch {
    return url.replace(/:\/\/([^:/@]+):[^@]*@/, "://$1:***@");
  }
}

const guardedPools = new WeakSet<pg.Pool>();

/**
 * One no-op 'error' listener per pool, however many loaders share it: an idle pooled connection
 * that dies (server restart, terminated backend) emits 'error' on the pool, which would crash the
 * process without a listener, and the pool drops the client by itself. One listener per loader
 * would trip Node's MaxListenersExceededWarning at the 11th loader on a shared pool (serve with
 * many tenants).
 */
export function guardPool(pool: pg.Pool): void {
  if (guardedPools.has(pool)) return;
  guardedPools.add(pool);
  pool.on("error", () => {});
}

const guarded = new WeakSet<pg.PoolClient>();

/**
 * pool.connect() with an 'error' listener on the client: pg's pool stops listening once a client
 * is checked out, and a terminated backend then emits 'error' with nobody listening, which crashes
 * the process. The failure still reaches us through the query's rejected promise.
 */
export async function checkout(pool: pg.Pool): Promise<pg.PoolClient> {
  const client = await pool.connect();
  if (!guarded.has(client)) {
    guarded.add(client);
    client.on("error", () => {});
  }
  return client;
}
