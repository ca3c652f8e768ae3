/**
 * `seqload serve`: Stitch's Import API (`/v2/import/*`) on your own PostgreSQL. This file resolves
 * the options, reads the tokens (and rereads the tokens file on request or change), starts the
 * HTTP server and owns the graceful shutdown; the routes live in src/server/, the per-schema
 * loaders in src/server/tenants.ts.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigurationError } from "./errors.js";
import type { LoaderOptions } from "./options.js";
import { redactUrl } from "./options.js";
import { Admission } from "./server/admission.js";
import { buildApp } from "./server/app.js";
import { SHORT_TOKEN, type TokenEntry, type TokenSpec, parseTokenEntries } from "./server/auth.js";
import { InFlightGate } from "./server/gate.js";
import { type LimitOptions, type TlsOptions, checkTls, resolveLimits, serverFactory } from "./server/limits.js";
import { ServerMetrics } from "./server/metrics.js";
import { DEFAULT_MAX_SCHEMAS_CACHED, createTenants } from "./server/tenants.js";
import { readTokensFile, watchTokensFile } from "./server/tokens-file.js";

/** Time limits, batch slots (maxInFlight, maxInFlightPerToken) and the memory budget: see LimitOptions. */
export interface ServeOptions extends LimitOptions {
  /** Where and how to load (connectionString or pool, schema = the default target schema, …). */
  loaderOptions: LoaderOptions;
  /** TCP port; 0 picks a free one (see the returned url). */
  port: number;
  /** Interface to listen on, e.g. "127.0.0.1" or "0.0.0.0". */
  host: string;
  /** Bearer tokens, each `TOKEN`, `TOKEN@schema` (bound to that schema), `sha256:HEX` or `sha256:HEX@schema`. */
  tokens: string[];
  /** A file of more token entries (one per line, `#` comments), reread by reloadTokens() and when it changes. Default: none. */
  tokensFile?: string;
  /** Reread tokensFile when it changes on disk (fs.watch), not only on reloadTokens(). Default true. */
  watchTokensFile?: boolean;
  /** Per-schema loaders kept (least recently used evicted first). Default 256. */
  maxSchemasCached?: number;
  /** Accept requests without a token. Only honoured when `tokens` is empty. */
  insecureNoAuth: boolean;
  /** Receives one JSON line per batch and a few lifecycle lines; never a token. */
  log: (line: string) => void;
  /** Largest request body in bytes, enforced while it streams in. Default 20 MiB (20,971,520). */
  maxBodyBytes?: number;
  /** Most messages in one batch. Default 20,000 (Stitch's limit). */
  maxMessages?: number;
  /** Serve HTTPS with this PEM certificate (chain) and key. Default: plain HTTP. */
  tls?: TlsOptions;
}

/** Stitch documents "20MB"; 20 MiB leaves room for the envelope around target-stitch's 20,000,000-byte records. */
const DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024;
const DEFAULT_MAX_MESSAGES = 20_000;

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

/** What a rereading of the tokens file did (also logged, with counts only). */
export interface TokensReload {
  /** The new set is in force; false: the file was refused and the old set stays. */
  ok: boolean;
  /** Tokens in force afterwards. */
  tokens: number;
  added: number;
  removed: number;
  /** Why the file was refused (names lines, never tokens). */
  error?: string;
}

export interface RunningServer {
  url: string;
  /** Reread the tokens file (what SIGHUP does); a bad file is refused and the old set stays. */
  reloadTokens(reason?: string): TokensReload;
  /** Per-schema loaders: cached now (at most maxSchemasCached) and created since start. */
  readonly tenants: { cached: number; created: number };
  close(): Promise<void>;
}

