/**
 * Bearer tokens for `seqload serve`. A token may be bound to a target schema with `TOKEN@schema`,
 * so that two clients cannot write each other's tables; an unbound token loads into the server's
 * default schema. An entry may hold the token's SHA-256 instead (`sha256:HEX[@schema]`), so that
 * a tokens file need not hold the secret itself. Tokens never appear in an error message or a log
 * line: a bad entry is named by its position ("token #2", "line 7 of FILE").
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import { ConfigurationError } from "../errors.js";
import { identifierProblem } from "../identifiers.js";
import { NOT_AUTHORIZED, sendAnswer } from "./replies.js";

export interface TokenSpec {
  /** Position in the configured list (0-based); the only way a token is ever named in logs. */
  index: number;
  /** SHA-256 of the token: compared instead of the token so that its length cannot leak. */
  digest: Buffer;
  /** The schema this token may write to, or null for the server's default schema. */
  schema: string | null;
  /** A plain entry shorter than SHORT_TOKEN characters (a hashed entry's length is unknown). */
  short?: boolean;
}

/** One configured entry and where it came from, for error messages ("token #2", "line 7 of F"). */
export interface TokenEntry {
  text: string;
  where: string;
}

// Stitch tokens are hex, so "@" cannot be part of a real token; the LAST "@" splits, which keeps
// the rule one sentence long (a token that contains "@" must then be written TOKEN@schema).
const BINDING = "@";
/** `sha256:` + 64 hex digits: the entry holds the token's digest, not the token. */
const HASHED = /^sha256:([0-9a-f]{64})$/i;
/** Tokens shorter than this are guessable; warned about, since refusing would break clients. */
export const SHORT_TOKEN = 16;

const sha256 = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest();

/** A new random token (24 bytes, 48 hex digits) and its hashed entry for a tokens file. */
export function newToken(schema?: string): { token: string; entry: string } {
  if (schema !== undefined) {
    const p = identifierProblem(schema, "schema");
    if (p) throw new ConfigurationError(p);
  }
  const token = randomBytes(24).toString("hex");
  return { token, entry: hashedEntry(token, schema) };
}

/** The `sha256:HEX[@schema]` entry that accepts `token`. */
export function hashedEntry(token: string, schema?: string): string {
  return `sha256:${sha256(token).toString("hex")}${schema === undefined ? "" : `${BINDING}${schema}`}`;
}

/**
 * Parse entries, each `TOKEN`, `TOKEN@schema`, `sha256:HEX` or `sha256:HEX@schema`. Blank entries
 * (e.g. from a trailing comma in SEQLOAD_TOKENS) are ignored; anything ambiguous is refused, with
 * the entry's position and never its text. A token listed twice for the same schema counts once.
 */
export function parseTokenEntries(entries: readonly TokenEntry[]): TokenSpec[] {
  const specs: TokenSpec[] = [];
  const seen = new Map<string, string | null>();
  for (const { text, where } of entries) {
    const entry = text.trim();
    if (entry === "") continue;
    const at = entry.lastIndexOf(BINDING);
    const token = at === -1 ? entry : entry.slice(0, at);
    const schema = at === -1 ? null : entry.slice(at + 1);
    if (token === "") throw new ConfigurationError(`${where} is empty (the form is TOKEN or TOKEN@schema)`);
    if (schema === "") throw new ConfigurationError(`${where} ends with "@" but names no schema (the form is TOKEN@schema)`);
    if (/\s/.test(token)) throw new ConfigurationError(`${where} contains whitespace; an Authorization header cannot carry it`);
    if (schema !== null) {
      const p = identifierProblem(schema, "schema");
      if (p) throw new ConfigurationError(`${where}: ${p}`);
    }
    const hashed = HASHED.exec(token);
    if (hashed === null && /^sha256:/i.test(token)) {
      throw new ConfigurationError(`${where} starts with "sha256:" but is not followed by 64 hex digits (the form is sha256:HEX[@schema])`);
    }
    const digest = hashed === null ? sha256(token) : Buffer.from(hashed[1] as string, "hex");
    const key = digest.toString("hex");
    if (seen.has(key)) {
      if (seen.get(key) !== schema) throw new ConfigurationError(`${where} repeats an earlier token with a different schema`);
      continue;
    }
    seen.set(key, schema);
    specs.push({ index: specs.length, digest, schema, short: hashed === null && token.length < SHORT_TOKEN });
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
