/**
 * Every error seqload throws is a SeqloadError with a stable `code`. PostgreSQL errors are
 * classified in one place (`wrapPgError`) so that callers can branch on `retryable` instead of
 * parsing SQLSTATEs themselves.
 */

import { showName } from "./identifiers.js";
import { shorten } from "./text.js";

/**
 * What kind of problem a validation issue is, for programs (the HTTP server words each kind the
 * way Stitch does):
 * - `batch`: the envelope or the schema (index null);
 * - `message`: a message's own fields (action, sequence, unknown fields);
 * - `data`: the record itself, or a value in it PostgreSQL cannot store;
 * - `schema`: the record does not conform to the batch's JSON schema (message starts with SCHEMA_MISMATCH);
 * - `key_missing` / `key_null`: a key property is absent or null (the path ends with its name).
 */
export type ValidationIssueKind = "batch" | "message" | "data" | "schema" | "key_missing" | "key_null";

export interface ValidationIssue {
  /** Index of the message in `messages`, or null for a problem with the batch envelope. */
  index: number | null;
  /** JSON path inside the batch, e.g. `/messages/3/data/id`. */
  path: string;
  /** What is wrong, in words. */
  message: string;
  /** What kind of problem, for programs (not enumerable: issues print and serialise as index, path, message). */
  readonly kind: ValidationIssueKind;
}

/** How the message of a `schema` issue starts; what follows is the JSON Schema validator's finding. */
export const SCHEMA_MISMATCH = "does not conform to the schema: ";

export function validationIssue(kind: ValidationIssueKind, index: number | null, path: string, message: string): ValidationIssue {
  const issue = { index, path, message } as ValidationIssue;
  Object.defineProperty(issue, "kind", { value: kind, enumerable: false });
  return issue;
}

