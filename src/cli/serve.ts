/**
 * `seqload serve`: the Import API over HTTP (src/serve.ts) on the database the other commands
 * use. This file only turns flags into startServer's options and handles the shutdown signals.
 */
import type { DistributeMode } from "../citus.js";
import { readFileSync } from "node:fs";
import type { LimitOptions, TlsOptions } from "../server/limits.js";
import { openDatabase } from "./database.js";
import { CliError, EXIT_OK } from "./errors.js";
import { limitHeapGrowth } from "./heap.js";
import type { Io } from "./io.js";
import type { OnInvalid } from "../quarantine.js";
import type { RunningServer } from "../serve.js";

export interface ServeFlags {
  port?: string;
  host?: string;
  databaseUrl?: string;
  schema?: string;
  /** --on-invalid: fail (default) or quarantine. */
  onInvalid?: OnInvalid;
  distribute?: DistributeMode;
  token?: string[];
  tokensFile?: string;
  maxSchemasCached?: string;
  insecureNoAuth?: boolean;
  maxInFlight?: string;
  maxInFlightPerToken?: string;
  maxMemoryMb?: string;
  headersTimeout?: string;
  bodyTimeout?: string;
  keepAliveTimeout?: string;
  shutdownGrace?: string;
  tlsCert?: string;
  tlsKey?: string;
}

const DEFAULT_PORT = 8080;
/**
 * Checkouts after which a pooled connection is replaced. PostgreSQL keeps the prepared statements
 * of the small-batch path per connection, one per table shape served on it (about 80 KB each),
 * until the connection closes; with many tenants on long-lived connections that grows with the
 * number of tenants. Replacing a connection now and then bounds it (a reconnect costs a few ms).
 */
const CONNECTION_MAX_USES = 250;
const DEFAULT_HOST = "127.0.0.1";

/** --token values first, then SEQLOAD_TOKENS (comma-separated); blanks and repeats dropped. */
function resolveTokens(flags: string[] | undefined, env: string | undefined): string[] {
  const all = [...(flags ?? []), ...(env ?? "").split(",")].map((t) => t.trim()).filter((t) => t !== "");
  return [...new Set(all)];
}

function urlHasPassword(url: string): boolean {
  try {
    return new URL(url).password !== "";
  } catch {
    return false;
  }
}

