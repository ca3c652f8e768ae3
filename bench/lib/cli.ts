/**
 * Case (g): the CLI (dist/src/cli.js) loading a JSON Lines file of 20,000-message lines; its peak
 * RSS and CPU are its own process's. In the same run, the library reference on the same batches
 * (bench/lib/cli-library.ts, a process of its own too): `loader.loadBatch` called on each line's
 * batch, parsed beforehand, one after the other in file order, into a fresh table of the same name
 * and shape. The ratio of the two (CLI msgs/s ÷ library msgs/s) is issue 15's CLI target.
 *
 * What each side includes. Library: createLoader and every loadBatch call (validation, staging,
 * apply, commit; the first call also checks the migrations and the schema), not reading or parsing
 * the lines. CLI: the whole process, spawn to exit (node start, imports, connecting, migration
 * check, reading, UTF-8 check, splitting, lossless parsing, validation, staging, apply, commit).
 */
import { spawn } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type BenchMessage, benchSchema } from "./data.js";
import { BENCH_SCHEMA, dropTable, settle } from "./db.js";
import { type Context, cost, fmt, log, record, round2, tableState } from "./context.js";
import type { Measurement } from "./report.js";
import { timed } from "./stats.js";

const RSS_MARKER = "SEQLOAD_BENCH_MAXRSS_KB=";
const CPU_MARKER = "SEQLOAD_BENCH_CPU_US=";
/** Stitch's per-batch limit: one JSON Lines line each. */
const PER_LINE = 20_000;
const TABLE = "g_cli";

/** The method labels of case (g)'s two measurements. */
const CLI_METHOD = "CLI seqload load (JSON Lines, incl. parsing)";
const CLI_LIBRARY_METHOD = "library loadBatch, same batches as parsed objects (CLI reference)";

/**
 * CLI msgs/s ÷ library msgs/s on the same batches, from one run's measurements (issue 15's target:
 * ≥ 0.9); null when case (g) or its reference did not run, or a check failed.
 */
export function cliVsLibrary(ms: readonly Measurement[]): number | null {
  const cli = ms.find((m) => m.case === "g" && m.method === CLI_METHOD);
  const lib = ms.find((m) => m.case === "g" && m.method === CLI_LIBRARY_METHOD);
  if (cli === undefined || lib === undefined || cli.check !== "ok" || lib.check !== "ok") return null;
  return round2(cli.rows / cli.seconds / (lib.rows / lib.seconds));
}

