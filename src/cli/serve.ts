/**
 * `seqload serve`: the Import API over HTTP (src/serve.ts) on the database the other commands
 * use. This file only turns flags into startServer's options and handles the shutdown signals.
 */
import { openDatabase } from "./database.js";
import { CliError, EXIT_OK } from "./errors.js";
import type { Io } from "./io.js";

export interface ServeFlags {
  port?: string;
  host?: string;
  databaseUrl?: string;
  schema?: string;
  token?: string[];
  insecureNoAuth?: boolean;
}

const DEFAULT_PORT = 8080;
const DEFAULT_HOST = "127.0.0.1";

/** --token values first, then SEQLOAD_TOKENS (comma-separated); blanks and repeats dropped. */
function resolveTokens(flags: string[] | undefined, env: string | undefined): string[] {
  const all = [...(flags ?? []), ...(env ?? "").split(",")].map((t) => t.trim()).filter((t) => t !== "");
  return [...new Set(all)];
}

function parsePort(text: string | undefined): number {
  if (text === undefined) return DEFAULT_PORT;
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535) throw new CliError(`--port must be a number from 0 to 65535, got ${JSON.stringify(text)}`);
  return port;
}

export async function serveCommand(flags: ServeFlags, io: Io): Promise<number> {
  const port = parsePort(flags.port);
  const host = flags.host ?? DEFAULT_HOST;
  const tokens = resolveTokens(flags.token, process.env.SEQLOAD_TOKENS);
  const insecureNoAuth = flags.insecureNoAuth === true;
  if (tokens.length === 0 && !insecureNoAuth) {
    throw new CliError(
      "no API token configured: pass --token TOKEN (repeatable) or set SEQLOAD_TOKENS=token1,token2; " +
        "clients then send `Authorization: Bearer TOKEN`. To accept requests without a token, pass --insecure-no-auth.",
    );
  }
  // Loaded only when serving, so that the other commands never load fastify.
  const { startServer } = await import("../serve.js");
  const db = await openDatabase({ databaseUrl: flags.databaseUrl, log: io.err, poolSize: 10 });
  let server: { url: string; close(): Promise<void> };
  try {
    server = await startServer({
      loaderOptions: { pool: db.pool, ...(flags.schema !== undefined ? { schema: flags.schema } : {}) },
      port,
      host,
      tokens,
      insecureNoAuth,
      log: io.err,
    });
  } catch (e) {
    await db.close();
    throw e;
  }
  const where = `${db.displayUrl}${flags.schema !== undefined ? `, schema ${flags.schema}` : ""}`;
  io.err(`seqload: serving the Import API at ${server.url}, loading into ${where}; Ctrl-C stops it`);
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
