/**
 * Where the HTTP path's time goes, next to the library's (bench/http.ts measures the totals):
 * CPU per 1,000-message batch of each step the HTTP path adds (the client building its body, the
 * HTTP exchange through undici and Fastify without parsing or loading, the lossless parse), of
 * validation, and, under 8 concurrent clients posting to `seqload serve`, the pool's waiters and
 * how long the event loop was blocked at once (a parse blocks every other request's database work).
 *
 *   npm run build && node dist/bench/http-phases.js [--seconds 5] [--batch-size 1000] [--clients 8]
 *
 * Uses DATABASE_URL when set, else an embedded PostgreSQL in a temp directory.
 */
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import Fastify from "fastify";
import { parse as losslessParse } from "lossless-json";
import pg from "pg";
import { startEmbeddedPostgres } from "../src/embedded.js";
import { createLoader, validateBatch } from "../src/index.js";
import { parseJson, parseJsonYielding, parseNumberToken } from "../src/json.js";
import { startServer } from "../src/serve.js";
import { batchText } from "./lib/http-batches.js";
import { keepAliveAgent, postJson } from "./lib/post.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    "batch-size": { type: "string", default: "1000" },
    clients: { type: "string", default: "8" },
  },
});
const SECONDS = Number(values.seconds);
const BATCH = Number(values["batch-size"]);
const CLIENTS = Number(values.clients);
const SCHEMA = "seqload_bench_phases";
/** A body as bench/http.ts posts it. */
const body = (table: string): string => batchText(table, BATCH);

const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** CPU ms per call of `fn`, over `n` calls after a warm-up. */
function perCall(n: number, fn: () => unknown): number {
  for (let i = 0; i < 5; i++) fn();
  const c0 = cpuMs();
  for (let i = 0; i < n; i++) fn();
  return (cpuMs() - c0) / n;
}