async function writeFile(file: string, data: BenchMessage[]): Promise<void> {
  const out = createWriteStream(file);
  const schema = JSON.stringify(benchSchema());
  for (let i = 0; i < data.length; i += PER_LINE) {
    const messages = data
      .slice(i, i + PER_LINE)
      .map((m) => `{"action":"upsert","sequence":${m.sequence},"data":${JSON.stringify(m.data)}}`);
    const line = `{"table_name":"${TABLE}","key_names":["id"],"schema":${schema},"messages":[${messages.join(",")}]}\n`;
    if (!out.write(line)) await new Promise<void>((r) => out.once("drain", () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
}

async function tableCheck(ctx: Context, n: number): Promise<string> {
  const state = await tableState(ctx.pool, TABLE);
  return state.rows !== n ? `${fmt(state.rows)} rows` : "ok";
}

type Run = Pick<Measurement, "seconds" | "peakRssMb" | "clientCpuS" | "serverCpuS"> & { check: string };

/** The library reference once, into a fresh table (see cli-library.ts). */
async function libraryRun(ctx: Context, file: string, n: number): Promise<Run> {
  await dropTable(ctx.pool, TABLE);
  await settle(ctx.pool, []);
  const script = fileURLToPath(new URL("./cli-library.js", import.meta.url));
  const run = await timed(() => runNode([script, file, ctx.connectionString, BENCH_SCHEMA], "pipe"));
  const out = /^\{.*\}$/m.exec(run.value.stdout)?.[0];
  const figures = out === undefined ? null : (JSON.parse(out) as LibraryFigures);
  return {
    ...cost(run),
    // Its own timed sections: createLoader and the loadBatch calls, not the parsing between them.
    seconds: figures?.seconds ?? run.seconds,
    clientCpuS: figures === null ? null : round2(figures.cpuS),
    peakRssMb: figures === null ? 0 : Math.round(figures.maxRssKb / 1024),
    check:
      run.value.code !== 0 || figures === null
        ? `exit code ${run.value.code}: ${run.value.stderr.split("\n").filter(Boolean).slice(-3).join(" / ")}`
        : await tableCheck(ctx, n),
  };
}

/** The CLI once, spawn to exit, into a fresh table; RSS and CPU are its process's own. */
async function cliRun(ctx: Context, cli: string, file: string, n: number): Promise<Run> {
  await dropTable(ctx.pool, TABLE);
  await settle(ctx.pool, []);
  // Reports the child's own maxRSS on exit (nothing else can see a child's rusage from Node).
  const hook = `process.on("exit",()=>{const u=process.cpuUsage();process.stderr.write("\\n${RSS_MARKER}"+process.resourceUsage().maxRSS+" ${CPU_MARKER}"+(u.user+u.system)+"\\n")})`;
  const args = [
    "--import",
    `data:text/javascript,${encodeURIComponent(hook)}`,
    cli,
    "load",
    file,
    "--database-url",
    ctx.connectionString,
    "--schema",
    BENCH_SCHEMA,
    "--json",
  ];
  const run = await timed(() => runNode(args, "ignore"));
  const rssKb = Number(new RegExp(`${RSS_MARKER}(\\d+)`).exec(run.value.stderr)?.[1] ?? Number.NaN);
  const cpuUs = Number(new RegExp(`${CPU_MARKER}(\\d+)`).exec(run.value.stderr)?.[1] ?? Number.NaN);
  return {
    ...cost(run),
    clientCpuS: Number.isNaN(cpuUs) ? null : round2(cpuUs / 1e6),
    peakRssMb: Math.round(rssKb / 1024),
    check:
      run.value.code !== 0
        ? `exit code ${run.value.code}: ${run.value.stderr
            .split("\n")
            .filter((l) => l && !l.startsWith(RSS_MARKER))
            .slice(-3)
            .join(" / ")}`
        : await tableCheck(ctx, n),
  };
}

/** The faster of two runs; a failed check in either is kept. */
function better(a: Run | null, b: Run): Run {
  if (a === null) return b;
  const best = b.seconds < a.seconds ? b : a;
  return { ...best, check: a.check !== "ok" ? a.check : b.check };
}

export async function cliCase(ctx: Context, data: BenchMessage[]): Promise<void> {
  const cli = fileURLToPath(new URL("../../src/cli.js", import.meta.url));
  if (!existsSync(cli)) {
    log("(g) skipped: dist/src/cli.js does not exist yet (the CLI's peak RSS is measured once it does)");
    return;
  }
  const n = data.length;
  const repeat = ctx.opts.repeat;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "seqload-bench-cli-"));
  const file = path.join(dir, "batches.jsonl");
  log(
    `(g) CLI: seqload load of a ${fmt(n)}-message JSON Lines file (${Math.ceil(n / PER_LINE)} lines of ≤ ${fmt(PER_LINE)} messages; sequences as 19-digit JSON numbers), and the library on the same batches${repeat > 1 ? `; the library and the CLI take turns, ${repeat} runs each, the fastest counts` : ""}`,
  );
  await writeFile(file, data);
  let lib: Run | null = null;
  let run: Run | null = null;
  const libRuns: number[] = [];
  const cliRuns: number[] = [];
  for (let rep = 0; rep < repeat; rep++) {
    const l = await libraryRun(ctx, file, n);
    const c = await cliRun(ctx, cli, file, n);
    libRuns.push(round2(l.seconds));
    cliRuns.push(round2(c.seconds));
    lib = better(lib, l);
    run = better(run, c);
  }
  if (lib === null || run === null) return;
  const ratio = round2(lib.seconds / run.seconds);
  const ratioText =
    run.check === "ok" && lib.check === "ok" ? `${ratio.toFixed(2)}× the library's msgs/s (target ≥ 0.90)` : "no ratio (a check failed)";
  const runs = (xs: number[]) => (xs.length > 1 ? `; best of ${xs.join(" / ")} s` : "");
  // The CLI first: the RSS target reads the first (g) measurement.
  const measured = record(
    ctx,
    {
      case: "g",
      method: CLI_METHOD,
      rows: n,
      ...run,
      note: `whole CLI process, spawn to exit; ${ratioText}; RSS and Node cpu are the CLI process's own${runs(cliRuns)}`,
    },
    null,
  );
  const reference = record(
    ctx,
    {
      case: "g",
      method: CLI_LIBRARY_METHOD,
      rows: n,
      ...lib,
      note: `own process: createLoader + loadBatch per line's batch, in file order; reading and parsing the lines not timed${runs(libRuns)}`,
    },
    null,
  );
  const r = cliVsLibrary([measured, reference]);
  log(
    `  (g) CLI vs library on the same batches: ${fmt(measured.rowsPerSec)} / ${fmt(reference.rowsPerSec)} msgs/s = ${r === null ? "—" : `${r.toFixed(2)}×`} (target ≥ 0.90)`,
  );
  await dropTable(ctx.pool, TABLE);
  await fs.rm(dir, { recursive: true, force: true });
}

/** What cli-library.ts prints. */
interface LibraryFigures {
  seconds: number;
  cpuS: number;
  maxRssKb: number;
}

/** Run a node script; its exit code, stderr and (when piped) stdout. */
function runNode(args: string[], stdout: "pipe" | "ignore"): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", stdout, "pipe"] });
    let out = "";
    let err = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr?.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout: out, stderr: err }));
  });
}
