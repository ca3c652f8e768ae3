/**
 * Every HTTP answer the Import API gives, in Stitch's shapes (reference/stitch-import-api.md §1):
 * client errors as `{"error": "…"}`, server-side failures as `{"status":"ERROR","message":"…"}`,
 * 401 as `{"message":"Not Authorized"}`, 415 as plain text. Clients key on these exact shapes;
 * target-stitch gives up at once on a 4xx and retries a 5xx, so the split between them matters.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import {
  BatchValidationError,
  DistributionChangeError,
  KeyMismatchError,
  SCHEMA_MISMATCH,
  SeqloadError,
  TableShapeError,
  type ValidationIssue,
  isDataException,
} from "../errors.js";
import { lingerOnClose } from "./linger.js";

export interface HttpAnswer {
  status: number;
  headers: Record<string, string>;
  /** An object is sent as JSON; a string as text/plain. */
  body: Record<string, unknown> | string;
  /** Stable code for the log line (never the body, which may quote client data). */
  code: string;
}

/** Seconds a client should wait before retrying a 503 caused by the database or by shutdown. */
const RETRY_AFTER_SECONDS = "5";

export const ACCEPTED: HttpAnswer = { status: 201, headers: {}, body: { status: "OK", message: "Batch Accepted!" }, code: "OK" };
export const VALID: HttpAnswer = { status: 200, headers: {}, body: { status: "OK", message: "Batch is valid!" }, code: "OK" };
export const NOT_AUTHORIZED: HttpAnswer = { status: 401, headers: {}, body: { message: "Not Authorized" }, code: "NOT_AUTHORIZED" };
export const NOT_JSON: HttpAnswer = {
  status: 415,
  headers: {},
  body: "Content-Type must be application/json",
  code: "UNSUPPORTED_MEDIA_TYPE",
};

export const BUSY: HttpAnswer = {
  status: 503,
  headers: { "retry-after": "1" },
  body: { status: "ERROR", message: "Too many batches in flight; retry after 1 second" },
  code: "BUSY",
};

export const SHUTTING_DOWN: HttpAnswer = {
  status: 503,
  headers: { "retry-after": RETRY_AFTER_SECONDS, connection: "close" },
  body: { status: "ERROR", message: "The server is shutting down; retry shortly" },
  code: "SHUTTING_DOWN",
};

export function tooLarge(contentLength: number | null, limit: number): HttpAnswer {
  // With chunked transfer encoding the total is unknown: we stop reading at the limit.
  const size = contentLength !== null && contentLength > limit ? `${contentLength} bytes` : `more than ${limit} bytes`;
  return {
    status: 413,
    headers: {},
    body: { status: "ERROR", message: `Request rejected: request size (${size}) exceeds the maximum` },
    code: "TOO_LARGE",
  };
}

export function clientError(message: string, code: string): HttpAnswer {
  return { status: 400, headers: {}, body: { error: message }, code };
}

/**
 * One line per problem, every problem kept, in Stitch's wording where Stitch has one:
 *   Record 3 did not conform to schema: #/name: expected type string
 *   Record 4 is missing key property id
 *   Request failed validation:#/messages/5/sequence: sequence must be an integer, got the fraction 1.5
 * @internal exported for test/issue-kinds.test.ts
 */
export function stitchValidationText(issues: readonly ValidationIssue[]): string {
  return issues.map(issueLine).join("\n");
}

function issueLine(issue: ValidationIssue): string {
  const dataPath = `/messages/${issue.index}/data`;
  switch (issue.kind) {
    case "key_missing":
    case "key_null": {
      const name = keyName(issue.path);
      return issue.kind === "key_null"
        ? `Record ${issue.index} has a null key property ${name}`
        : `Record ${issue.index} is missing key property ${name}`;
    }
    case "schema":
    case "data": {
      // Stitch's line already says "did not conform": drop the library's own words for it.
      const finding = issue.kind === "schema" ? issue.message.slice(SCHEMA_MISMATCH.length) : issue.message;
      return `Record ${issue.index} did not conform to schema: #${issue.path.slice(dataPath.length)}: ${finding}`;
    }
    default:
      return `Request failed validation:#${issue.path}: ${issue.message}`;
  }
}

/** The key property named by the last segment of a key issue's JSON Pointer. */
function keyName(path: string): string {
  return path
    .slice(path.lastIndexOf("/") + 1)
    .replaceAll("~1", "/")
    .replaceAll("~0", "~");
}

/** Is this a problem with what the client sent (4xx), as opposed to with the server (5xx)? */
function isClientProblem(e: SeqloadError): boolean {
  // A data exception is caused by the batch itself; sending it again cannot succeed. So is a batch
  // whose values need a type Citus cannot give a distribution column.
  return (
    e instanceof BatchValidationError ||
    e instanceof KeyMismatchError ||
    e instanceof TableShapeError ||
    e instanceof DistributionChangeError ||
    isDataException(e)
  );
}

/** Map anything a load can throw to an answer. */
export function answerForError(e: unknown): HttpAnswer {
  if (e instanceof BatchValidationError) return clientError(stitchValidationText(e.issues), e.code);
  if (e instanceof SeqloadError) {
    if (isClientProblem(e)) return clientError(e.message, e.code);
    if (e.retryable) {
      return { status: 503, headers: { "retry-after": RETRY_AFTER_SECONDS }, body: { status: "ERROR", message: e.message }, code: e.code };
    }
    return { status: 500, headers: {}, body: { status: "ERROR", message: e.message }, code: e.code };
  }
  // Not a SeqloadError: a bug somewhere. Say so without echoing internals to the client.
  return {
    status: 500,
    headers: {},
    body: { status: "ERROR", message: "Internal error; the batch was not loaded. See the server log." },
    code: "INTERNAL",
  };
}

const answers = new WeakMap<FastifyRequest, HttpAnswer>();

/** The answer sent to this request (its code goes into the log line), if sendAnswer sent one. */
export function answerOf(request: FastifyRequest): HttpAnswer | undefined {
  return answers.get(request);
}

/** Send an answer; every reply of the server goes through here. */
export function sendAnswer(reply: FastifyReply, answer: HttpAnswer): FastifyReply {
  answers.set(reply.request, answer);
  reply.code(answer.status).headers(answer.headers);
  if (answer.status >= 400 && !reply.request.raw.complete) {
    // Refused before (all of) the body arrived: do not read the rest of it, but let the client
    // see this answer (see linger.ts).
    reply.header("connection", "close");
    lingerOnClose(reply.request.raw.socket);
  }
  if (typeof answer.body === "string") return reply.type("text/plain; charset=utf-8").send(answer.body);
  return reply.type("application/json; charset=utf-8").send(answer.body);
}
