/**
 * The limits that keep `seqload serve` bounded whatever its clients do: how long headers and
 * bodies may take to arrive, how long an idle keep-alive connection stays open, how long shutdown
 * waits, how many batches load at once (in all and per token) and how much memory bodies being
 * read and batches being loaded may hold. Resolved and checked once, at startup.
 */
import http from "node:http";
import https from "node:https";
import { createSecureContext } from "node:tls";
import { ConfigurationError } from "../errors.js";

export interface LimitOptions {
  /** Whole request headers within this many ms, else 408 and the connection is closed. Default 10,000. */
  headersTimeoutMs?: number;
  /** Whole request body within this many ms of its headers, else 408 (counted and logged). Default 30,000. */
  bodyTimeoutMs?: number;
  /** An idle keep-alive connection is closed after this many ms. Default 72,000 (longer than common proxies' 60 s). */
  keepAliveTimeoutMs?: number;
  /** How long shutdown lets running requests finish before it cuts their connections. Default 30,000. */
  shutdownGraceMs?: number;
  /** Batches loading at once; beyond it 503 + Retry-After: 1. Default: the pool's size. */
  maxInFlight?: number;
  /** Batches loading at once for one token; beyond it 429 + Retry-After: 1. Default: half of maxInFlight, rounded up (all of it with a single token). */
  maxInFlightPerToken?: number;
  /** Memory budget in MiB for bodies being read and batches being parsed and loaded; beyond it 503 + Retry-After: 1. Default 512. */
  maxMemoryMb?: number;
}

export interface ResolvedLimits {
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  keepAliveTimeoutMs: number;
  shutdownGraceMs: number;
  maxInFlight: number;
  maxInFlightPerToken: number;
  maxMemoryBytes: number;
}

const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
const DEFAULT_BODY_TIMEOUT_MS = 30_000;
const DEFAULT_KEEP_ALIVE_TIMEOUT_MS = 72_000;
const DEFAULT_SHUTDOWN_GRACE_MS = 30_000;
const DEFAULT_MAX_MEMORY_MB = 512;

function positive(name: string, v: number | undefined, dflt: number, integer: boolean): number {
  if (v === undefined) return dflt;
  const ok = integer ? Number.isSafeInteger(v) && v >= 1 : Number.isFinite(v) && v > 0;
  if (!ok) throw new ConfigurationError(`${name} must be a positive ${integer ? "integer" : "number"}, got ${String(v)}`);
  return v;
}

/** Check the options and fill in the defaults; `poolSize` is the default for maxInFlight. */
export function resolveLimits(opts: LimitOptions, poolSize: number, tokenCount: number): ResolvedLimits {
  const maxInFlight = positive("maxInFlight", opts.maxInFlight, poolSize, true);
  // With one token (or none) there is no other tenant to leave room for.
  const perTokenDefault = tokenCount > 1 ? Math.ceil(maxInFlight / 2) : maxInFlight;
  const maxInFlightPerToken = positive("maxInFlightPerToken", opts.maxInFlightPerToken, perTokenDefault, true);
  return {
    headersTimeoutMs: positive("headersTimeoutMs", opts.headersTimeoutMs, DEFAULT_HEADERS_TIMEOUT_MS, false),
    bodyTimeoutMs: positive("bodyTimeoutMs", opts.bodyTimeoutMs, DEFAULT_BODY_TIMEOUT_MS, false),
    keepAliveTimeoutMs: positive("keepAliveTimeoutMs", opts.keepAliveTimeoutMs, DEFAULT_KEEP_ALIVE_TIMEOUT_MS, false),
    shutdownGraceMs: positive("shutdownGraceMs", opts.shutdownGraceMs, DEFAULT_SHUTDOWN_GRACE_MS, false),
    maxInFlight,
    maxInFlightPerToken: Math.min(maxInFlightPerToken, maxInFlight),
    maxMemoryBytes: Math.round(positive("maxMemoryMb", opts.maxMemoryMb, DEFAULT_MAX_MEMORY_MB, false) * 1024 * 1024),
  };
}

/** PEM certificate chain and private key: HTTPS instead of HTTP. */
export interface TlsOptions {
  cert: string | Buffer;
  key: string | Buffer;
}

/** Refuse a certificate or key that TLS cannot use, at startup rather than at the first client. */
export function checkTls(tls: TlsOptions): void {
  try {
    createSecureContext({ cert: tls.cert, key: tls.key });
  } catch (e) {
    throw new ConfigurationError(`the TLS certificate and key cannot be used: ${(e as Error).message}`);
  }
}

/**
 * Node's own timers, as a backstop behind the body timer of src/server/admission.ts: headers, a
 * request that never completes (on any route), idle keep-alive connections. Node checks them on
 * an interval (30 s by default, far too coarse for a 10 s limit), so the interval is set too.
 */
function nodeTimeouts(limits: ResolvedLimits): http.ServerOptions {
  const requestTimeout = Math.ceil(limits.headersTimeoutMs + limits.bodyTimeoutMs + 5_000);
  return {
    headersTimeout: Math.ceil(limits.headersTimeoutMs),
    requestTimeout,
    connectionsCheckingInterval: Math.min(1_000, Math.ceil(limits.headersTimeoutMs / 2)),
  };
}

/**
 * The HTTP or HTTPS server under Fastify (its `serverFactory`). An HTTPS server gives Fastify the
 * same request and response objects as an HTTP one, so Fastify's HTTP typing holds for both.
 */
export function serverFactory(limits: ResolvedLimits, tls: TlsOptions | null) {
  return (handler: http.RequestListener): http.Server => {
    const options = nodeTimeouts(limits);
    const server =
      tls === null ? http.createServer(options, handler) : (https.createServer({ ...options, ...tls }, handler) as unknown as http.Server);
    server.keepAliveTimeout = Math.ceil(limits.keepAliveTimeoutMs);
    return server;
  };
}
