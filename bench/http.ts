/**
 * HTTP vs library throughput, in one run: 8 concurrent clients post batches of N messages to one
 * table through `seqload serve`, then 8 concurrent callers load the same kind of batches with
 * loader.loadBatch directly. The difference is what the HTTP layer costs (lossless JSON parsing of
 * 19-digit sequences, the network stack, Fastify). Clients post with node:http on keep-alive
 * sockets (bench/lib/post.ts), which costs half of fetch's CPU.
 *
 *   node dist/bench/http.js [--seconds 5] [--batch-size 500]
 *
 * Uses DATABASE_URL when set, else an embedded PostgreSQL in a temp directory. Tables go to
 * schema seqload_bench, dropped at the end of runHttpBench. Clients and server share one process,
 * as the library callers do, so the figures compare like with like; a real deployment has its
 * clients elsewhere (and its server's CPU to itself).
 */
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import pg from "pg";
import { startEmbeddedPostgres } from "../src/embedded.js";
import { createLoader } from "../src/index.js";
import { startServer } from "../src/serve.js";
import { batchObject, batchText } from "./lib/http-batches.js";
import { keepAliveAgent, postJson } from "./lib/post.js";

export interface HttpBenchOptions {
  connectionString: string;
  /** Seconds each phase (HTTP, library) runs. */
  seconds: number;
  /** Messages per batch. */
  batchSize: number;
  /** Concurrent clients / callers. Default 8. */
  clients?: number;
}

export interface HttpBenchResult {
  clients: number;
  batchSize: number;
  seconds: number;
  httpBatchesPerSec: number;
  httpMessagesPerSec: number;
  /** Median and 95th-percentile request latency, ms. */
  httpP50Ms: number;
  httpP95Ms: number;
  /** Answers other than 201 (503 busy included); should be 0. */
  httpErrors: number;
  /** CPU time of this Node process per batch (clients and server together), ms. */
  httpCpuMsPerBatch: number;
  libraryBatchesPerSec: number;
  libraryMessagesPerSec: number;
  libraryP50Ms: number;
  libraryP95Ms: number;
  libraryCpuMsPerBatch: number;
}

const SCHEMA = "seqload_bench";
const WARMUP_SECONDS = 1;
function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return Math.round((sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] as number) * 10) / 10;
}

/** Run `clients` workers calling `once` until `seconds` have passed; batches and latencies. */
async function drive(
  clients: number,
  seconds: number,
  once: () => Promise<boolean>,
): Promise<{ batches: number; errors: number; elapsed: number; latencies: number[]; cpuMs: number }> {
  const until = performance.now() + seconds * 1000;
  const cpu = process.cpuUsage();
  const latencies: number[] = [];
  let batches = 0;
  let errors = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < until) {
        const t = performance.now();
        if (await once()) {
          batches++;
          latencies.push(performance.now() - t);
        } else errors++;
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  const used = process.cpuUsage(cpu);
  return { batches, errors, elapsed: (performance.now() - start) / 1000, latencies, cpuMs: (used.user + used.system) / 1000 };
}

