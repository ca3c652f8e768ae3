/** The human-readable table the bench prints. */
import type { LoadResult } from "../../src/index.js";
import type { LatencySummary } from "./stats.js";
import { cliVsLibrary } from "./cli.js";

export type LoadCounts = Omit<LoadResult, "table">;

export interface Measurement {
  /** "ref", "a" … "g". */
  case: string;
  method: string;
  rows: number;
  seconds: number;
  rowsPerSec: number;
  /** rows/s ÷ raw COPY rows/s (the limit), raw COPY in the same key order as the case's data. */
  vsCopy: number | null;
  /** rows/s ÷ raw COPY rows/s of the same rows in the other key order (cases (a)–(d) only). */
  vsCopyOtherOrder?: number | null;
  /** rows/s ÷ the staged upsert in plain SQL of the same case (cases (b)–(d) only). */
  vsFloor?: number | null;
  /** rows/s ÷ kysely baseline rows/s of the same case. */
  vsKysely: number | null;
  /** Highest RSS sampled during the timed section. */
  peakRssMb: number;
  /** CPU seconds of the bench's Node process during the timed section. */
  clientCpuS: number | null;
  /** CPU seconds of PostgreSQL during the timed section (null when not on this host). */
  serverCpuS: number | null;
  latency?: LatencySummary;
  counts?: LoadCounts;
  /** "ok" or what is wrong with the resulting table. */
  check?: string;
  note?: string;
}

const fmtInt = (n: number): string => Math.round(n).toLocaleString("en-US");
const fmtRatio = (r: number | null | undefined): string => (r === null || r === undefined ? "" : r.toFixed(2));

/** Key order of raw COPY: the order of the cases' data, and the other one. */
export type KeyOrder = "shuffled" | "in order";
export const otherOrder = (o: KeyOrder): KeyOrder => (o === "shuffled" ? "in order" : "shuffled");

/** `otherOrder`: the key order of the second raw COPY reference, named in its ratio column's header. */
export function measurementTable(ms: Measurement[], other: KeyOrder): string {
  const header = [
    "case",
    "method",
    "rows",
    "s",
    "rows/s",
    "×COPY",
    `×COPY ${other}`,
    "×floor",
    "×kysely",
    "p50 ms",
    "p99 ms",
    "Node cpu s",
    "PG cpu s",
    "RSS MB",
    "check",
    "note",
  ];
  const lines = ms.map((m) => [
    m.case,
    m.method,
    fmtInt(m.rows),
    m.seconds.toFixed(2),
    fmtInt(m.rowsPerSec),
    fmtRatio(m.vsCopy),
    fmtRatio(m.vsCopyOtherOrder),
    fmtRatio(m.vsFloor),
    fmtRatio(m.vsKysely),
    m.latency ? m.latency.p50Ms.toFixed(2) : "",
    m.latency ? m.latency.p99Ms.toFixed(2) : "",
    m.clientCpuS === null ? "" : m.clientCpuS.toFixed(2),
    m.serverCpuS === null ? "" : m.serverCpuS.toFixed(2),
    String(m.peakRssMb),
    m.check ?? "",
    m.note ?? "",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] as string).length)));
  const right = new Set([2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
  const row = (cells: string[]) =>
    cells.map((c, i) => (right.has(i) ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number))).join("  ");
  const out = [row(header), widths.map((w) => "-".repeat(w)).join("  ")];
  let last = "";
  for (const [i, l] of lines.entries()) {
    const c = ms[i]?.case ?? "";
    if (last !== "" && c !== last) out.push("");
    last = c;
    out.push(row(l));
  }
  return out.join("\n");
}

/**
 * For cases (a)–(d), whose data share the bench's key order: the ratio to raw COPY of the same
 * rows in the other key order, next to ×COPY (which uses the same order as the data).
 */
