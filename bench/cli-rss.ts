/**
 * Loads a generated JSON Lines file of ≥1,000,000 messages through the built CLI
 * (`node dist/src/cli.js load FILE --json`) and prints messages/s and the CLI's peak RSS.
 *
 *   npm run build && node dist/bench/cli-rss.js [--messages N] [--batch-size N] [--keep]   (--help)
 *
 * Database: DATABASE_URL if set (the load goes into a fresh schema, dropped afterwards), else a
 * throw-away embedded PostgreSQL in a temp dir. Peak RSS is the child's VmHWM from
 * /proc/<pid>/status (Linux), polled every 50 ms; VmHWM is the kernel's own high-water mark, so
 * polling cannot miss a short peak, only growth in the last 50 ms before exit.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { startEmbeddedPostgres } from "../src/embedded.js";

const USAGE = `usage: node dist/bench/cli-rss.js [--messages N] [--batch-size N] [--keep]
  --messages N    messages in the generated file (default 1,000,000)
  --batch-size N  messages per JSON Lines line, i.e. per batch (default 10,000; Stitch's maximum is 20,000)
  --keep          keep the temp dir (the generated file)
Uses DATABASE_URL if set, else a throw-away embedded PostgreSQL in a temp dir.`;

const args = process.argv.slice(2);
if (args.includes("--help") || args.includes("-h")) {
  console.log(USAGE);
  process.exit(0);
}
for (let i = 0; i < args.length; i++) {
  const a = args[i] as string;
  if (a === "--messages" || a === "--batch-size") i++;
  else if (a !== "--keep") throw new Error(`unknown argument ${a}\n${USAGE}`);
}

function arg(name: string, dflt: number): number {
  const i = args.indexOf(`--${name}`);
  if (i === -1) return dflt;
  const n = Number(args[i + 1]);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} needs a positive integer\n${USAGE}`);
  return n;
}

const MESSAGES = arg("messages", 1_000_000);
const BATCH_SIZE = arg("batch-size", 10_000);
const KEEP = args.includes("--keep");
const TABLE = "bench_customers";
/** Half as many keys as messages: later batches update rows that earlier ones inserted. */
const KEY_SPACE = Math.max(1, Math.floor(MESSAGES / 2));
const BASE_SEQUENCE = 1_795_465_705_836_000_000n; // 19 digits, as target-stitch sends
const BASE_ID = 9_007_199_254_740_993n; // 2^53 + 1: ids beyond a double, a true bigint key

const SCHEMA = {
  properties: {
    id: { type: "integer" },
    name: { type: "string" },
    email: { type: ["null", "string"] },
    amount: { type: "number" },
    active: { type: "boolean" },
    updated_at: { type: "string", format: "date-time" },
  },
};

async function generate(file: string): Promise<{ batches: number; bytes: number }> {
  const out = createWriteStream(file);
  const write = (s: string) => (out.write(s) ? Promise.resolve() : new Promise<void>((r) => out.once("drain", () => r())));
  const head = `{"table_name":"${TABLE}","key_names":["id"],"schema":${JSON.stringify(SCHEMA)},"messages":[`;
  let batches = 0;
  for (let start = 0; start < MESSAGES; start += BATCH_SIZE) {
    const parts: string[] = [];
    for (let i = start; i < Math.min(MESSAGES, start + BATCH_SIZE); i++) {
      const key = (i * 7919) % KEY_SPACE;
      const id = BASE_ID + BigInt(key);
      const seq = BASE_SEQUENCE + BigInt(i);
      const ts = new Date(1_574_807_356_000 + i * 1000).toISOString();
      parts.push(
        `{"action":"upsert","sequence":${seq},"data":{"id":${id},"name":"customer ${key}","email":${i % 5 === 0 ? "null" : `"c${key}@example.com"`},"amount":${(i % 100_000) / 100},"active":${i % 2 === 0},"updated_at":"${ts}"}}`,
      );
    }
    await write(`${head}${parts.join(",")}]}\n`);
    batches++;
  }
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
  return { batches, bytes: (await stat(file)).size };
}

