/** What every case of the bench shares: the run's context, recording a measurement, and table helpers. */
import type pg from "pg";
import type { LoadResult, Loader } from "../../src/index.js";
import type { BenchOptions } from "./args.js";
import { copyInto } from "./copy.js";
import { SEQUENCE_BASE, VERSION_STEP } from "./data.js";
import { createTableSql, dropTable, qualified } from "./db.js";
import type { LoadCounts, Measurement } from "./report.js";
import type { Timed } from "./stats.js";

export const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};
export const fmt = (n: number): string => n.toLocaleString("en-US");

export interface Context {
  opts: BenchOptions;
  pool: pg.Pool;
  connectionString: string;
  loader: Loader;
  measurements: Measurement[];
  /** rows/s of raw COPY (encode + stream), the denominator of ×COPY. */
  copyRowsPerSec: number | null;
}

/**
 * Add a measurement. ×COPY divides by `copyRowsPerSec`: the bulk raw COPY by default; case (e)
 * passes its own 100-rows-per-COPY figure, the limit for batches that small.
 */
export function record(
  ctx: Context,
  m: Omit<Measurement, "rowsPerSec" | "vsCopy" | "vsKysely">,
  kyselyRowsPerSec: number | null,
  copyRowsPerSec = ctx.copyRowsPerSec,
): Measurement {
  const rowsPerSec = m.rows / m.seconds;
  const full: Measurement = {
    ...m,
    seconds: Math.round(m.seconds * 1000) / 1000,
    rowsPerSec: Math.round(rowsPerSec),
    vsCopy: copyRowsPerSec === null || m.case === "ref" || m.method.startsWith("raw COPY") ? null : round2(rowsPerSec / copyRowsPerSec),
    vsKysely: kyselyRowsPerSec === null ? null : round2(rowsPerSec / kyselyRowsPerSec),
  };
  ctx.measurements.push(full);
  const lat = full.latency ? `, p50 ${full.latency.p50Ms} ms, p99 ${full.latency.p99Ms} ms` : "";
  log(
    `  ${m.case} ${m.method}: ${m.seconds.toFixed(2)} s, ${fmt(full.rowsPerSec)} rows/s${full.vsCopy === null ? "" : `, ×COPY ${full.vsCopy}`}${full.vsKysely === null ? "" : `, ×kysely ${full.vsKysely}`}${lat}${m.check && m.check !== "ok" ? `  CHECK FAILED: ${m.check}` : ""}`,
  );
  return full;
}

export const round2 = (x: number): number => Math.round(x * 100) / 100;

/**
 * Run one measurement `repeat` times and keep the fastest run (other load on a shared machine only
 * ever adds time); a failed check in any run is reported. `once` sets up, times, checks and cleans up.
 */
export async function bestOf<T>(
  repeat: number,
  once: (rep: number) => Promise<{ t: Timed<T>; check: string }>,
): Promise<{ t: Timed<T>; check: string; runs: number[] }> {
  let best: Timed<T> | null = null;
  let check = "ok";
  const runs: number[] = [];
  for (let rep = 0; rep < repeat; rep++) {
    const r = await once(rep);
    runs.push(Math.round(r.t.seconds * 100) / 100);
    if (r.check !== "ok") check = r.check;
    if (best === null || r.t.seconds < best.seconds) best = r.t;
  }
  return { t: best as Timed<T>, check, runs };
}

export const runsNote = (runs: number[]): string | undefined => (runs.length > 1 ? `best of ${runs.join(" / ")} s` : undefined);

/** The cost fields of a measurement from a timed section. */
export function cost(t: Timed<unknown>): Pick<Measurement, "seconds" | "peakRssMb" | "clientCpuS" | "serverCpuS"> {
  return { seconds: t.seconds, peakRssMb: t.peakRssMb, clientCpuS: t.clientCpuS, serverCpuS: t.serverCpuS };
}

export function sumCounts(results: LoadResult[]): LoadCounts {
  const c: LoadCounts = { received: 0, collapsed: 0, inserted: 0, updated: 0, deleted: 0, skipped: 0, rejected: 0 };
  for (const r of results) {
    c.received += r.received;
    c.collapsed += r.collapsed;
    c.inserted += r.inserted;
    c.updated += r.updated;
    c.deleted += r.deleted;
    c.skipped += r.skipped;
    c.rejected += r.rejected;
  }
  return c;
}

export async function withClient<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    return await fn(client);
  } finally {
    client.release();
  }
}

export async function createTable(pool: pg.Pool, table: string, prefill: readonly string[] | null): Promise<void> {
  await dropTable(pool, table);
  await pool.query(createTableSql(table));
  if (prefill !== null) await withClient(pool, (c) => copyInto(c, qualified(table), prefill));
}

/** Rows in the table, and rows carrying a sequence of data-set version ≥ 1. */
export async function tableState(pool: pg.Pool, table: string): Promise<{ rows: number; newer: number }> {
  const r = await pool.query<{ n: string; v1: string }>(
    `SELECT count(*) AS n, count(*) FILTER (WHERE "_sequence" >= $1) AS v1 FROM ${qualified(table)}`,
    [(SEQUENCE_BASE + VERSION_STEP).toString()],
  );
  return { rows: Number(r.rows[0]?.n), newer: Number(r.rows[0]?.v1) };
}
