/** Case (g): the CLI (dist/src/cli.js) loading a JSON Lines file; peak RSS and CPU of its own process. */
import { spawn } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type BenchMessage, benchSchema } from "./data.js";
import { BENCH_SCHEMA, dropTable, settle } from "./db.js";
import { type Context, cost, fmt, log, record, round2, tableState } from "./context.js";
import { timed } from "./stats.js";

const RSS_MARKER = "SEQLOAD_BENCH_MAXRSS_KB=";
const CPU_MARKER = "SEQLOAD_BENCH_CPU_US=";

export async function cliCase(ctx: Context, data: BenchMessage[]): Promise<void> {
  const cli = fileURLToPath(new URL("../../src/cli.js", import.meta.url));
  if (!existsSync(cli)) {
    log("(g) skipped: dist/src/cli.js does not exist yet (the CLI's peak RSS is measured once it does)");
    return;
  }
  const n = data.length;
  const perLine = 20_000; // Stitch's per-batch limit
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "seqload-bench-cli-"));
  const file = path.join(dir, "batches.jsonl");
  log(
    `(g) CLI: seqload load of a ${fmt(n)}-message JSON Lines file (${Math.ceil(n / perLine)} lines of ≤ ${fmt(perLine)} messages; sequences as 19-digit JSON numbers)`,
  );
  const out = createWriteStream(file);
  const schema = JSON.stringify(benchSchema());
  for (let i = 0; i < n; i += perLine) {
    const messages = data.slice(i, i + perLine).map((m) => `{"action":"upsert","sequence":${m.sequence},"data":${JSON.stringify(m.data)}}`);
    const line = `{"table_name":"g_cli","key_names":["id"],"schema":${schema},"messages":[${messages.join(",")}]}\n`;
    if (!out.write(line)) await new Promise<void>((r) => out.once("drain", () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
  await dropTable(ctx.pool, "g_cli");
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
  const run = await timed(
    () =>
      new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
        const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
        let stderr = "";
        child.stderr.on("data", (d: Buffer) => {
          stderr += d.toString();
        });
        child.on("error", reject);
        child.on("close", (code) => resolve({ code, stderr }));
      }),
  );
  const rssKb = Number(new RegExp(`${RSS_MARKER}(\\d+)`).exec(run.value.stderr)?.[1] ?? Number.NaN);
  const cpuUs = Number(new RegExp(`${CPU_MARKER}(\\d+)`).exec(run.value.stderr)?.[1] ?? Number.NaN);
  const cliCpuS = Number.isNaN(cpuUs) ? null : round2(cpuUs / 1e6);
  const state = await tableState(ctx.pool, "g_cli");
  const check =
    run.value.code !== 0
      ? `exit code ${run.value.code}: ${run.value.stderr
          .split("\n")
          .filter((l) => l && !l.startsWith(RSS_MARKER))
          .slice(-3)
          .join(" / ")}`
      : state.rows !== n
        ? `${fmt(state.rows)} rows`
        : "ok";
  record(
    ctx,
    {
      case: "g",
      method: "CLI seqload load (JSON Lines, incl. parsing)",
      rows: n,
      ...cost(run),
      clientCpuS: cliCpuS,
      peakRssMb: Math.round(rssKb / 1024),
      check,
      note: "RSS and Node cpu are the CLI process's own",
    },
    null,
  );
  await dropTable(ctx.pool, "g_cli");
  await fs.rm(dir, { recursive: true, force: true });
}