/** `clients` workers calling `once` for `seconds`: calls done and CPU ms per call. */
async function drive(seconds: number, once: () => Promise<void>): Promise<{ calls: number; perSec: number; cpuPerCall: number }> {
  const until = performance.now() + seconds * 1000;
  const c0 = cpuMs();
  const t0 = performance.now();
  let calls = 0;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (performance.now() < until) {
        await once();
        calls++;
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  return { calls, perSec: calls / elapsed, cpuPerCall: (cpuMs() - c0) / Math.max(1, calls) };
}

/** One agent for the whole run: keep-alive sockets, one per client. */
const agent = keepAliveAgent(CLIENTS);

async function post(url: string, text: string, token: string): Promise<void> {
  const status = await postJson(agent, url, token, text);
  if (status !== 201) throw new Error(`HTTP ${status}`);
}

async function main(): Promise<void> {
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
  const fmt = (ms: number) => `${ms.toFixed(2)} ms`;
  try {
    console.log(`CPU per ${BATCH}-message batch (one Node process; ${CLIENTS} concurrent clients where it says so)`);
    const sample = body("t");
    console.log(`  client builds the body text (${(sample.length / 1024).toFixed(0)} KiB): ${fmt(perCall(50, () => body("t")))}`);
    console.log(
      `  lossless-json parse:                        ${fmt(perCall(50, () => losslessParse(sample, undefined, parseNumberToken)))}`,
    );
    console.log(`  parseJson (seqload):                        ${fmt(perCall(50, () => parseJson(sample)))}`);
    // How long other requests wait for the event loop while a body is parsed: the whole parse for
    // parseJson, one slice for parseJsonYielding (the server's). Median of 7 parses after a warm-up.
    const held = async (parse: (t: string) => unknown): Promise<{ longest: number; wall: number }> => {
      let longest = 0;
      let last = performance.now();
      let parsing = true;
      const tick = () => {
        const now = performance.now();
        longest = Math.max(longest, now - last);
        last = now;
        if (parsing) setImmediate(tick);
      };
      setImmediate(tick);
      const t0 = performance.now();
      await parse(sample);
      parsing = false;
      longest = Math.max(longest, performance.now() - last);
      return { longest, wall: performance.now() - t0 };
    };
    const mid = (xs: number[]) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)] as number;
    for (const [name, parse] of [
      ["parseJson", parseJson],
      ["parseJsonYielding (serve, bodies > 512 KiB)", parseJsonYielding],
    ] as const) {
      for (let i = 0; i < 3; i++) await held(parse);
      const runs: { longest: number; wall: number }[] = [];
      for (let i = 0; i < 7; i++) runs.push(await held(parse));
      console.log(
        `  ${name}: event loop held at most ${fmt(mid(runs.map((r) => r.longest)))} at once (whole parse ${fmt(mid(runs.map((r) => r.wall)))} wall; GC pauses included)`,
      );
    }
    const parsed = parseJson(sample);
    console.log(`  validation (validateBatch):                 ${fmt(perCall(50, () => validateBatch(parsed)))}`);

    // The HTTP exchange alone: Fastify reading the body as text, no parse, no load, answer 201.
    const bare = Fastify({ logger: false, bodyLimit: 20 * 1024 * 1024 });
    bare.removeAllContentTypeParsers();
    bare.addContentTypeParser("application/json", { parseAs: "string" }, (_r, _text, done) => done(null, {}));
    bare.post("/v2/import/batch", async (_r, reply) => reply.code(201).send({ status: "OK" }));
    await bare.listen({ port: 0, host: "127.0.0.1" });
    const address = bare.server.address();
    const bareUrl = `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}/v2/import/batch`;
    const exchange = await drive(Math.min(SECONDS, 3), () => post(bareUrl, sample, "x"));
    await bare.close();
    console.log(
      `  HTTP exchange (node:http + Fastify, ${CLIENTS} clients):  ${fmt(exchange.cpuPerCall)} (body included; ${exchange.perSec.toFixed(0)} requests/s)`,
    );

    // seqload serve vs the library on one pool, with the pool's waiters and the event loop's
    // longest block sampled during the HTTP run.
    const pool = new pg.Pool({ connectionString, max: CLIENTS });
    pool.on("error", () => {});
    const token = "bench-phases-token-0123456789";
    const server = await startServer({
      loaderOptions: { pool, schema: SCHEMA },
      port: 0,
      host: "127.0.0.1",
      tokens: [token],
      insecureNoAuth: false,
      log: () => {},
      maxInFlight: CLIENTS,
    });
    const url = `${server.url}/v2/import/batch`;
    const bodies = Array.from({ length: 64 }, () => body("http_phases"));
    let next = 0;
    const postOne = () => post(url, bodies[next++ % bodies.length] as string, token);
    await drive(1, postOne); // warm-up: migrations, the table, the JIT
    let waitingSamples = 0;
    let waitingSum = 0;
    let samples = 0;
    const sampler = setInterval(() => {
      samples++;
      waitingSum += pool.waitingCount;
      if (pool.waitingCount > 0) waitingSamples++;
    }, 2);
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    const http = await drive(SECONDS, postOne);
    delay.disable();
    clearInterval(sampler);
    await server.close();
    console.log(
      `  seqload serve, ${CLIENTS} clients:  ${http.perSec.toFixed(1)} batches/s, ${fmt(http.cpuPerCall)} CPU/batch (clients included); ` +
        `pool waiters: ${((100 * waitingSamples) / Math.max(1, samples)).toFixed(0)}% of samples, ${(waitingSum / Math.max(1, samples)).toFixed(2)} on average; ` +
        `event loop blocked up to ${(delay.max / 1e6).toFixed(1)} ms (p99 ${(delay.percentile(99) / 1e6).toFixed(1)} ms)`,
    );

    const loader = await createLoader({ pool, schema: SCHEMA });
    const objects = bodies.map((b) => parseJson(b.replace('"http_phases"', '"lib_phases"')));
    const loadOne = async () => {
      await loader.loadBatch(objects[next++ % objects.length]);
    };
    await drive(1, loadOne);
    const lib = await drive(SECONDS, loadOne);
    console.log(`  library loadBatch, ${CLIENTS} callers: ${lib.perSec.toFixed(1)} batches/s, ${fmt(lib.cpuPerCall)} CPU/batch`);
    console.log(`  HTTP / library: ${((100 * http.perSec) / lib.perSec).toFixed(0)}%`);
    await loader.close();
    await pool.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
    await pool.query("DELETE FROM seqload.tables WHERE schema_name = $1", [SCHEMA]).catch(() => undefined);
    await pool.query("DELETE FROM seqload.loads WHERE schema_name = $1", [SCHEMA]).catch(() => undefined);
    await pool.end();
  } finally {
    agent.destroy();
    await stop();
  }
}

await main();