export class SeqloadError extends Error {
  /** Stable, machine-readable error code. */
  readonly code: string;
  /** True when loading the same batch again may succeed (and is safe: the guard makes replays idempotent). */
  readonly retryable: boolean;
  constructor(code: string, message: string, options: { cause?: unknown; retryable?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** The batch is not valid; nothing was written. Lists every problem found. */
export class BatchValidationError extends SeqloadError {
  readonly issues: ValidationIssue[];
  readonly table: string | null;
  constructor(issues: ValidationIssue[], table: string | null = null) {
    const shown = issues.slice(0, 20).map((i) => `  - ${describeIssue(i)}`);
    if (issues.length > 20) shown.push(`  - … and ${issues.length - 20} more`);
    super(
      "BATCH_INVALID",
      `batch${table === null ? "" : ` for table ${showName(table)}`} is invalid (${issues.length} problem${issues.length === 1 ? "" : "s"}); nothing was written:\n${shown.join("\n")}`,
    );
    this.issues = issues;
    this.table = table;
  }
}

function describeIssue(issue: ValidationIssue): string {
  const path = shorten(issue.path, 200);
  const where = issue.index === null ? path || "batch" : `message ${issue.index} (${path})`;
  return `${where}: ${issue.message}`;
}

/** The batch's key_names differ from the primary key of the existing table; nothing was written. */
export class KeyMismatchError extends SeqloadError {
  constructor(
    readonly table: string,
    readonly existingKeys: string[],
    readonly batchKeys: string[],
  ) {
    super(
      "KEY_NAMES_CHANGED",
      `table "${table}" has primary key ${fmtKeys(existingKeys)} but the batch has key_names ${fmtKeys(batchKeys)}; ` +
        "seqload never changes a primary key: load into a new table or fix key_names. Nothing was written.",
    );
  }
}

function fmtKeys(keys: string[]): string {
  return keys.length === 0 ? "[] (append-only)" : JSON.stringify(keys);
}

/** The table exists but was not created by seqload or cannot hold seqload's system columns. */
export class TableShapeError extends SeqloadError {
  constructor(message: string) {
    super("TABLE_INCOMPATIBLE", message);
  }
}

/**
 * The batch would change the type of a Citus table's distribution column, which Citus cannot do
 * (the shards are placed by that column's hash); nothing was written.
 */
export class DistributionChangeError extends SeqloadError {
  constructor(
    readonly table: string,
    readonly column: string,
    readonly from: string,
    readonly to: string,
  ) {
    super(
      "DISTRIBUTION_COLUMN_CHANGE",
      `table "${table}" is distributed by Citus on column "${column}", and the batch would widen "${column}" from ${from} to ${to}; ` +
        "Citus cannot change the type of a distribution column. Nothing was written: send values that fit the column's type, or load into a new table.",
    );
  }
}

/** PostgreSQL could not be reached, or the connection broke. */
export class ConnectionError extends SeqloadError {
  constructor(message: string, cause: unknown, retryable: boolean) {
    super("CONNECTION_FAILED", message, { cause, retryable });
  }
}

/** A PostgreSQL error while applying a batch. The batch was rolled back as a whole. */
export class DatabaseError extends SeqloadError {
  /** The SQLSTATE PostgreSQL returned. */
  readonly sqlState: string | undefined;
  constructor(code: string, message: string, sqlState: string | undefined, cause: unknown, retryable: boolean) {
    super(code, message, { cause, retryable });
    this.sqlState = sqlState;
  }
}

/** Retries of a transient failure (deadlock, serialization failure, lock timeout) ran out. */
export class RetryExhaustedError extends DatabaseError {}

/** An option passed to createLoader or the CLI is invalid. */
export class ConfigurationError extends SeqloadError {
  constructor(message: string) {
    super("INVALID_OPTION", message);
  }
}

/** SQLSTATEs after which the whole transaction can be retried as is (the guard makes replays idempotent). */
const TRANSIENT_CODES: Readonly<Record<string, string>> = {
  "40P01": "deadlock detected",
  "40001": "serialization failure",
  "55P03": "lock not available (lock_timeout)",
  // Citus: the coordinator lost its connection to a worker mid-statement ("failed to COPY to
  // shard …"); it rolls the distributed transaction back, so the batch can run again.
  "58030": "I/O error (on Citus: a connection from the coordinator to a worker broke)",
};

/** SQLSTATEs that mean the connection or server went away; retry on a new connection. */
const CONNECTION_CODES: Readonly<Record<string, string>> = {
  "57P01": "admin shutdown (server stopped or backend terminated)",
  "57P02": "crash shutdown",
  "57P03": "cannot connect now (server starting up or shutting down)",
  "08000": "connection exception",
  "08003": "connection does not exist",
  "08006": "connection failure",
  "08001": "unable to establish connection",
  "08004": "server rejected the connection",
  "53300": "too many connections",
};

/** SQLSTATEs that are never retried: retrying cannot change the outcome. */
const PERMANENT_CODES: Readonly<Record<string, string>> = {
  "21000": "cardinality violation (a key twice in one statement: a seqload bug)",
  "22021": "invalid byte sequence (e.g. a NUL character in text)",
  "22P02": "invalid text representation",
  "22003": "numeric value out of range",
  "23505": "unique violation",
  "42P01": "undefined table",
  "42703": "undefined column",
  "42501": "insufficient privilege",
};

/**
 * SQLSTATEs that mean the loader's cached table shape is stale (another loader created, widened
 * or extended the table): read the catalog again and replan.
 */
const STALE_SHAPE_CODES: Readonly<Record<string, string>> = {
  "42P01": "undefined table",
  "42703": "undefined column",
  "42804": "datatype mismatch (a column type the cache thought the column had)",
};

export function isStaleShape(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" && STALE_SHAPE_CODES[code] !== undefined;
}

/**
 * A database error caused by the batch's own data (SQLSTATE class 22, data exception: e.g. a
 * value out of range): sending the batch again cannot succeed.
 */
export function isDataException(e: unknown): boolean {
  return e instanceof DatabaseError && e.sqlState !== undefined && e.sqlState.startsWith("22");
}

interface PgLikeError {
  code?: string;
  message?: string;
  detail?: string;
  hint?: string;
}

function isPgLike(e: unknown): e is PgLikeError & Error {
  return e instanceof Error;
}

/** Node socket errors and pg's own client-side connection errors. */
function isConnectionLoss(e: Error & { code?: string }): boolean {
  if (e.code !== undefined && CONNECTION_CODES[e.code] !== undefined) return true;
  if (e.code !== undefined && /^E(CONNRESET|CONNREFUSED|PIPE|TIMEDOUT|HOSTUNREACH|NOTFOUND|AI_AGAIN)$/.test(e.code)) return true;
  return /Connection terminated|connection error|Client has encountered a connection error|not queryable/i.test(e.message);
}

/** Failures that can only happen while opening a connection: nothing was sent, nothing written. */
const CONNECT_FAILURES: Readonly<Record<string, { hint: string; retryable: boolean }>> = {
  ECONNREFUSED: { hint: "is the server running, and are host and port right?", retryable: true },
  ENOTFOUND: { hint: "is the host name right?", retryable: false },
  EAI_AGAIN: { hint: "the host name could not be resolved right now", retryable: true },
  "28P01": { hint: "are the user name and password right?", retryable: false },
  "28000": { hint: "does pg_hba.conf allow this user, database and address?", retryable: false },
  "3D000": { hint: "does the database exist?", retryable: false },
  "57P03": { hint: "the server is starting up or shutting down; try again shortly", retryable: true },
};

/** Is this PostgreSQL error worth retrying inside the loader? */
export function isTransient(e: unknown): boolean {
  return isPgLike(e) && typeof (e as PgLikeError).code === "string" && TRANSIENT_CODES[(e as PgLikeError).code as string] !== undefined;
}

export function isConnectionError(e: unknown): boolean {
  return isPgLike(e) && isConnectionLoss(e);
}

/**
 * Turn anything thrown while talking to PostgreSQL into a SeqloadError. `what` says what seqload
 * was doing, e.g. `loading table "customers"`.
 */
export function wrapPgError(
  e: unknown,
  what: string,
  opts: { replaySafe?: boolean; target?: string; callerTransaction?: boolean } = {},
): SeqloadError {
  if (e instanceof SeqloadError) return e;
  if (!isPgLike(e)) return new SeqloadError("INTERNAL", `${what}: ${String(e)}`, { cause: e });
  const pg = e;
  const state = pg.code;
  const connect = state === undefined ? undefined : CONNECT_FAILURES[state];
  if (connect !== undefined) {
    return new ConnectionError(
      `could not connect to PostgreSQL${opts.target ? ` at ${opts.target}` : ""} (${pg.message}): ${connect.hint} Nothing was written.`,
      e,
      connect.retryable,
    );
  }
  const detail = pg.detail ? ` (${pg.detail})` : "";
  // In the caller's transaction seqload cannot roll back: the caller must (the transaction is aborted).
  const rolledBack = opts.callerTransaction ? "the caller's transaction must be rolled back" : "the batch was rolled back";
  const again = opts.callerTransaction ? `${rolledBack}; the batch can then be loaded again` : `${rolledBack} and can be loaded again`;
  const replaySafe = opts.replaySafe ?? true;
  if (isConnectionLoss(pg)) {
    return new ConnectionError(
      `${what}: the connection to PostgreSQL was lost (${pg.message}); the batch was not committed${
        replaySafe ? " or is already fully applied; loading it again is safe" : "; it may or may not have been committed"
      }${opts.callerTransaction ? "; the caller's transaction is lost with the connection and must be run again" : ""}`,
      e,
      replaySafe,
    );
  }
  if (state !== undefined && TRANSIENT_CODES[state] !== undefined) {
    return new DatabaseError("TRANSIENT", `${what}: ${TRANSIENT_CODES[state]}: ${pg.message}${detail}; ${again}`, state, e, true);
  }
  if (state === "57014") {
    return new DatabaseError(
      "TIMEOUT",
      `${what}: statement cancelled (statement_timeout or cancel): ${pg.message}; ${again}`,
      state,
      e,
      true,
    );
  }
  if (state === "21000") {
    return new DatabaseError(
      "INTERNAL",
      `${what}: ${pg.message}. This is a seqload bug (in-batch collapse missed a duplicate key); please report it. ${rolledBack[0]?.toUpperCase()}${rolledBack.slice(1)}.`,
      state,
      e,
      false,
    );
  }
  const gloss = state !== undefined && PERMANENT_CODES[state] !== undefined ? ` [${PERMANENT_CODES[state]}]` : "";
  return new DatabaseError(
    "DATABASE_ERROR",
    `${what}: ${pg.message}${detail}${gloss} (SQLSTATE ${state ?? "none"}); ${rolledBack}`,
    state,
    e,
    false,
  );
}
