/**
 * Fair admission for `seqload serve`. What a request may hold, and when:
 *   - while its body arrives: only its bytes, counted against the memory budget (by
 *     Content-Length up front, or chunk by chunk as a chunked body streams), and only for the
 *     body timeout;
 *   - once its body is complete (and its token checked): a batch slot, one of its token's slots,
 *     and the memory budget for parsing and loading it.
 * Nothing here ever waits: a request over a limit is answered at once (503 or 429 with
 * Retry-After) and the client retries, so a slow or greedy client cannot make others queue.
 */
import { Transform, type TransformCallback } from "node:stream";
import type { FastifyReply, FastifyRequest } from "fastify";
import { stateOf } from "./auth.js";
import type { InFlightGate } from "./gate.js";
import type { ResolvedLimits } from "./limits.js";
import { BUSY, type HttpAnswer, sendAnswer } from "./replies.js";

/**
 * What a batch costs in memory while it is parsed and loaded, per byte of its body: the body
 * text, the parsed messages, the validated and collapsed rows and their COPY encoding, and the
 * garbage V8 has yet to collect. Measured on an 18.7 MiB batch of 20,000 messages with 900-byte
 * strings: the parsed batch holds about 2.2 bytes per body byte and the load peaks near 4 (with a
 * parser that makes each string in one piece; lossless-json's builds strings a character at a
 * time and holds about 30 until they are flattened); 8 leaves V8 room for its garbage.
 * @internal exported for test/serve-limits.test.ts
 */
export const MEMORY_PER_BODY_BYTE = 8;

export type Refused = "busy" | "token" | "memory" | "body_timeout";

const RETRY_AFTER = "1";

const TOKEN_BUSY = (limit: number): HttpAnswer => ({
  status: 429,
  headers: { "retry-after": RETRY_AFTER },
  body: { status: "ERROR", message: `Too many batches in flight for this token (at most ${limit}); retry after 1 second` },
  code: "TOKEN_BUSY",
});

const MEMORY_BUSY: HttpAnswer = {
  status: 503,
  headers: { "retry-after": RETRY_AFTER },
  body: { status: "ERROR", message: "The server's memory budget is taken by batches in flight; retry after 1 second" },
  code: "MEMORY_BUSY",
};

const BODY_TIMEOUT = (ms: number): HttpAnswer => ({
  status: 408,
  headers: {},
  body: { error: `The request body did not arrive within ${ms / 1000} seconds` },
  code: "BODY_TIMEOUT",
});

/** An answer decided while the body is read or just after it: Fastify hands it to the error handler. */
export class Refusal extends Error {
  /** Fastify keeps a body-read error's own status when it is 4xx/5xx. */
  readonly statusCode: number;
  constructor(readonly answer: HttpAnswer) {
    super(answer.code);
    this.statusCode = answer.status;
  }
}

/** Bytes that bodies being read and batches being loaded may hold, all requests together. */
export class MemoryBudget {
  #used = 0;
  constructor(readonly limit: number) {}

  get used(): number {
    return this.#used;
  }

  tryReserve(bytes: number): boolean {
    if (bytes > 0 && this.#used + bytes > this.limit) return false;
    this.#used += bytes;
    return true;
  }

  release(bytes: number): void {
    this.#used = Math.max(0, this.#used - bytes);
  }
}

/** What one request holds. */
interface Ticket {
  /** Bytes reserved in the memory budget. */
  memory: number;
  /** Body bytes received so far. */
  received: number;
  /** A batch (takes a slot once its body is complete), not only a body to parse. */
  batch: boolean;
  /** Holds a batch slot (and one of its token's). */
  slot: boolean;
  tokenKey: unknown;
  /** Released (or the connection went away): holds nothing and may take nothing more. */
  done: boolean;
}

/** Requests without a token (--insecure-no-auth) share one per-token count. */
const NO_TOKEN = Symbol("no token");

export class Admission {
  readonly memory: MemoryBudget;
  #perToken = new Map<unknown, number>();
  #tickets = new WeakMap<FastifyRequest, Ticket>();
  #receiving = 0;

  constructor(
    readonly limits: ResolvedLimits,
    readonly gate: InFlightGate,
    private readonly maxBodyBytes: number,
    private readonly onRefused: (why: Refused) => void = () => {},
  ) {
    this.memory = new MemoryBudget(limits.maxMemoryBytes);
  }

  /** Bodies still arriving (for /metrics). */
  get receiving(): number {
    return this.#receiving;
  }

  /**
   * onRequest hook, after the token check, on the routes that read a body: reserve the declared
   * Content-Length in the memory budget before a byte of the body is read, or answer 503. A batch
   * that could not take a slot now is answered at once too, rather than after its upload (it is
   * checked again once its body is complete, and only then takes the slot).
   */
  reserveBody(batch: boolean) {
    return async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
      const tokenKey = stateOf(request).spec ?? NO_TOKEN;
      const ticket: Ticket = { memory: 0, received: 0, batch, slot: false, tokenKey, done: false };
      this.#tickets.set(request, ticket);
      // A batch that took a slot is released by its route when its load is over, not at close.
      reply.raw.once("close", () => {
        if (!ticket.slot) this.release(request);
      });
      if (batch) {
        const full = this.#slotRefusal(tokenKey);
        if (full !== null) {
          ticket.done = true;
          return this.#refuse(reply, full.why, full.answer);
        }
      }
      const declared = Number(request.headers["content-length"]);
      // Over the body limit: Fastify answers 413 before reading; nothing to reserve.
      if (!Number.isSafeInteger(declared) || declared <= 0 || declared > this.maxBodyBytes) return undefined;
      if (!this.#reserve(ticket, Math.min(declared, this.memory.limit))) return this.#refuse(reply, "memory", MEMORY_BUSY);
      return undefined;
    };
  }

