/**
 * The Fastify application behind `seqload serve`: a thin HTTP layer over the library's
 * validateBatch and loader.loadBatch. Order of checks for a batch, cheapest first, so that an
 * unauthenticated or excess request never costs us a body read:
 *   shutting down? → token → a slot free now? → memory for the declared size → content type →
 *   size and time limit (while streaming) → batch slot, token's slot, memory to parse and load
 *   (src/server/admission.ts) → JSON → load
 * A body still arriving holds no batch slot and no database connection.
 */
import type { RequestListener, Server } from "node:http";
import Fastify, { type FastifyError, type FastifyInstance } from "fastify";
import { BatchValidationError } from "../errors.js";
import type { Loader } from "../loader.js";
import { validateBatch } from "../validate.js";
import { type TokenSpec, authenticateWith } from "./auth.js";
import { type Admission, Refusal } from "./admission.js";
import { handleBatch, trackBatch } from "./batch.js";
import { parseBody } from "./body.js";
import type { InFlightGate } from "./gate.js";
import type { ServerMetrics } from "./metrics.js";
import { NOT_JSON, SHUTTING_DOWN, VALID, answerForError, clientError, sendAnswer, tooLarge } from "./replies.js";

export interface AppContext {
  /** Configured tokens; null when the server runs with --insecure-no-auth. */
  specs: readonly TokenSpec[] | null;
  /** The loader for a token's bound schema (null: the default schema). */
  loaderFor(schema: string | null): Loader;
  gate: InFlightGate;
  /** Batch slots per token, the memory budget and the body timeout. */
  admission: Admission;
  metrics: ServerMetrics;
  /** Creates the HTTP(S) server with Node's time limits set (src/server/limits.ts). */
  serverFactory?: (handler: RequestListener) => Server;
  isClosing(): boolean;
  maxMessages: number;
  maxBodyBytes: number;
  log(line: string): void;
  version: string;
}

/** A JSON syntax error, answered 400 like Stitch's "Malformed json in the body!". */
class MalformedJsonError extends Error {
  readonly statusCode = 400;
}

const PING_TIMEOUT_MS = 2000;

/** Every endpoint and its methods (for 405 and for the 404 hint). */
const ROUTES: Readonly<Record<string, string>> = {
  "/v2/import/batch": "POST",
  "/v2/import/validate": "POST",
  "/v2/import/status": "GET, HEAD",
  "/healthz": "GET, HEAD",
  "/metrics": "GET, HEAD",
};

