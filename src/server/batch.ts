/**
 * `POST /v2/import/batch`: the load itself (admission is src/server/admission.ts), and the one
 * structured log line and metrics update each request gets, whatever its outcome. Both are
 * written when the HTTP exchange and the load are over, so they always carry the LoadResult of a
 * batch that was committed, even if the client hung up before the 201 reached it.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { BatchValidationError } from "../errors.js";
import type { LoadResult } from "../types.js";
import type { AppContext } from "./app.js";
import { stateOf } from "./auth.js";
import { Exchange } from "./gate.js";
import { ACCEPTED, type HttpAnswer, NOT_JSON, answerForError, answerOf, sendAnswer } from "./replies.js";

interface BatchInfo {
  exchange: Exchange;
  started: number;
  /** The connection closed before the whole answer was written: the client went away. */
  hungUp: boolean;
  table: string | null;
  result: LoadResult | null;
  error: unknown;
}

const batches = new WeakMap<FastifyRequest, BatchInfo>();

/** First onRequest hook: start the clock and arrange for the log line, even for a 401 or 503. */
export function trackBatch(ctx: AppContext) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const info: BatchInfo = {
      exchange: new Exchange(() => finish(ctx, request, reply, info)),
      started: performance.now(),
      hungUp: false,
      table: null,
      result: null,
      error: undefined,
    };
    batches.set(request, info);
    // 'close' fires when the response has been sent and also when the client went away early.
    reply.raw.once("close", () => {
      // Decided now: a response written later into the dead socket may still count as "finished".
      info.hungUp = !reply.raw.writableFinished;
      info.exchange.drop();
    });
  };
}

export async function handleBatch(ctx: AppContext, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const info = batches.get(request);
  if (info === undefined) throw new Error("handleBatch without trackBatch (a seqload bug)");
  const body = request.body;
  // No Content-Type and no body at all: Fastify skips the parser, Stitch would answer 415.
  if (body === undefined) return sendAnswer(reply, NOT_JSON);
  const envelope = typeof body === "object" && body !== null ? (body as { table_name?: unknown; messages?: unknown }) : {};
  info.table = typeof envelope.table_name === "string" ? envelope.table_name : null;

  const loader = ctx.loaderFor(stateOf(request).spec?.schema ?? null);
  // The client hung up before we started: load nothing (it will retry), answer no one.
  if (!info.exchange.hold()) return reply;
  let answer: HttpAnswer;
  try {
    // An over-long batch is refused before the library validates its records.
    info.result = await loader.loadBatch(body, { limits: { maxMessages: ctx.maxMessages } });
    answer = ACCEPTED; // only now: the batch's transaction has committed
  } catch (e) {
    info.error = e;
    answer = answerForError(e);
  }
  // Answer before letting go, so that the log line (written at the last drop) knows the answer
  // even when the client already left.
  try {
    return sendAnswer(reply, answer);
  } finally {
    info.exchange.drop();
  }
}

function finish(ctx: AppContext, request: FastifyRequest, reply: FastifyReply, info: BatchInfo): void {
  // The batch slot, the token's slot and the memory taken at admission (src/server/admission.ts).
  ctx.admission.release(request);
  try {
    const line = logLine(ctx, request, reply, info);
    const body = request.body as { messages?: unknown } | undefined;
    ctx.metrics.batch({
      status: line.status as number | null,
      code: answerOf(request)?.code,
      schema: line.schema as string | null,
      table: info.table,
      messages: Array.isArray(body?.messages) ? body.messages.length : 0,
      result: info.result,
      seconds: (performance.now() - info.started) / 1000,
    });
    ctx.log(JSON.stringify(line));
  } catch {
    // A failing log sink must not take the server down (this runs in a socket event handler).
  }
}

function logLine(ctx: AppContext, request: FastifyRequest, reply: FastifyReply, info: BatchInfo): Record<string, unknown> {
  const { spec, authenticated } = stateOf(request);
  const answered = !info.hungUp;
  const line: Record<string, unknown> = {
    time: new Date().toISOString(),
    event: "batch",
    status: answered ? reply.raw.statusCode : null,
    ms: Math.round((performance.now() - info.started) * 10) / 10,
    table: info.table,
    schema: authenticated ? ctx.loaderFor(spec?.schema ?? null).options.schema : null,
    ...(info.result ?? {}),
    // Which configured token (1-based), never the token itself.
    token: spec === null ? null : spec.index + 1,
    remote: request.ip,
    bytes: request.headers["content-length"] === undefined ? null : Number(request.headers["content-length"]),
  };
  if (!answered) line.aborted = true; // the client went away; a committed batch is still committed
  const answer = answerOf(request);
  if (answer !== undefined && answer.code !== "OK") line.code = answer.code;
  if (info.error instanceof BatchValidationError) line.problems = info.error.issues.length;
  // 5xx messages describe our side and are safe to log; 4xx messages may quote client data.
  else if (info.error instanceof Error && (answer?.status ?? 0) >= 500) line.error = info.error.message;
  return line;
}