export function addOtherOrderRatios(ms: Measurement[], otherCopyRowsPerSec: number | null): void {
  if (otherCopyRowsPerSec === null) return;
  for (const m of ms) {
    if (!["a", "b", "c", "d"].includes(m.case) || m.method.startsWith("raw COPY")) continue;
    m.vsCopyOtherOrder = Math.round((m.rowsPerSec / otherCopyRowsPerSec) * 100) / 100;
  }
}

export interface TargetCheck {
  /** The issue that set the target. */
  issue: 5 | 15;
  target: string;
  value: string;
  /** null: not judged (the case did not run, or the target compares with an earlier run). */
  met: boolean | null;
  /** Printed instead of "not measured" when met is null although the figure was measured. */
  note?: string;
}

/** seqload's fastest measurement of a case (for (a)–(d) the better of its two batchings). */
function bestSeqload(ms: Measurement[], c: string): Measurement | undefined {
  return ms.filter((m) => m.case === c && m.method.startsWith("seqload")).sort((x, y) => y.rowsPerSec - x.rowsPerSec)[0];
}

/**
 * Issue 5's and issue 15's targets, judged on this run. For (a)–(d) the better of seqload's two
 * batchings counts. met = null when the case did not run. `order` is the key order of the cases'
 * data: ×COPY uses raw COPY in that order; the ratio to the other order is shown beside it.
 */
export function targetChecks(ms: Measurement[], order: KeyOrder, http: HttpRatio | null = null): TargetCheck[] {
  const out: TargetCheck[] = [];
  const seq = (c: string) => bestSeqload(ms, c);
  const copyMin: Record<string, number> = { a: 0.9, b: 0.6, c: 0.45, d: 0.75 };
  for (const [c, min] of Object.entries(copyMin)) {
    const m = seq(c);
    out.push({
      issue: 5,
      target: `(${c}) ≥ ${min.toFixed(2)} × raw COPY`,
      value: m?.vsCopy?.toFixed(2) ?? "—",
      met: m?.vsCopy == null ? null : m.vsCopy >= min,
    });
  }
  for (const c of ["a", "b", "c", "d", "e", "f"]) {
    const m = seq(c);
    out.push({
      issue: 5,
      target: `(${c}) ≥ 2 × kysely baseline`,
      value: m?.vsKysely?.toFixed(2) ?? "—",
      met: m?.vsKysely == null ? null : m.vsKysely >= 2,
    });
  }
  const e = seq("e");
  out.push({
    issue: 5,
    target: "(e) p50 ≤ 3 ms per 100-message batch",
    value: e?.latency ? `${e.latency.p50Ms.toFixed(2)} ms` : "—",
    met: e?.latency ? e.latency.p50Ms <= 3 : null,
  });
  const g = ms.find((m) => m.case === "g");
  out.push({
    issue: 5,
    target: "peak RSS ≤ 300 MB, CLI loading 1,000,000 messages (JSON Lines)",
    value:
      g && g.rows >= 1_000_000 ? `${g.peakRssMb} MB` : g ? `${g.peakRssMb} MB at ${g.rows.toLocaleString("en-US")} messages (not 1M)` : "—",
    met: g && g.rows >= 1_000_000 ? g.peakRssMb <= 300 : null,
  });
  out.push(...issue15Checks(ms, order, http));
  return out;
}

/** What the HTTP bench (bench/http.ts, run by bench.ts's http hook) measured, for issue 15's target. */
export interface HttpRatio {
  httpBatchesPerSec: number;
  libraryBatchesPerSec: number;
}

