/**
 * Bearer tokens for `seqload serve`. A token may be bound to a target schema with `TOKEN@schema`,
 * so that two clients cannot write each other's tables; an unbound token loads into the server's
 * default schema. Tokens never appear in an error message or a log line.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import { ConfigurationError } from "../errors.js";
import { NOT_AUTHORIZED, sendAnswer } from "./replies.js";

export interface TokenSpec {
  /** Position in the configured list (0-based); the only way a token is ever named in logs. */
  index: number;
  /** SHA-256 of the token: compared instead of the token so that its length cannot leak. */
  digest: Buffer;
  /** The schema this token may write to, or null for the server's default schema. */
  schema: string | null;
}

// Stitch tokens are hex, so "@" cannot be part of a real token; the LAST "@" splits, which keeps
// the rule one sentence long (a token that contains "@" must then be written TOKEN@schema).
const BINDING = "@";

const sha256 = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest();

/**
 * Parse `--token` / SEQLOAD_TOKENS entries: `TOKEN` or `TOKEN@schema`. Blank entries (e.g. from a
 * trailing comma in SEQLOAD_TOKENS) are ignored; anything ambiguous is refused at startup.
 */
export function parseTokenSpecs(entries: readonly string[]): TokenSpec[] {
  const specs: TokenSpec[] = [];
  const seen = new Map<string, string | null>();
  for (const raw of entries) {
    const entry = raw.trim();
    if (entry === "") continue;
    const at = entry.lastIndexOf(BINDING);
    const token = at === -1 ? entry : entry.slice(0, at);
    const schema = at === -1 ? null : entry.slice(at + 1);
    const n = specs.length + 1;
    if (token === "") throw new ConfigurationError(`token #${n} is empty (the form is TOKEN or TOKEN@schema)`);
    if (schema === "") throw new ConfigurationError(`token #${n} ends with "@" but names no schema (the form is TOKEN@schema)`);
    if (/\s/.test(token)) throw new ConfigurationError(`token #${n} contains whitespace; an Authorization header cannot carry it`);
    const key = sha256(token).toString("hex");
    if (seen.has(key)) {
      if (seen.get(key) !== schema) throw new ConfigurationError(`token #${n} is configured twice with different schemas`);
      continue;
    }
    seen.set(key, schema);
    specs.push({ index: specs.length, digest: sha256(token), schema });
  }
  return specs;
}

/** The token from `Authorization: Bearer <token>` (scheme case-insensitive), or null. */
function bearerToken(header: string | undefined): string | null {
  if (header === undefined) return null;
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return m ? (m[1] as string) : null;
}

/**
 * Find the spec matching `token`. Every configured token is compared, whether or not an earlier
 * one matched, and each comparison is over fixed-length digests: the time taken tells an attacker
 * neither how long a token is, nor how many characters matched, nor which entry matched.
 */
function matchToken(specs: readonly TokenSpec[], token: string | null): TokenSpec | null {
  if (token === null) return null;
  const digest = sha256(token);
  let found: TokenSpec | null = null;
  for (const spec of specs) {
    if (timingSafeEqual(digest, spec.digest) && found === null) found = spec;
  }
  return found;
}

/** What the token check learned about a request, for the handler and the log line. */
export interface RequestState {
  /** The token presented (null with --insecure-no-auth). */
  spec: TokenSpec | null;
  /** Passed the token check (or no check is configured). */
  authenticated: boolean;
}

const states = new WeakMap<FastifyRequest, RequestState>();

export function stateOf(request: FastifyRequest): RequestState {
  return states.get(request) ?? { spec: null, authenticated: false };
}

/** The onRequest hook: 401 before any byte of the body is read. `specs` null = no check. */
export function authenticateWith(specs: readonly TokenSpec[] | null) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    if (specs === null) {
      states.set(request, { spec: null, authenticated: true });
      return undefined;
    }
    const spec = matchToken(specs, bearerToken(request.headers.authorization));
    if (spec === null) return sendAnswer(reply, NOT_AUTHORIZED);
    states.set(request, { spec, authenticated: true });
    return undefined;
  };
}