async function vmHwmKb(pid: number): Promise<number | null> {
  const text = await readFile(`/proc/${pid}/status`, "utf8").catch(() => null);
  const m = text === null ? null : /^VmHWM:\s+(\d+) kB/m.exec(text);
  return m ? Number(m[1]) : null;
}

async function runCli(
  file: string,
  url: string,
  schema: string,
): Promise<{ ms: number; peakKb: number; results: number; code: number | null; stderr: string }> {
  const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../src/cli.js");
  const started = performance.now();
  const child = spawn(process.execPath, [cli, "load", file, "--json", "--database-url", url, "--schema", schema], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let results = 0;
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => {
    results += s.split("\n").length - 1;
  });
  child.stderr.setEncoding("utf8").on("data", (s: string) => {
    stderr += s;
  });
  let peakKb = 0;
  const poll = setInterval(() => {
    if (child.pid === undefined) return;
    void vmHwmKb(child.pid).then((kb) => {
      if (kb !== null && kb > peakKb) peakKb = kb;
    });
  }, 50);
  const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
  clearInterval(poll);
  return { ms: performance.now() - started, peakKb, results, code, stderr };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "seqload-cli-rss-"));
  const file = path.join(dir, "batches.jsonl");
  let embedded: Awaited<ReturnType<typeof startEmbeddedPostgres>> | null = null;
  const schema = `bench_${randomBytes(4).toString("hex")}`;
  try {
    const g0 = performance.now();
    const { batches, bytes } = await generate(file);
    console.log(
      `generated ${MESSAGES.toLocaleString("en-US")} messages in ${batches} batches, ${(bytes / 2 ** 20).toFixed(1)} MiB, in ${((performance.now() - g0) / 1000).toFixed(1)} s (${file})`,
    );

    let url = process.env.DATABASE_URL ?? "";
    if (url === "") {
      embedded = await startEmbeddedPostgres({ dataDir: path.join(dir, "pgdata"), persistent: false });
      url = embedded.connectionString;
      console.log("database: embedded PostgreSQL (temporary)");
    } else {
      console.log("database: DATABASE_URL");
    }

    const r = await runCli(file, url, schema);
    if (r.code !== 0) throw new Error(`the CLI exited with ${r.code}:\n${r.stderr}`);
    const rows = await countRows(url, schema);
    const seconds = r.ms / 1000;
    console.log(
      `loaded: ${r.results} batches reported, ${rows.toLocaleString("en-US")} rows in ${schema}.${TABLE} (expected ${Math.min(KEY_SPACE, MESSAGES).toLocaleString("en-US")})`,
    );
    console.log(
      `time: ${seconds.toFixed(1)} s, ${Math.round(MESSAGES / seconds).toLocaleString("en-US")} messages/s (whole CLI run, node start to exit)`,
    );
    console.log(`peak RSS of the CLI process (VmHWM): ${(r.peakKb / 1024).toFixed(0)} MB`);
    if (r.peakKb === 0) console.log("(no /proc/<pid>/status here: peak RSS could not be measured)");
  } finally {
    if (process.env.DATABASE_URL) await dropSchema(process.env.DATABASE_URL, schema).catch(() => {});
    await embedded?.stop();
    if (KEEP) console.log(`kept ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  }
}

async function countRows(url: string, schema: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const r = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(TABLE)}`);
    return Number(r.rows[0]?.n ?? 0);
  } finally {
    await client.end();
  }
}

async function dropSchema(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`);
    await client.query("DELETE FROM seqload.tables WHERE schema_name = $1", [schema]).catch(() => {});
    await client.query("DELETE FROM seqload.loads WHERE schema_name = $1", [schema]).catch(() => {});
  } finally {
    await client.end();
  }
}

await main();