/** Issue 15's targets for the bulk cases, in case order; (a), (e), (f) compare with an earlier run, so only their figures. */
function issue15Checks(ms: Measurement[], order: KeyOrder, http: HttpRatio | null): TargetCheck[] {
  const other = otherOrder(order);
  const figureOnly = "figure only: compare with an earlier run";
  const vsCopy = (c: "b" | "d", min: number, what: string): TargetCheck => {
    const m = bestSeqload(ms, c);
    return {
      issue: 15,
      target: `(${c}) ${what} ≥ ${min.toFixed(2)} × raw COPY (keys ${order}, as the data)`,
      value: m?.vsCopy == null ? "—" : `${m.vsCopy.toFixed(2)} (${fmtRatio(m.vsCopyOtherOrder) || "—"} × COPY keys ${other})`,
      met: m?.vsCopy == null ? null : m.vsCopy >= min,
    };
  };
  const figure = (id: "a" | "f"): TargetCheck => {
    const m = bestSeqload(ms, id);
    return {
      issue: 15,
      target: `(${id}) nothing slower than before`,
      value: m === undefined ? "—" : `${fmtInt(m.rowsPerSec)} rows/s${m.vsCopy === null ? "" : `, ×COPY ${m.vsCopy.toFixed(2)}`}`,
      met: null,
      ...(m === undefined ? {} : { note: figureOnly }),
    };
  };
  const c = bestSeqload(ms, "c");
  const floor = ms.find((m) => m.case === "c" && m.method.startsWith("staged upsert"));
  const e = bestSeqload(ms, "e");
  const cli = cliVsLibrary(ms);
  const cliRows = ms.find((m) => m.case === "g")?.rows ?? 0;
  const httpRatio = http === null || http.libraryBatchesPerSec <= 0 ? null : http.httpBatchesPerSec / http.libraryBatchesPerSec;
  return [
    figure("a"),
    vsCopy("b", 0.7, "new keys into a filled table"),
    {
      issue: 15,
      target: "(c) updates ≥ 0.90 × the staged-upsert floor in plain SQL (same run, same data)",
      value: c?.vsFloor == null || floor === undefined ? "—" : `${c.vsFloor.toFixed(2)} (floor ${fmtInt(floor.rowsPerSec)} rows/s)`,
      met: c?.vsFloor == null ? null : c.vsFloor >= 0.9,
    },
    vsCopy("d", 0.75, "stale replays"),
    {
      issue: 15,
      target: "(e) nothing slower than before",
      value: e?.latency
        ? `p50 ${e.latency.p50Ms.toFixed(2)} ms, p99 ${e.latency.p99Ms.toFixed(2)} ms, ${fmtInt(e.rowsPerSec)} rows/s`
        : "—",
      met: null,
      ...(e?.latency ? { note: figureOnly } : {}),
    },
    figure("f"),
    {
      issue: 15,
      target: "CLI ≥ 0.90 × the library's msgs/s on the same batches (case (g), 20,000-message JSON Lines)",
      // At a --quick size the CLI's start-up (node, imports, connecting) outweighs the batches.
      value: cli === null ? "—" : cliRows >= 1_000_000 ? cli.toFixed(2) : `${cli.toFixed(2)} at ${fmtInt(cliRows)} messages (not 1M)`,
      met: cli === null || cliRows < 1_000_000 ? null : cli >= 0.9,
      ...(cli !== null && cliRows < 1_000_000 ? { note: "not judged below 1,000,000 messages" } : {}),
    },
    {
      issue: 15,
      target: "HTTP, 8 clients × 1,000-message batches ≥ 0.80 × the library with 8 concurrent calls",
      value: httpRatio === null ? "—" : `${httpRatio.toFixed(2)} (${http?.httpBatchesPerSec} / ${http?.libraryBatchesPerSec} batches/s)`,
      met: httpRatio === null ? null : httpRatio >= 0.8,
    },
  ];
}

export function targetTable(checks: TargetCheck[]): string {
  const w = Math.max(...checks.map((c) => c.target.length));
  const v = Math.max(...checks.map((c) => c.value.length));
  return checks
    .map(
      (c) => `  ${c.target.padEnd(w)}  ${c.value.padStart(v)}  ${c.met === null ? (c.note ?? "not measured") : c.met ? "met" : "NOT met"}`,
    )
    .join("\n");
}