/** Start the Import API server. Resolves once it is listening. */
export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const baseEntries: TokenEntry[] = opts.tokens.map((text, i) => ({ text, where: `token #${i + 1}` }));
  const file = opts.tokensFile;
  let fingerprint: string | null = null;
  /** The entries of the flags and the file, parsed together (a token in both counts once). */
  const readAll = (): TokenSpec[] => {
    if (file === undefined) return parseTokenEntries(baseEntries);
    const read = readTokensFile(file);
    const specs = parseTokenEntries([...baseEntries, ...read.entries]);
    fingerprint = read.fingerprint;
    return specs;
  };
  // Replaced in place on reload: the app's token check reads this very array on every request.
  const specs = readAll();
  if (specs.length === 0 && !opts.insecureNoAuth) {
    throw new ConfigurationError(
      file === undefined
        ? "refusing to start without a token: pass --token or SEQLOAD_TOKENS, or --insecure-no-auth (the safe way: tokensFile / --tokens-file)"
        : `refusing to start without a token: the tokens file ${file} lists none`,
    );
  }
  const authOn = specs.length > 0 || file !== undefined;
  const poolSize = opts.loaderOptions.pool?.options.max ?? opts.loaderOptions.poolSize ?? 4;
  const limits = resolveLimits(opts, poolSize, specs.length);
  if (opts.tls !== undefined) checkTls(opts.tls);
  const maxBodyBytes = positiveInt("maxBodyBytes", opts.maxBodyBytes, DEFAULT_MAX_BODY_BYTES);
  const maxMessages = positiveInt("maxMessages", opts.maxMessages, DEFAULT_MAX_MESSAGES);

  const maxSchemasCached = positiveInt("maxSchemasCached", opts.maxSchemasCached, DEFAULT_MAX_SCHEMAS_CACHED);
  const loaders = await createTenants(opts.loaderOptions, maxSchemasCached);
  const gate = new InFlightGate(limits.maxInFlight);
  const pool = loaders.loaderFor(null).pool;
  const metrics = new ServerMetrics({
    pool: () => pool,
    inFlight: () => gate.active,
    receiving: () => admission.receiving, // read at scrape time, once admission exists
    memoryReserved: () => admission.memory.used,
    memoryBudget: limits.maxMemoryBytes,
  });
  const admission = new Admission(limits, gate, maxBodyBytes, (why) => metrics.refused(why));
  let closing = false;
  const app = buildApp({
    specs: authOn ? specs : null,
    loaderFor: loaders.loaderFor,
    gate,
    admission,
    metrics,
    serverFactory: serverFactory(limits, opts.tls ?? null),
    isClosing: () => closing,
    maxMessages,
    maxBodyBytes,
    log: opts.log,
    version: packageVersion(),
  });

  let url: string;
  try {
    url = await app.listen({ port: opts.port, host: opts.host });
    // Fastify names the scheme from its own https option; the server factory made the server.
    if (opts.tls !== undefined) url = url.replace(/^http:/, "https:");
  } catch (e) {
    await loaders.close();
    throw e;
  }
  const schema = loaders.loaderFor(null).options.schema;
  const database = opts.loaderOptions.connectionString === undefined ? "(pool)" : redactUrl(opts.loaderOptions.connectionString);
  const boundSchemas = (list: readonly TokenSpec[]) => new Set(list.flatMap((s) => (s.schema === null ? [] : [s.schema]))).size;
  opts.log(
    logLine({
      event: "listening",
      url,
      database,
      schema,
      tokens: specs.length,
      ...(file === undefined ? {} : { tokensFile: file }),
      boundSchemas: boundSchemas(specs),
      maxSchemasCached,
      tls: opts.tls !== undefined,
      ...limits,
      maxBodyBytes,
      maxMessages,
    }),
  );
  if (!authOn)
    opts.log(
      logLine({ event: "warning", message: "authentication is OFF (--insecure-no-auth): anyone who can reach this port can write" }),
    );
  const warnShort = (list: readonly TokenSpec[]) => {
    const short = list.filter((s) => s.short === true).length;
    if (short > 0)
      opts.log(logLine({ event: "warning", message: `${short} token(s) shorter than ${SHORT_TOKEN} characters; use long random tokens` }));
  };
  warnShort(specs);

  function reloadTokens(reason = "reload"): TokensReload {
    if (file === undefined) {
      const error = "no tokens file to reread (tokens come from --token / SEQLOAD_TOKENS only)";
      opts.log(logLine({ event: "tokens-reload-failed", reason, error, tokens: specs.length }));
      return { ok: false, tokens: specs.length, added: 0, removed: 0, error };
    }
    const before = fingerprint;
    let next: TokenSpec[];
    try {
      next = readAll();
      if (next.length === 0) throw new ConfigurationError(`the tokens file ${file} lists no token`);
    } catch (e) {
      const error = e instanceof ConfigurationError ? e.message : `cannot read the tokens file ${file}: ${(e as Error).message}`;
      fingerprint = before; // a refused file must be reported again on its next change
      opts.log(logLine({ event: "tokens-reload-failed", reason, file, error, kept: specs.length }));
      return { ok: false, tokens: specs.length, added: 0, removed: 0, error };
    }
    // A watch event for bytes already in force (a touch, a second event of one write): nothing to do.
    if (reason === "file changed" && fingerprint === before) return { ok: true, tokens: specs.length, added: 0, removed: 0 };
    const key = (s: TokenSpec) => `${s.digest.toString("hex")}@${s.schema ?? ""}`;
    const old = new Set(specs.map(key));
    const now = new Set(next.map(key));
    const added = next.filter((s) => !old.has(key(s))).length;
    const removed = specs.filter((s) => !now.has(key(s))).length;
    // In place, in one synchronous step: the next request sees the new set, a batch already past
    // the token check finishes as it started.
    specs.length = 0;
    for (const spec of next) specs.push(spec);
    opts.log(logLine({ event: "tokens-reloaded", reason, file, tokens: next.length, added, removed, boundSchemas: boundSchemas(next) }));
    warnShort(next);
    return { ok: true, tokens: next.length, added, removed };
  }
  const unwatch = file !== undefined && opts.watchTokensFile !== false ? watchTokensFile(file, () => reloadTokens("file changed")) : null;

  // Not fatal at startup: the server can come up before its database; batches get 503 meanwhile.
  loaders
    .loaderFor(null)
    .pool.query("SELECT 1")
    .catch((e: Error) => opts.log(logLine({ event: "warning", message: `database not reachable yet: ${e.message}` })));

  let closed: Promise<void> | null = null;
  async function shutdown(): Promise<void> {
    closing = true; // from now on every new request gets 503 + Retry-After
    unwatch?.();
    opts.log(logLine({ event: "closing", inFlight: gate.active }));
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), limits.shutdownGraceMs);
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
    reloadTokens,
    get tenants() {
      return { cached: loaders.cached, created: loaders.created };
    },
    close: () => {
      closed ??= shutdown();
      return closed;
    },
  };
}