export function buildApp(ctx: AppContext): FastifyInstance {
  const app = Fastify({
    logger: false, // one line per batch through opts.log instead; Fastify's logger would log headers
    bodyLimit: ctx.maxBodyBytes,
    return503OnClosing: false, // our own 503 (Stitch-shaped, with Retry-After) answers instead
    forceCloseConnections: "idle",
    ...(ctx.serverFactory === undefined ? {} : { serverFactory: ctx.serverFactory }),
  });

  // Only application/json is a body we read (Stitch answers 415 to anything else, Transit too).
  // The text is parsed losslessly: 19-digit sequences must never pass through a double. The parse
  // of a large body gives the event loop a turn every few milliseconds, so that it does not hold up
  // the other requests' database work meanwhile (src/server/body.ts).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "string", bodyLimit: ctx.maxBodyBytes }, (_request, text, done) => {
    parseBody(text as string).then(
      (value) => done(null, value),
      (e: unknown) => {
        // V8 names no position for a body that simply stops; the position is then its end.
        const message = (e as Error).message;
        const where = /position \d+/.test(message) ? "" : ` at position ${(text as string).length}`;
        done(new MalformedJsonError(`Malformed JSON in the body: ${message}${where}`), undefined);
      },
    );
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof Refusal) return sendAnswer(reply, error.answer);
    if (error instanceof MalformedJsonError) return sendAnswer(reply, clientError(error.message, "MALFORMED_JSON"));
    switch (error.code) {
      case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
        return sendAnswer(reply, NOT_JSON);
      case "FST_ERR_CTP_BODY_TOO_LARGE": {
        const declared = Number(request.headers["content-length"]);
        return sendAnswer(reply, tooLarge(Number.isFinite(declared) ? declared : null, ctx.maxBodyBytes));
      }
      case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
        return sendAnswer(reply, clientError("Request body size did not match Content-Length", "BAD_CONTENT_LENGTH"));
    }
    if (typeof error.statusCode === "number" && error.statusCode >= 400 && error.statusCode < 500) {
      return sendAnswer(reply, clientError(error.message, error.code ?? "BAD_REQUEST"));
    }
    ctx.log(
      JSON.stringify({ time: new Date().toISOString(), event: "error", method: request.method, url: request.url, error: error.message }),
    );
    return sendAnswer(reply, answerForError(error));
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split("?")[0] ?? "";
    const allow = ROUTES[path];
    if (allow !== undefined) {
      // Stitch answers 405 "Method not allowed." for a known endpoint and the wrong method.
      return sendAnswer(reply, {
        status: 405,
        headers: { allow },
        body: { status: "ERROR", message: "Method not allowed." },
        code: "METHOD_NOT_ALLOWED",
      });
    }
    return sendAnswer(reply, {
      status: 404,
      headers: {},
      body: {
        status: "ERROR",
        message: `Not found: ${request.method} ${path} (seqload serves ${Object.entries(ROUTES)
          .map(([p, m]) => `${m.split(",")[0]} ${p}`)
          .join(", ")})`,
      },
      code: "NOT_FOUND",
    });
  });

  app.addHook("onRequest", async (_request, reply) => {
    if (ctx.isClosing()) return sendAnswer(reply, SHUTTING_DOWN);
  });

  app.addHook("preParsing", ctx.admission.guardBody());

  const authenticate = authenticateWith(ctx.specs);
  app.post("/v2/import/batch", { onRequest: [trackBatch(ctx), authenticate, ctx.admission.reserveBody(true)] }, (request, reply) =>
    handleBatch(ctx, request, reply),
  );

  // Batch-shaped, unlike Stitch's push-shaped validate (an array of records with client_id):
  // it answers "would /v2/import/batch accept this body?" without touching the database.
  app.post("/v2/import/validate", { onRequest: [authenticate, ctx.admission.reserveBody(false)] }, async (request, reply) => {
    if (request.body === undefined) return sendAnswer(reply, NOT_JSON);
    if (Array.isArray(request.body)) {
      return sendAnswer(
        reply,
        clientError(
          "Request failed validation:#: expected a batch object ({table_name, schema, key_names, messages}); seqload's /v2/import/validate checks /v2/import/batch bodies, not Stitch's push-shaped arrays",
          "BATCH_INVALID",
        ),
      );
    }
    try {
      validateBatch(request.body, { maxMessages: ctx.maxMessages });
      return sendAnswer(reply, VALID);
    } catch (e) {
      if (e instanceof BatchValidationError) return sendAnswer(reply, answerForError(e));
      throw e;
    }
  });

  // Stitch's status body (pipeline.gate); unauthenticated, as on Stitch. It does not touch the
  // database, so probing it costs nothing; /healthz is the deep check.
  app.get("/v2/import/status", async (_request, reply) =>
    sendAnswer(reply, {
      status: 200,
      headers: {},
      body: { name: "seqload", version: ctx.version, revision: null, status: "OK", reason: null },
      code: "OK",
    }),
  );

  // Prometheus text format; no token (scrapers rarely carry one) and nothing secret in it.
  app.get("/metrics", async (_request, reply) => reply.type(ctx.metrics.contentType).send(await ctx.metrics.text()));

  app.get("/healthz", async (_request, reply) => {
    const pool = ctx.loaderFor(null).pool;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        pool.query("SELECT 1"),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${PING_TIMEOUT_MS} ms`)), PING_TIMEOUT_MS);
        }),
      ]);
      return sendAnswer(reply, { status: 200, headers: {}, body: { status: "OK", database: "reachable" }, code: "OK" });
    } catch (e) {
      return sendAnswer(reply, {
        status: 503,
        headers: { "retry-after": "5" },
        body: { status: "ERROR", message: `database unreachable: ${(e as Error).message}` },
        code: "DB_UNREACHABLE",
      });
    } finally {
      clearTimeout(timer);
    }
  });

  return app;
}