  /**
   * preParsing hook (every route): the body must arrive within the body timeout, and a body
   * without Content-Length reserves memory as it streams.
   */
  guardBody() {
    return async (request: FastifyRequest, reply: FastifyReply, payload: NodeJS.ReadableStream) => {
      // No body to wait for (e.g. a GET): nothing to time.
      if (request.headers["content-length"] === undefined && request.headers["transfer-encoding"] === undefined) return payload;
      const ticket = this.#tickets.get(request);
      this.#receiving++;
      let counted = true;
      const stopCounting = () => {
        if (counted) this.#receiving--;
        counted = false;
        clearTimeout(timer);
      };
      const guard = new Transform({
        transform: (chunk: Buffer, _encoding, callback: TransformCallback) => {
          if (ticket !== undefined) {
            ticket.received += chunk.length;
            if (ticket.received > ticket.memory && !this.#reserve(ticket, ticket.received - ticket.memory)) {
              this.onRefused("memory");
              callback(new Refusal(MEMORY_BUSY));
              return;
            }
          }
          callback(null, chunk);
        },
        flush: (callback: TransformCallback) => {
          stopCounting();
          // The body is complete: admit it before Fastify joins and decodes it.
          const refused = ticket === undefined ? null : this.#admit(ticket);
          callback(refused === null ? null : new Refusal(refused));
        },
      });
      const timer = setTimeout(() => {
        this.onRefused("body_timeout");
        guard.destroy(new Refusal(BODY_TIMEOUT(this.limits.bodyTimeoutMs)));
      }, this.limits.bodyTimeoutMs);
      guard.once("close", () => {
        stopCounting();
        // Refused mid-body: stop feeding the guard, let Node discard the rest until the
        // lingering close (src/server/linger.ts) ends the connection.
        payload.unpipe(guard);
        payload.resume();
      });
      // The client went away (or its body was cut): end the guard with the same error.
      payload.once("error", (e: Error) => guard.destroy(e));
      payload.once("aborted", () => guard.destroy(new Error("the client closed the connection mid-body")));
      // Answered without reading the body (e.g. 413 on its Content-Length): stop the clock.
      reply.raw.once("close", () => guard.destroy());
      payload.pipe(guard);
      return guard;
    };
  }

  /** Why a batch of this token could not take a slot now, or null. */
  #slotRefusal(tokenKey: unknown): { why: Refused; answer: HttpAnswer } | null {
    // The server full is the server's answer (503); a token at its share is the token's (429).
    if (this.gate.active >= this.gate.limit) return { why: "busy", answer: BUSY };
    if ((this.#perToken.get(tokenKey) ?? 0) >= this.limits.maxInFlightPerToken) {
      return { why: "token", answer: TOKEN_BUSY(this.limits.maxInFlightPerToken) };
    }
    return null;
  }

  /**
   * Once the body is complete, before it is joined and parsed: take what parsing and loading it
   * will cost, and for a batch a slot (the server's and its token's). Null = admitted.
   */
  #admit(ticket: Ticket): HttpAnswer | null {
    if (ticket.done) return MEMORY_BUSY; // the client is gone; nobody reads this answer
    if (ticket.batch) {
      const full = this.#slotRefusal(ticket.tokenKey);
      if (full !== null) {
        this.onRefused(full.why);
        return full.answer;
      }
      if (!this.gate.tryAcquire()) throw new Error("InFlightGate refused a free slot (a seqload bug)");
      ticket.slot = true;
      this.#perToken.set(ticket.tokenKey, (this.#perToken.get(ticket.tokenKey) ?? 0) + 1);
    }
    const cost = Math.min(ticket.received * MEMORY_PER_BODY_BYTE, this.memory.limit);
    if (cost > ticket.memory && !this.#reserve(ticket, cost - ticket.memory)) {
      this.#releaseSlot(ticket);
      this.onRefused("memory");
      return MEMORY_BUSY;
    }
    return null;
  }

  /** Give back everything the request holds. Called at the end of its exchange and its load; idempotent. */
  release(request: FastifyRequest): void {
    const ticket = this.#tickets.get(request);
    if (ticket === undefined || ticket.done) return;
    ticket.done = true;
    this.#releaseSlot(ticket);
    this.memory.release(ticket.memory);
    ticket.memory = 0;
  }

  #releaseSlot(ticket: Ticket): void {
    if (!ticket.slot) return;
    ticket.slot = false;
    this.gate.release();
    const held = (this.#perToken.get(ticket.tokenKey) ?? 1) - 1;
    if (held <= 0) this.#perToken.delete(ticket.tokenKey);
    else this.#perToken.set(ticket.tokenKey, held);
  }

  #reserve(ticket: Ticket, bytes: number): boolean {
    if (ticket.done || !this.memory.tryReserve(bytes)) return false;
    ticket.memory += bytes;
    return true;
  }

  #refuse(reply: FastifyReply, why: Refused, answer: HttpAnswer): FastifyReply {
    this.onRefused(why);
    return sendAnswer(reply, answer);
  }
}