export async function runHttpBench(opts: HttpBenchOptions): Promise<HttpBenchResult> {
  const clients = opts.clients ?? 8;
  const { batchSize, seconds } = opts;
  const loaderOptions = { connectionString: opts.connectionString, schema: SCHEMA, poolSize: clients };
  const suffix = Math.random().toString(36).slice(2, 8);
  const token = `bench-${suffix}-${Math.random().toString(36).slice(2)}`;

  // HTTP phase: maxInFlight = clients, so a 503 means something is wrong, not just busy.
  const server = await startServer({
    loaderOptions,
    port: 0,
    host: "127.0.0.1",
    tokens: [token],
    insecureNoAuth: false,
    log: () => {},
    maxInFlight: clients,
  });
  const httpTable = `http_${suffix}`;
  const agent = keepAliveAgent(clients);
  const postOnce = async (): Promise<boolean> => {
    const body = batchText(httpTable, batchSize);
    return (await postJson(agent, `${server.url}/v2/import/batch`, token, body)) === 201;
  };
  let http: Awaited<ReturnType<typeof drive>>;
  try {
    // Unmeasured warm-up: creates the table, runs migrations, lets the JIT settle.
    await drive(clients, WARMUP_SECONDS, postOnce);
    http = await drive(clients, seconds, postOnce);
  } finally {
    agent.destroy();
    await server.close();
  }

  // Library phase: the same batches as objects, the same concurrency, the same pool size.
  const loader = await createLoader(loaderOptions);
  const libTable = `lib_${suffix}`;
  let lib: Awaited<ReturnType<typeof drive>>;
  try {
    const loadOnce = async (): Promise<boolean> => {
      await loader.loadBatch(batchObject(libTable, batchSize));
      return true;
    };
    await drive(clients, WARMUP_SECONDS, loadOnce);
    lib = await drive(clients, seconds, loadOnce);
  } finally {
    await loader.close();
    // The bench owns schema seqload_bench; leave the database as it found it.
    await dropBenchSchema(opts.connectionString).catch(() => undefined);
  }

  const round = (n: number) => Math.round(n * 10) / 10;
  return {
    clients,
    batchSize,
    seconds,
    httpBatchesPerSec: round(http.batches / http.elapsed),
    httpMessagesPerSec: Math.round((http.batches * batchSize) / http.elapsed),
    httpP50Ms: percentile(http.latencies, 0.5),
    httpP95Ms: percentile(http.latencies, 0.95),
    httpErrors: http.errors,
    httpCpuMsPerBatch: round(http.cpuMs / Math.max(1, http.batches)),
    libraryBatchesPerSec: round(lib.batches / lib.elapsed),
    libraryMessagesPerSec: Math.round((lib.batches * batchSize) / lib.elapsed),
    libraryP50Ms: percentile(lib.latencies, 0.5),
    libraryP95Ms: percentile(lib.latencies, 0.95),
    libraryCpuMsPerBatch: round(lib.cpuMs / Math.max(1, lib.batches)),
  };
}

/** Drop what the bench created (it owns schema seqload_bench; nothing else is touched). */
async function dropBenchSchema(connectionString: string): Promise<void> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
    await client.query("DELETE FROM seqload.tables WHERE schema_name = $1", [SCHEMA]).catch(() => undefined);
    await client.query("DELETE FROM seqload.loads WHERE schema_name = $1", [SCHEMA]).catch(() => undefined);
  } finally {
    await client.end();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: "string", default: "5" },
      "batch-size": { type: "string", default: "500" },
      clients: { type: "string", default: "8" },
    },
  });
  const seconds = Number(values.seconds);
  const batchSize = Number(values["batch-size"]);
  const clients = Number(values.clients);
  let connectionString = process.env.DATABASE_URL;
  let stop = async (): Promise<void> => {};
  if (!connectionString) {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "seqload-bench-pg-"));
    const server = await startEmbeddedPostgres({ dataDir: dir, persistent: false });
    connectionString = server.connectionString;
    stop = async () => {
      await server.stop();
      await fs.rm(dir, { recursive: true, force: true });
    };
  }
  try {
    console.log(`seqload HTTP bench: ${clients} concurrent clients, batches of ${batchSize} messages, ${seconds} s per phase`);
    const r = await runHttpBench({ connectionString, seconds, batchSize, clients });
    console.log(
      `  HTTP (POST /v2/import/batch): ${r.httpBatchesPerSec} batches/s, ${r.httpMessagesPerSec} messages/s, p50 ${r.httpP50Ms} ms, p95 ${r.httpP95Ms} ms, ${r.httpCpuMsPerBatch} ms CPU/batch, non-201: ${r.httpErrors}`,
    );
    console.log(
      `  library (loader.loadBatch):   ${r.libraryBatchesPerSec} batches/s, ${r.libraryMessagesPerSec} messages/s, p50 ${r.libraryP50Ms} ms, p95 ${r.libraryP95Ms} ms, ${r.libraryCpuMsPerBatch} ms CPU/batch`,
    );
    console.log(`  HTTP / library: ${Math.round((r.httpBatchesPerSec / r.libraryBatchesPerSec) * 100)}%`);
  } finally {
    await stop();
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exitCode = 1;
  });
}
