/**
 * `seqload serve`: Stitch's Import API (`/v2/import/*`) on your own PostgreSQL. This file resolves
 * the options, builds one loader per target schema on one shared pool, starts the HTTP server and
 * owns the graceful shutdown; the routes live in src/server/.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigurationError } from "./errors.js";
import { type Loader, createLoader } from "./loader.js";
import type { LoaderOptions } from "./options.js";
import { redactUrl } from "./options.js";
import { buildApp } from "./server/app.js";
import { type TokenSpec, parseTokenSpecs } from "./server/auth.js";
import { InFlightGate } from "./server/gate.js";

export interface ServeOptions {
  /** Where and how to load (connectionString or pool, schema = the default target schema, …). */
  loaderOptions: LoaderOptions;
  /** TCP port; 0 picks a free one (see the returned url). */
  port: number;
  /** Interface to listen on, e.g. "127.0.0.1" or "0.0.0.0". */
  host: string;
  /** Bearer tokens, each `TOKEN` or `TOKEN@schema` (bound to that schema). */
  tokens: string[];
  /** Accept requests without a token. Only honoured when `tokens` is empty. */
  insecureNoAuth: boolean;
  /** Receives one JSON line per batch and a few lifecycle lines; never a token. */
  log: (line: string) => void;
  /** Batches loading at once; beyond it 503 + Retry-After: 1. Default: the pool's size (4). */
  maxInFlight?: number;
  /** Largest request body in bytes, enforced while it streams in. Default 20 MiB (20,971,520). */
  maxBodyBytes?: number;
  /** Most messages in one batch. Default 20,000 (Stitch's limit). */
  maxMessages?: number;
}

/** Stitch documents "20MB"; 20 MiB leaves room for the envelope around target-stitch's 20,000,000-byte records. */
const DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024;
const DEFAULT_MAX_MESSAGES = 20_000;
/** How long close() lets running requests finish before it cuts their connections. */
const DRAIN_GRACE_MS = 30_000;
/** Tokens shorter than this are guessable; warn, since refusing would break existing clients. */
const SHORT_TOKEN = 16;

function positiveInt(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < 1) throw new ConfigurationError(`${name} must be a positive integer, got ${String(v)}`);
  return v;
}

/** The version in seqload's package.json, found from this file in src/ (tsx) or dist/src/ (built). */
function packageVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++, dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "seqload" && typeof pkg.version === "string") return pkg.version;
    } catch {
      // not here; look one level up
    }
  }
  return "unknown";
}

const logLine = (fields: Record<string, unknown>): string => JSON.stringify({ time: new Date().toISOString(), ...fields });

/**
 * One loader per target schema, all on one pool (so the pool size bounds connections overall).
 * The default loader is created from loaderOptions as given and owns the pool when it made it.
 */
async function createLoaders(
  options: LoaderOptions,
  specs: readonly TokenSpec[],
): Promise<{ loaderFor: (schema: string | null) => Loader; close(): Promise<void> }> {
  const main = await createLoader(options);
  const bySchema = new Map<string, Loader>([[main.options.schema, main]]);
  try {
    for (const spec of specs) {
      if (spec.schema === null || bySchema.has(spec.schema)) continue;
      // A bad schema name throws ConfigurationError here, at startup, not on the first batch.
      bySchema.set(spec.schema, await createLoader({ ...options, connectionString: undefined, pool: main.pool, schema: spec.schema }));
    }
  } catch (e) {
    await main.close();
    throw e;
  }
  return {
    loaderFor: (schema) => (schema === null ? main : (bySchema.get(schema) ?? main)),
    close: () => main.close(), // the others borrow main's pool and own nothing
  };
}

/** Start the Import API server. Resolves once it is listening. */
export async function startServer(opts: ServeOptions): Promise<{ url: string; close(): Promise<void> }> {
  const specs = parseTokenSpecs(opts.tokens);
  if (specs.length === 0 && !opts.insecureNoAuth) {
    throw new ConfigurationError("refusing to start without a token: pass --token or SEQLOAD_TOKENS, or --insecure-no-auth");
  }
  const poolSize = opts.loaderOptions.pool?.options.max ?? opts.loaderOptions.poolSize ?? 4;
  const maxInFlight = positiveInt("maxInFlight", opts.maxInFlight, poolSize);
  const maxBodyBytes = positiveInt("maxBodyBytes", opts.maxBodyBytes, DEFAULT_MAX_BODY_BYTES);
  const maxMessages = positiveInt("maxMessages", opts.maxMessages, DEFAULT_MAX_MESSAGES);

  const loaders = await createLoaders(opts.loaderOptions, specs);
  const gate = new InFlightGate(maxInFlight);
  let closing = false;
  const app = buildApp({
    specs: specs.length > 0 ? specs : null,
    loaderFor: loaders.loaderFor,
    gate,
    isClosing: () => closing,
    maxMessages,
    maxBodyBytes,
    log: opts.log,
    version: packageVersion(),
  });

  let url: string;
  try {
    url = await app.listen({ port: opts.port, host: opts.host });
  } catch (e) {
    await loaders.close();
    throw e;
  }
  const schema = loaders.loaderFor(null).options.schema;
  const database = opts.loaderOptions.connectionString === undefined ? "(pool)" : redactUrl(opts.loaderOptions.connectionString);
  const bound = [...new Set(specs.flatMap((s) => (s.schema === null ? [] : [s.schema])))];
  opts.log(
    logLine({
      event: "listening",
      url,
      database,
      schema,
      tokens: specs.length,
      boundSchemas: bound,
      maxInFlight,
      maxBodyBytes,
      maxMessages,
    }),
  );
  if (specs.length === 0)
    opts.log(
      logLine({ event: "warning", message: "authentication is OFF (--insecure-no-auth): anyone who can reach this port can write" }),
    );
  const short = opts.tokens.filter((t) => t.trim() !== "" && t.trim().replace(/@[^@]*$/, "").length < SHORT_TOKEN).length;
  if (short > 0)
    opts.log(logLine({ event: "warning", message: `${short} token(s) shorter than ${SHORT_TOKEN} characters; use long random tokens` }));

  // Not fatal at startup: the server can come up before its database; batches get 503 meanwhile.
  loaders
    .loaderFor(null)
    .pool.query("SELECT 1")
    .catch((e: Error) => opts.log(logLine({ event: "warning", message: `database not reachable yet: ${e.message}` })));

  let closed: Promise<void> | null = null;
  async function shutdown(): Promise<void> {
    closing = true; // from now on every new request gets 503 + Retry-After
    opts.log(logLine({ event: "closing", inFlight: gate.active }));
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), DRAIN_GRACE_MS);
    });
    const drained = await Promise.race([gate.whenIdle().then(() => "idle" as const), grace]);
    clearTimeout(timer);
    // Stops listening and closes idle keep-alive connections; after the grace period, all of them
    // (a batch whose load already started still commits: the pool below waits for it).
    const stopped = app.close();
    if (drained === "timeout") app.server.closeAllConnections();
    await stopped;
    await gate.whenIdle();
    await loaders.close();
    opts.log(logLine({ event: "closed" }));
  }
  return {
    url,
    close: () => {
      closed ??= shutdown();
      return closed;
    },
  };
}
