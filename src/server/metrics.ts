/**
 * `GET /metrics`: what `seqload serve` has done and holds, in Prometheus' text format (prom-client,
 * its naming conventions: counters end in `_total`, durations are in `_seconds`). It needs no
 * token and carries no secret: tokens, URLs and client data never become a label; table names do,
 * at most MAX_TABLES of them (the rest are counted under table="_other").
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { LoadResult } from "../types.js";
import type { Refused } from "./admission.js";

/** What became of a batch request, from the client's side. */
export type BatchOutcome = "accepted" | "invalid" | "refused" | "failed" | "timeout" | "unauthorized" | "aborted";

/** Read at scrape time; the functions are called unbound. */
export interface MetricsSources {
  pool: () => { totalCount: number; idleCount: number; waitingCount: number };
  inFlight: () => number;
  receiving: () => number;
  memoryReserved: () => number;
  memoryBudget: number;
}

export interface BatchDone {
  /** Final HTTP status, or null when the client went away before the answer. */
  status: number | null;
  /** The answer's code (e.g. BUSY, TOKEN_BUSY, BODY_TIMEOUT), if any. */
  code: string | undefined;
  schema: string | null;
  table: string | null;
  /** Messages in the body (0 when it was never read). */
  messages: number;
  result: LoadResult | null;
  seconds: number;
}

const MAX_TABLES = 1000;
const REFUSED_CODES = new Set(["BUSY", "TOKEN_BUSY", "MEMORY_BUSY", "SHUTTING_DOWN"]);
const ROW_RESULTS = ["inserted", "updated", "deleted", "skipped", "rejected"] as const;

/** The outcome label for a finished batch request. */
function outcomeOf(done: Pick<BatchDone, "status" | "code" | "result">): BatchOutcome {
  if (done.result !== null) return "accepted"; // committed, even if the client left before the 201
  if (done.status === null) return "aborted";
  if (done.status === 401) return "unauthorized";
  if (done.status === 408) return "timeout";
  if (done.code !== undefined && REFUSED_CODES.has(done.code)) return "refused";
  if (done.status >= 500) return "failed";
  return "invalid";
}

export class ServerMetrics {
  readonly registry = new Registry();
  readonly #tables = new Set<string>();
  readonly #batches: Counter<"schema" | "table" | "outcome">;
  readonly #messages: Counter<"schema" | "table" | "outcome">;
  readonly #rows: Counter<"schema" | "table" | "result">;
  readonly #duration: Histogram<"outcome">;
  readonly #refused: Counter<"reason">;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.#batches = new Counter({
      name: "seqload_batches_total",
      help: "Batch requests by outcome (accepted, invalid, refused, failed, timeout, unauthorized, aborted) and target table",
      labelNames: ["schema", "table", "outcome"],
      registers,
    });
    this.#messages = new Counter({
      name: "seqload_messages_total",
      help: "Messages in batch requests, by outcome and target table",
      labelNames: ["schema", "table", "outcome"],
      registers,
    });
    this.#rows = new Counter({
      name: "seqload_rows_total",
      help: "Messages applied by committed batches: inserted, updated, deleted, skipped (an as-new or newer version was stored), rejected",
      labelNames: ["schema", "table", "result"],
      registers,
    });
    this.#duration = new Histogram({
      name: "seqload_batch_duration_seconds",
      help: "Batch request latency, from its headers to its answer and the end of its load",
      labelNames: ["outcome"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.#refused = new Counter({
      name: "seqload_refused_total",
      help: "Requests refused by a limit: busy (all batch slots), token (the token's slots), memory (the budget), body_timeout",
      labelNames: ["reason"],
      registers,
    });
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    gauge("seqload_batches_in_flight", "Batches holding a slot: admitted, loading or being answered", sources.inFlight);
    gauge("seqload_bodies_receiving", "Request bodies still arriving", sources.receiving);
    gauge("seqload_memory_reserved_bytes", "Memory budget reserved by bodies being read and batches being loaded", sources.memoryReserved);
    gauge("seqload_memory_budget_bytes", "The memory budget (--max-memory-mb)", () => sources.memoryBudget);
    gauge("seqload_pool_connections", "PostgreSQL connections open in the pool", () => sources.pool().totalCount);
    gauge("seqload_pool_idle_connections", "PostgreSQL connections open and idle", () => sources.pool().idleCount);
    gauge("seqload_pool_waiting_clients", "Queries waiting for a PostgreSQL connection", () => sources.pool().waitingCount);
  }

  /** Count a finished batch request (called once, when both its answer and its load are over). */
  batch(done: BatchDone): void {
    const outcome = outcomeOf(done);
    const labels = { schema: done.schema ?? "", table: this.#tableLabel(done.schema ?? "", done.table), outcome };
    this.#batches.inc(labels);
    if (done.messages > 0) this.#messages.inc(labels, done.messages);
    this.#duration.observe({ outcome }, done.seconds);
    if (done.result !== null) {
      const counts = done.result as unknown as Record<string, unknown>;
      for (const result of ROW_RESULTS) {
        const n = counts[result];
        if (typeof n === "number" && n > 0) this.#rows.inc({ schema: labels.schema, table: labels.table, result }, n);
      }
    }
  }

  refused(why: Refused): void {
    this.#refused.inc({ reason: why });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  #tableLabel(schema: string, table: string | null): string {
    if (table === null) return "";
    const key = `${schema}.${table}`;
    if (this.#tables.has(key)) return table;
    // Table names come from clients: bound the number of series they can create.
    if (this.#tables.size >= MAX_TABLES || Buffer.byteLength(table) > 63) return "_other";
    this.#tables.add(key);
    return table;
  }
}