function parseCount(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    throw new CliError(`${flag} must be a positive whole number, got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

function parsePort(text: string | undefined): number {
  if (text === undefined) return DEFAULT_PORT;
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535) throw new CliError(`--port must be a number from 0 to 65535, got ${JSON.stringify(text)}`);
  return port;
}

/** A positive number from a flag (seconds or MiB), or a positive integer (counts). */
function positive(flag: string, text: string | undefined, integer: boolean): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  const ok = /^\s*\d+(\.\d+)?\s*$/.test(text) && n > 0 && (!integer || Number.isSafeInteger(n));
  if (!ok) throw new CliError(`${flag} must be a positive ${integer ? "integer" : "number"}, got ${JSON.stringify(text)}`);
  return n;
}

const seconds = (flag: string, text: string | undefined): number | undefined => {
  const s = positive(flag, text, false);
  return s === undefined ? undefined : s * 1000;
};

/** The limits of src/server/limits.ts from their flags. */
function limitOptions(flags: ServeFlags): LimitOptions {
  const all: LimitOptions = {
    maxInFlight: positive("--max-in-flight", flags.maxInFlight, true),
    maxInFlightPerToken: positive("--max-in-flight-per-token", flags.maxInFlightPerToken, true),
    maxMemoryMb: positive("--max-memory-mb", flags.maxMemoryMb, false),
    headersTimeoutMs: seconds("--headers-timeout", flags.headersTimeout),
    bodyTimeoutMs: seconds("--body-timeout", flags.bodyTimeout),
    keepAliveTimeoutMs: seconds("--keep-alive-timeout", flags.keepAliveTimeout),
    shutdownGraceMs: seconds("--shutdown-grace", flags.shutdownGrace),
  };
  return Object.fromEntries(Object.entries(all).filter(([, v]) => v !== undefined));
}

/** --tls-cert and --tls-key, read now so that a wrong path fails at startup with its name. */
function tlsOptions(flags: ServeFlags): TlsOptions | undefined {
  if (flags.tlsCert === undefined && flags.tlsKey === undefined) return undefined;
  if (flags.tlsCert === undefined || flags.tlsKey === undefined) throw new CliError("--tls-cert and --tls-key go together: pass both");
  const read = (flag: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw new CliError(`cannot read ${flag} ${file}: ${(e as Error).message}`);
    }
  };
  return { cert: read("--tls-cert", flags.tlsCert), key: read("--tls-key", flags.tlsKey) };
}

export async function serveCommand(flags: ServeFlags, io: Io): Promise<number> {
  const port = parsePort(flags.port);
  const limits = limitOptions(flags);
  const tls = tlsOptions(flags);
  const host = flags.host ?? DEFAULT_HOST;
  const tokens = resolveTokens(flags.token, process.env.SEQLOAD_TOKENS);
  const insecureNoAuth = flags.insecureNoAuth === true;
  const tokensFile = flags.tokensFile;
  if (tokens.length === 0 && tokensFile === undefined && !insecureNoAuth) {
    throw new CliError(
      "no API token configured: pass --token TOKEN (repeatable) or set SEQLOAD_TOKENS=token1,token2; " +
        "clients then send `Authorization: Bearer TOKEN`. To accept requests without a token, pass --insecure-no-auth. " +
        "For production put the tokens in a file only you can read (mode 600; `seqload token new` prints a token " +
        "and its line for the file) and pass --tokens-file FILE.",
    );
  }
  const maxSchemasCached = parseCount("--max-schemas-cached", flags.maxSchemasCached);
  if (flags.databaseUrl !== undefined && urlHasPassword(flags.databaseUrl)) {
    io.err(
      "seqload: warning: --database-url holds a password, which other local users can read (ps, /proc) as long as serve runs; " +
        "leave it out of the URL and set PGPASSWORD or use ~/.pgpass (or pass the URL in DATABASE_URL)",
    );
  }
  if ((flags.token ?? []).length > 0) {
    io.err(
      "seqload: warning: --token puts the token in the argument list, which other local users can read (ps, /proc); " +
        "use --tokens-file FILE (mode 600) or SEQLOAD_TOKENS outside development",
    );
  }
  // Batches come and go as in `load`: keep V8's garbage between collections small (src/cli/heap.ts).
  limitHeapGrowth();
  // Loaded only when serving, so that the other commands never load fastify.
  const { startServer } = await import("../serve.js");
  const db = await openDatabase({ databaseUrl: flags.databaseUrl, log: io.err, poolSize: 10, maxUses: CONNECTION_MAX_USES });
  let server: RunningServer;
  try {
    server = await startServer({
      loaderOptions: {
        pool: db.pool,
        ...(flags.schema !== undefined ? { schema: flags.schema } : {}),
        ...(flags.onInvalid !== undefined ? { onInvalid: flags.onInvalid } : {}),
        ...(flags.distribute !== undefined ? { distribute: flags.distribute } : {}),
      },
      port,
      host,
      tokens,
      ...(tokensFile !== undefined ? { tokensFile } : {}),
      ...(maxSchemasCached !== undefined ? { maxSchemasCached } : {}),
      insecureNoAuth,
      log: io.err,
      ...limits,
      ...(tls === undefined ? {} : { tls }),
    });
  } catch (e) {
    await db.close();
    throw e;
  }
  const where = `${db.displayUrl}${flags.schema !== undefined ? `, schema ${flags.schema}` : ""}`;
  io.err(`seqload: serving the Import API at ${server.url}, loading into ${where}; Ctrl-C stops it`);
  // SIGHUP rereads the tokens file (its result is logged by the server, with counts only). The
  // handler stays until exit: without one, a SIGHUP during shutdown would kill the process.
  const reread = () => server.reloadTokens("SIGHUP");
  process.on("SIGHUP", reread);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
  io.err(`seqload: ${signal}: stopping after the requests in flight (again to stop at once)`);
  const force = () => process.exit(130); // a second signal: stop now
  process.once("SIGINT", force).once("SIGTERM", force);
  try {
    await server.close();
  } finally {
    await db.close();
  }
  return EXIT_OK;
}
