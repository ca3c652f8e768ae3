/** Timing, percentiles and memory sampling for the bench. */
import { performance } from "node:perf_hooks";
import { type ServerCpu, clientCpu } from "./cpu.js";

export interface Timed<T> {
  seconds: number;
  value: T;
  /** Highest RSS sampled during the section, in MB. */
  peakRssMb: number;
  /** CPU seconds of this Node process during the section. */
  clientCpuS: number;
  /** CPU seconds of the PostgreSQL server during the section (null: not visible from here). */
  serverCpuS: number | null;
}

let serverCpu: ServerCpu | null = null;

/** Make timed() also report the server's CPU time (see cpu.ts). */
export function useServerCpuMeter(meter: ServerCpu | null): void {
  serverCpu = meter;
}

const mb = (bytes: number): number => Math.round(bytes / 1048576);

/** Process-lifetime peak RSS (process.resourceUsage().maxRSS is in KiB), in MB. */
export function maxRssMb(): number {
  return Math.round(process.resourceUsage().maxRSS / 1024);
}

export function rssMb(): number {
  return mb(process.memoryUsage.rss());
}

const round2 = (x: number): number => Math.round(x * 100) / 100;

/** Run `fn` and time it; RSS is sampled every 20 ms meanwhile (maxRSS cannot be reset per section). */
export async function timed<T>(fn: () => Promise<T>): Promise<Timed<T>> {
  let peak = process.memoryUsage.rss();
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 20);
  const server0 = serverCpu === null ? null : await serverCpu();
  const client0 = clientCpu();
  const start = performance.now();
  try {
    const value = await fn();
    const seconds = (performance.now() - start) / 1000;
    const clientCpuS = round2(clientCpu() - client0);
    const serverCpuS = serverCpu === null || server0 === null ? null : round2((await serverCpu()) - server0);
    peak = Math.max(peak, process.memoryUsage.rss());
    return { seconds, value, peakRssMb: mb(peak), clientCpuS, serverCpuS };
  } finally {
    clearInterval(sampler);
  }
}

/** Nearest-rank percentile of sorted samples. */
function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] as number;
}

export interface LatencySummary {
  batches: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  maxMs: number;
}

export function summarize(samplesMs: number[]): LatencySummary {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const sum = sorted.reduce((s, x) => s + x, 0);
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return {
    batches: sorted.length,
    p50Ms: r(percentile(sorted, 50)),
    p99Ms: r(percentile(sorted, 99)),
    meanMs: r(sum / sorted.length),
    maxMs: r(sorted.at(-1) ?? Number.NaN),
  };
}
