/** The human-readable table the bench prints. */
import type { LoadResult } from "../../src/index.js";
import type { LatencySummary } from "./stats.js";

export type LoadCounts = Omit<LoadResult, "table">;

export interface Measurement {
  /** "ref", "a" … "g". */
  case: string;
  method: string;
  rows: number;
  seconds: number;
  rowsPerSec: number;
  /** rows/s ÷ raw COPY rows/s (the limit). */
  vsCopy: number | null;
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
const fmtRatio = (r: number | null): string => (r === null ? "" : r.toFixed(2));

export function measurementTable(ms: Measurement[]): string {
  const header = [
    "case",
    "method",
    "rows",
    "s",
    "rows/s",
    "×COPY",
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
  const right = new Set([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
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

export interface TargetCheck {
  target: string;
  value: string;
  met: boolean | null;
}

/**
 * Issue 5's targets, judged on this run. For (a)–(d) the better of seqload's two batchings counts.
 * met = null when the case did not run.
 */
export function targetChecks(ms: Measurement[]): TargetCheck[] {
  const out: TargetCheck[] = [];
  const seq = (c: string) =>
    ms.filter((m) => m.case === c && m.method.startsWith("seqload")).sort((x, y) => y.rowsPerSec - x.rowsPerSec)[0];
  const copyMin: Record<string, number> = { a: 0.9, b: 0.6, c: 0.45, d: 0.75 };
  for (const [c, min] of Object.entries(copyMin)) {
    const m = seq(c);
    out.push({
      target: `(${c}) ≥ ${min.toFixed(2)} × raw COPY`,
      value: m?.vsCopy?.toFixed(2) ?? "—",
      met: m?.vsCopy == null ? null : m.vsCopy >= min,
    });
  }
  for (const c of ["a", "b", "c", "d", "e", "f"]) {
    const m = seq(c);
    out.push({
      target: `(${c}) ≥ 2 × kysely baseline`,
      value: m?.vsKysely?.toFixed(2) ?? "—",
      met: m?.vsKysely == null ? null : m.vsKysely >= 2,
    });
  }
  const e = seq("e");
  out.push({
    target: "(e) p50 ≤ 3 ms per 100-message batch",
    value: e?.latency ? `${e.latency.p50Ms.toFixed(2)} ms` : "—",
    met: e?.latency ? e.latency.p50Ms <= 3 : null,
  });
  const g = ms.find((m) => m.case === "g");
  out.push({
    target: "peak RSS ≤ 300 MB, CLI loading 1,000,000 messages (JSON Lines)",
    value:
      g && g.rows >= 1_000_000 ? `${g.peakRssMb} MB` : g ? `${g.peakRssMb} MB at ${g.rows.toLocaleString("en-US")} messages (not 1M)` : "—",
    met: g && g.rows >= 1_000_000 ? g.peakRssMb <= 300 : null,
  });
  return out;
}

export function targetTable(checks: TargetCheck[]): string {
  const w = Math.max(...checks.map((c) => c.target.length));
  const v = Math.max(...checks.map((c) => c.value.length));
  return checks
    .map((c) => `  ${c.target.padEnd(w)}  ${c.value.padStart(v)}  ${c.met === null ? "not measured" : c.met ? "met" : "NOT met"}`)
    .join("\n");
}
