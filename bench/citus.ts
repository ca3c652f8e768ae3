/**
 * `npm run bench:citus [-- --rows N] [-- --parallel-rows N]`: cases (a)–(d) and (f) of the bench on a
 * local Citus cluster (a coordinator and two workers, from ../shared/citus or SEQLOAD_CITUS_DIR) and,
 * in the same run, on a single node: a database on the same coordinator server without the citus
 * extension (same binaries, settings and cores). Prints one table with both, then one JSON line.
 *   (a) N new rows into a new table (one batch: the new-table path, distributed then COPY)
 *   (b) N new keys into a table holding N other keys (10 batches: COPY-staged, RETURNING counts)
 *   (c) N updates with higher sequences (10 batches)
 *   (d) N stale replays (10 batches: the pre-filter)
 *   (f) 8 loaders in parallel on shared keys, batches of 1,000 (final state checked key by key)
 * The three Citus nodes share this machine's cores with the client: these are correctness-at-scale
 * figures (exact counts, every key at its highest sequence), not a speed claim for a real cluster.
 * --cached-conns N sets citus.max_cached_conns_per_worker for the Citus database (default 16).
 * Needs Citus installed into PostgreSQL 15 (bash ../shared/citus/install.sh, as root).
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import pg from "pg";
import { type Batch, type LoadResult, createLoader } from "../src/index.js";
import { type BenchMessage, benchSchema, contendedStreams, dataSet, permutation, toBatches } from "./lib/data.js";
import { sumCounts } from "./lib/context.js";

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : dflt;
  if (!Number.isInteger(v) || v <= 0) throw new Error(`--${name} must be a positive integer`);
  return v;
};
const ROWS = arg("rows", 100_000);
const PARALLEL_ROWS = arg("parallel-rows", 100_000);
const WRITERS = 8;
const CACHED_CONNS = arg("cached-conns", 16);
const fmt = (n: number) => n.toLocaleString("en-US");

interface Figure {
  target: "single node" | "citus";
  case: string;
  rows: number;
  seconds: number;
  rowsPerSec: number;
  counts: Omit<LoadResult, "table">;
  check: string;
}

async function runCases(target: Figure["target"], url: string): Promise<Figure[]> {
  const figures: Figure[] = [];
  const loader = await createLoader({ connectionString: url, poolSize: 4 });
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  const load = async (name: string, rows: number, batches: Batch[], expect: Partial<Omit<LoadResult, "table">>) => {
    const t0 = performance.now();
    const results: LoadResult[] = [];
    for (const b of batches) results.push(await loader.loadBatch(b));
    const seconds = (performance.now() - t0) / 1000;
    const counts = sumCounts(results);
    const wrong = Object.entries(expect).filter(([k, v]) => counts[k as keyof typeof counts] !== v);
    const check =
      wrong.length === 0 ? "ok" : `counts off: ${wrong.map(([k, v]) => `${k} ${counts[k as keyof typeof counts]} ≠ ${v}`).join(", ")}`;
    figures.push({ target, case: name, rows, seconds, rowsPerSec: Math.round(rows / seconds), counts, check });
    console.log(
      `  ${target.padEnd(11)} ${name.padEnd(40)} ${seconds.toFixed(2).padStart(7)} s ${fmt(Math.round(rows / seconds)).padStart(9)} rows/s  ${check}`,
    );
  };
  try {
    const order = permutation(ROWS, 42);
    const tenths = (table: string, messages: BenchMessage[]) => toBatches(table, messages, Math.ceil(ROWS / 10));
    await loader.loadBatch({
      table_name: "warmup",
      key_names: ["id"],
      schema: benchSchema(),
      messages: dataSet(10, { version: 0, parity: 0, order: null }),
    });
    const a = dataSet(ROWS, { version: 0, parity: 0, order });
    await load("(a) new rows into a new table", ROWS, toBatches("a", a, ROWS), { inserted: ROWS });
    await loader.loadBatch(toBatches("b", dataSet(ROWS, { version: 0, parity: 1, order }), ROWS)[0]);
    await load("(b) new keys into a table of as many", ROWS, tenths("b", a), { inserted: ROWS });
    await load("(c) updates, higher sequences", ROWS, tenths("a", dataSet(ROWS, { version: 1, parity: 0, order })), { updated: ROWS });
    await load("(d) stale replays", ROWS, tenths("a", dataSet(ROWS, { version: 1, parity: 0, order })), { skipped: ROWS });

    // (f): WRITERS loaders, each with its own pool, racing on shared keys.
    const keys = Math.max(1000, Math.floor(PARALLEL_ROWS / 5));
    const { streams, winners } = contendedStreams(PARALLEL_ROWS, keys, WRITERS, 20240601);
    const writers = await Promise.all(Array.from({ length: WRITERS }, () => createLoader({ connectionString: url, poolSize: 2 })));
    await Promise.all(
      writers.map((w, i) =>
        w.loadBatch({
          table_name: "warmup",
          key_names: ["id"],
          schema: benchSchema(),
          messages: [{ action: "upsert", sequence: i + 100, data: { id: i } }],
        }),
      ),
    );
    await loader.loadBatch({
      table_name: "f",
      key_names: ["id"],
      schema: benchSchema(),
      messages: [{ action: "upsert", sequence: 0, data: { id: -1 } }],
    });
    const t0 = performance.now();
    const results = await Promise.all(
      writers.map(async (w, i) => {
        const out: LoadResult[] = [];
        for (const b of toBatches("f", streams[i] as BenchMessage[], 1000)) out.push(await w.loadBatch(b));
        return out;
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    await Promise.all(writers.map((w) => w.close()));
    const stored = await pool.query<{ id: string; seq: string }>(`SELECT id::text, _sequence::text AS seq FROM "f" WHERE id >= 0`);
    let wrong = stored.rows.length === winners.size ? 0 : Math.abs(stored.rows.length - winners.size);
    for (const r of stored.rows) if (winners.get(Number(r.id))?.sequence.toString() !== r.seq) wrong++;
    const counts = sumCounts(results.flat());
    const check =
      wrong > 0
        ? `${fmt(wrong)} keys wrong`
        : counts.inserted !== winners.size
          ? "inserted ≠ keys"
          : "ok: every key at its highest sequence";
    figures.push({
      target,
      case: `(f) ${WRITERS} loaders racing`,
      rows: PARALLEL_ROWS,
      seconds,
      rowsPerSec: Math.round(PARALLEL_ROWS / seconds),
      counts,
      check,
    });
    console.log(
      `  ${target.padEnd(11)} ${`(f) ${WRITERS} loaders racing, batches of 1,000`.padEnd(40)} ${seconds.toFixed(2).padStart(7)} s ${fmt(Math.round(PARALLEL_ROWS / seconds)).padStart(9)} rows/s  ${check}`,
    );
    if (target === "citus") {
      const placed = await pool.query<{ table: string; column: string; nodes: string }>(
        `SELECT t.table_name::text AS table, t.distribution_column AS column, count(DISTINCT s.nodeport)::text AS nodes
           FROM citus_tables t JOIN citus_shards s USING (table_name) WHERE t.table_name::text IN ('a', 'b', 'f') GROUP BY 1, 2 ORDER BY 1`,
      );
      console.log(`  citus placement: ${placed.rows.map((r) => `${r.table} on ${r.column}, shards on ${r.nodes} workers`).join("; ")}`);
    }
  } finally {
    await loader.close();
    await pool.end();
  }
  return figures;
}

async function main(): Promise<void> {
  const citusDir = path.resolve(process.env.SEQLOAD_CITUS_DIR ?? "../shared/citus");
  if (!existsSync(path.join(citusDir, "cluster.sh"))) throw new Error(`no Citus in ${citusDir} (set SEQLOAD_CITUS_DIR)`);
  const dir = mkdtempSync(path.join(os.tmpdir(), "seqload-bench-citus-"));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const cluster = (...args: string[]) => execFileSync("bash", [path.join(citusDir, "cluster.sh"), ...args], { encoding: "utf8" }).trim();
  console.log(
    `seqload bench:citus — ${fmt(ROWS)} rows for (a)–(d), ${fmt(PARALLEL_ROWS)} for (f); ${os.cpus().length} cores, Node ${process.version}`,
  );
  try {
    const admin = cluster("start", path.join(dir, "citus"), String(port));
    const citusUrl = cluster("createdb", path.join(dir, "citus"), String(port), "bench_citus");
    const single = new URL(admin);
    single.pathname = "/bench_single";
    const c = new pg.Client({ connectionString: admin });
    await c.connect();
    await c.query("CREATE DATABASE bench_single"); // no citus extension in it: a plain PostgreSQL 15
    // As the README recommends: pooled coordinator connections keep their connections to the
    // workers (by default each keeps one per worker and reopens the others on every multi-shard
    // statement, which cost about 1 s per 2,000-row batch with 32 shards here).
    await c.query(`ALTER DATABASE bench_citus SET citus.max_cached_conns_per_worker = ${CACHED_CONNS}`);
    const version = (await c.query<{ v: string }>("SELECT split_part(version(), ' ', 2) AS v")).rows[0]?.v;
    const shards = (await c.query<{ n: string }>("SELECT current_setting('citus.shard_count') AS n")).rows[0]?.n;
    await c.end();
    console.log(
      `PostgreSQL ${version}; Citus coordinator :${port}, workers :${port + 1} :${port + 2}, ${shards} shards per table, all on this machine; citus.max_cached_conns_per_worker = ${CACHED_CONNS}`,
    );
    const figures = [...(await runCases("single node", single.toString())), ...(await runCases("citus", citusUrl))];
    console.log("\ncase                                     single node rows/s   citus rows/s   citus ÷ single");
    for (const f of figures.filter((x) => x.target === "single node")) {
      const d = figures.find((x) => x.target === "citus" && x.case === f.case);
      if (d === undefined) continue;
      console.log(
        `${f.case.padEnd(40)} ${fmt(f.rowsPerSec).padStart(19)} ${fmt(d.rowsPerSec).padStart(14)} ${(d.rowsPerSec / f.rowsPerSec).toFixed(2).padStart(16)}`,
      );
    }
    console.log("(3 Citus nodes and the client share these cores: correctness at scale, not a speed claim)");
    console.log(JSON.stringify({ rows: ROWS, parallelRows: PARALLEL_ROWS, figures }));
    if (figures.some((f) => !f.check.startsWith("ok"))) process.exitCode = 1;
  } finally {
    try {
      cluster("stop", path.join(dir, "citus"));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

await main();
