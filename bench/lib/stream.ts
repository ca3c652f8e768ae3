/** Case (e): many small batches on a warm loader, raw COPY / kysely / seqload taking turns. */
import { performance } from "node:perf_hooks";
import type { LoadResult } from "../../src/index.js";
import { copyInto, copyLine } from "./copy.js";
import { type BenchMessage, benchSchema, streamMessages } from "./data.js";
import { dropTable, qualified, settle } from "./db.js";
import { kyselyFor, kyselyUpsert } from "./kysely.js";
import { type Context, cost, createTable, fmt, log, record, round2, sumCounts, tableState, withClient } from "./context.js";
import { type Timed, rssMb, summarize } from "./stats.js";

/** Per-call latencies (ms) and Node CPU (s) of one method in the interleaved loop. */
class CallStats {
  readonly ms: number[] = [];
  cpuS = 0;
  async call(fn: () => Promise<unknown>): Promise<void> {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await fn();
    this.ms.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    this.cpuS += (c.user + c.system) / 1e6;
  }
  timed(): Timed<number[]> {
    const seconds = this.ms.reduce((a, b) => a + b, 0) / 1000;
    return { seconds, value: this.ms, peakRssMb: rssMb(), clientCpuS: round2(this.cpuS), serverCpuS: null };
  }
}

/**
 * The three methods take turns batch by batch (raw COPY, kysely, seqload, rotating who goes first),
 * so that load from elsewhere on the machine hits all three alike. Each method has its own table.
 * Server CPU is not split per method here (it would take a /proc scan per call).
 */
export async function streamCase(ctx: Context): Promise<void> {
  const { pool, opts } = ctx;
  const count = opts.streamBatches;
  const size = opts.streamBatchSize;
  const rows = count * size;
  log(
    `(e) ${fmt(count)} batches of ${size} messages on a warm loader (half update the previous batch's keys, half are new); methods interleaved`,
  );
  const stream = streamMessages(count, size, 0);
  const warm = streamMessages(50, size, 100_000_000);

  // Raw COPY reference: the same payloads with fresh keys (COPY cannot update), one COPY per batch.
  let nextId = 0;
  const copyText = (batch: BenchMessage[]) => batch.map((m) => copyLine({ ...m, data: { ...m.data, id: nextId++ } })).join("");
  const warmCopy = warm.map(copyText);
  const copyBatches = stream.map(copyText);
  const seqBatches = stream.map((messages) => ({ table_name: "e_seqload", key_names: ["id"], schema: benchSchema(), messages }));
  for (const t of ["e_copy", "e_kysely", "e_seqload"]) await createTable(pool, t, null);
  const db = kyselyFor(pool);
  const results: LoadResult[] = [];
  const copy = new CallStats();
  const kysely = new CallStats();
  const seq = new CallStats();
  await withClient(pool, async (client) => {
    // Warm-up: connections, prepared plans, the loader's catalog cache, JIT.
    for (const [i, w] of warm.entries()) {
      await copyInto(client, qualified("e_copy"), [warmCopy[i] as string]);
      await kyselyUpsert(db, "e_kysely", w);
      await ctx.loader.loadBatch({ table_name: "e_seqload", key_names: ["id"], schema: benchSchema(), messages: w });
    }
    await settle(pool, []);
    for (let i = 0; i < count; i++) {
      const methods = [
        () => copy.call(() => copyInto(client, qualified("e_copy"), [copyBatches[i] as string])),
        () => kysely.call(() => kyselyUpsert(db, "e_kysely", stream[i] as BenchMessage[])),
        () =>
          seq.call(async () => {
            results.push(await ctx.loader.loadBatch(seqBatches[i]));
          }),
      ];
      for (let j = 0; j < 3; j++) await (methods[(i + j) % 3] as () => Promise<void>)();
    }
  });

  const keysOf = (batchCount: number) => (batchCount - 1) * (size / 2) + size;
  const expectRows = keysOf(warm.length) + keysOf(count);
  const cm = record(
    ctx,
    {
      case: "e",
      method: `raw COPY, ${size} rows per COPY (new keys)`,
      rows,
      ...cost(copy.timed()),
      latency: summarize(copy.ms),
      check: "ok",
    },
    null,
  );
  const kRows = (await tableState(pool, "e_kysely")).rows;
  const km = record(
    ctx,
    {
      case: "e",
      method: "kysely baseline, 1 statement per batch",
      rows,
      ...cost(kysely.timed()),
      latency: summarize(kysely.ms),
      check: kRows === expectRows ? "ok" : `${fmt(kRows)} rows, expected ${fmt(expectRows)}`,
    },
    null,
    cm.rowsPerSec,
  );
  const counts = sumCounts(results);
  const sRows = (await tableState(pool, "e_seqload")).rows;
  // Batch 0 inserts all `size` keys; every later batch updates size/2 and inserts size/2.
  const okCounts = counts.inserted === size + (count - 1) * (size / 2) && counts.updated === (count - 1) * (size / 2);
  record(
    ctx,
    {
      case: "e",
      method: "seqload, warm loader",
      rows,
      ...cost(seq.timed()),
      latency: summarize(seq.ms),
      counts,
      check:
        sRows !== expectRows
          ? `${fmt(sRows)} rows, expected ${fmt(expectRows)}`
          : okCounts
            ? "ok"
            : `inserted ${counts.inserted}, updated ${counts.updated}`,
    },
    km.rowsPerSec,
    cm.rowsPerSec,
  );
  for (const t of ["e_copy", "e_kysely", "e_seqload"]) await dropTable(pool, t);
}
