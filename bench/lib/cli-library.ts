/**
 * Case (g)'s library reference, run by bench/lib/cli.ts as a process of its own, like the CLI:
 *
 *   node dist/bench/lib/cli-library.js FILE DATABASE_URL SCHEMA
 *
 * Reads the same JSON Lines file as the CLI, one line at a time, parses each line losslessly (not
 * timed) and loads it with `loader.loadBatch` (timed), in file order, one batch after the other:
 * a library user who holds each batch as parsed objects and loads it. Timed: createLoader and every
 * loadBatch call (validation, staging, apply, commit; the first also checks the migrations and the
 * schema), not the reading and parsing between them. A process of its own so that its heap holds
 * one batch, as the CLI's does, not the bench's generated data (whose size made every major GC of
 * the bench process slower). Prints one JSON line: seconds, cpuS (this process, timed sections),
 * maxRssKb, batches, messages.
 */
import { createReadStream } from "node:fs";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import pg from "pg";
import { createLoader } from "../../src/index.js";
import { parseJson } from "../../src/json.js";

const [file, url, schema] = process.argv.slice(2);
if (file === undefined || url === undefined || schema === undefined) {
  throw new Error("usage: node dist/bench/lib/cli-library.js FILE DATABASE_URL SCHEMA");
}
const cpuUs = (): number => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
const pool = new pg.Pool({ connectionString: url, max: 4 });
try {
  let ms = 0;
  let cpu = 0;
  let batches = 0;
  let messages = 0;
  let t0 = performance.now();
  let c0 = cpuUs();
  const loader = await createLoader({ pool, schema });
  ms += performance.now() - t0;
  cpu += cpuUs() - c0;
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    if (line === "") continue;
    const batch = parseJson(line);
    t0 = performance.now();
    c0 = cpuUs();
    const result = await loader.loadBatch(batch);
    ms += performance.now() - t0;
    cpu += cpuUs() - c0;
    batches++;
    messages += result.received;
  }
  const out = { seconds: ms / 1000, cpuS: cpu / 1e6, maxRssKb: process.resourceUsage().maxRSS, batches, messages };
  process.stdout.write(`${JSON.stringify(out)}\n`);
} finally {
  await pool.end();
}
