/**
 * `npm run bench [-- --quick] [-- --rows N]`: one run on one database (DATABASE_URL, else an
 * embedded PostgreSQL 18 in a temp dir). For every case it prints seqload's rows/s and these ratios,
 * measured in this same process on the same data:
 *   ×COPY   against raw `COPY t FROM STDIN` (text, pg-copy-streams) of the same rows, in the same
 *           key order as the cases' data, into a fresh table of the same shape with a bigint
 *           primary key: the physical limit; raw COPY runs with keys in order (its best case) and
 *           shuffled, and the ratio to the other order is printed beside it;
 *   ×floor  for (b)–(d), against the staged upsert in plain SQL (COPY into a temp stage, one
 *           INSERT … SELECT … ORDER BY id ON CONFLICT … WHERE, one transaction): PostgreSQL's own work;
 *   ×kysely against the hand-written baseline: dedup in JS, then kysely
 *           insertInto().values(1,000 rows).onConflict(…doUpdateSet….where(excluded._sequence > t._sequence))
 *           with all chunks of a batch in one transaction.
 * Cases: (a) new rows into a new table; (b) new keys into a table holding as many other keys;
 * (c) updates with higher sequences; (d) stale replays; (e) many 100-message batches on a warm
 * loader (p50/p99); (f) 8 loaders in parallel on shared keys (final state checked); (g) peak RSS of
 * the CLI loading a JSON Lines file (when dist/src/cli.js exists). Input data is generated before
 * each timed section; every timed section starts after VACUUM (ANALYZE) of pre-filled tables and a
 * CHECKPOINT. The targets of issues 5 and 15 are judged on this run and printed; the last line of
 * output is one JSON object with every figure.
 * The cases live in bench/lib/ (bulk.ts, stream.ts, parallel.ts, cli.ts); phases.ts is a separate
 * experiment harness that splits the time of the data path (node dist/bench/lib/phases.js).
 */
import os from "node:os";
import { performance } from "node:perf_hooks";
import pg from "pg";
import { type Loader, createLoader } from "../src/index.js";
import { parseArgs } from "./lib/args.js";
import { type CopyReference, bulkCase, referenceCopy } from "./lib/bulk.js";
import { cliCase } from "./lib/cli.js";
import { type Context, fmt, log, round2 } from "./lib/context.js";
import { copyChunks } from "./lib/copy.js";
import { cpuStallMicros, serverCpuMeter } from "./lib/cpu.js";
import { type BenchMessage, benchSchema, dataSet, permutation } from "./lib/data.js";
import { BENCH_SCHEMA, dropSchema, provideDatabase, resetSchema, serverFacts } from "./lib/db.js";
import { httpHook } from "./lib/http-hook.js";
import { kyselyFor, kyselyUpsert } from "./lib/kysely.js";
import { parallelCase } from "./lib/parallel.js";
import {
  type HttpRatio,
  type KeyOrder,
  addOtherOrderRatios,
  measurementTable,
  otherOrder,
  targetChecks,
  targetTable,
} from "./lib/report.js";
import { maxRssMb, rssMb, useServerCpuMeter } from "./lib/stats.js";
import { streamCase } from "./lib/stream.js";

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const startedAt = new Date();
  const n = opts.rows;
  const cpus = os.cpus();
  const machine = {
    cores: cpus.length,
    cpu: cpus[0]?.model.trim() ?? "unknown",
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    /** Other work on the machine skews the figures: 1-minute load average before the run. */
    loadAvgBefore: round2(os.loadavg()[0] ?? 0),
  };
  log(
    `seqload bench${opts.quick ? " --quick" : ""}: ${fmt(n)} rows per bulk case, ${machine.cores} cores (${machine.cpu}), Node ${machine.node}`,
  );
  const stall0 = await cpuStallMicros();
  const wall0 = performance.now();
  const database = await provideDatabase();
  const pool = new pg.Pool({ connectionString: database.connectionString, max: 4 });
  pool.on("error", () => {});
  let loader: Loader | null = null;
  try {
    const server = await serverFacts(pool);
    log(`database: ${database.source}, ${server.version}`);
    await resetSchema(pool);
    useServerCpuMeter(await serverCpuMeter(pool));
    loader = await createLoader({ connectionString: database.connectionString, schema: BENCH_SCHEMA });
    // Migrations, pool connections and the JIT of the data path happen here, untimed.
    await loader.loadBatch({
      table_name: "warmup",
      key_names: ["id"],
      schema: benchSchema(),
      messages: dataSet(100, { version: 0, parity: 0, order: null }),
    });
    await kyselyUpsert(kyselyFor(pool), "warmup", dataSet(100, { version: 1, parity: 0, order: null }));
    const ctx: Context = { opts, pool, connectionString: database.connectionString, loader, measurements: [], copyRowsPerSec: null };

    // (e) first, while the heap is small: with a million generated rows held, every major GC of
    // the bench process would be charged to whichever 100-message batch it interrupts.
    if (opts.cases.has("e")) await streamCase(ctx);

    const order = opts.shuffled ? permutation(n, 1) : null;
    const bulk = ["a", "b", "c", "d", "f", "g"].some((c) => opts.cases.has(c));
    let base: BenchMessage[] | null = bulk ? dataSet(n, { version: 0, parity: 0, order }) : null;
    const keyOrder: KeyOrder = opts.shuffled ? "shuffled" : "in order";
    // The COPY text is let go with the bulk data below; only the reference's rates stay.
    let baseChunks: string[] | null = null;
    let reference: Omit<CopyReference, "chunks"> | null = null;
    if (base !== null) ({ chunks: baseChunks, ...reference } = await referenceCopy(ctx, base, keyOrder));

    if (base !== null && opts.cases.has("a")) {
      await bulkCase(ctx, {
        id: "a",
        title: `(a) ${fmt(n)} new rows into a new table`,
        load: base,
        prefill: null,
        expectRows: n,
        expectNewer: 0,
        expectCounts: { inserted: n, updated: 0, skipped: 0 },
      });
    }
    if (base !== null && opts.cases.has("b")) {
      const others = [...copyChunks(dataSet(n, { version: 0, parity: 1, order: null }))];
      await bulkCase(ctx, {
        id: "b",
        title: `(b) ${fmt(n)} new keys into an existing table that holds ${fmt(n)} other keys (interleaved: odd ids held, even ids loaded)`,
        load: base,
        prefill: others,
        expectRows: 2 * n,
        expectNewer: 0,
        expectCounts: { inserted: n, updated: 0, skipped: 0 },
      });
    }
    if (baseChunks !== null && opts.cases.has("c")) {
      const updates = dataSet(n, { version: 1, parity: 0, order: opts.shuffled ? permutation(n, 2) : null });
      await bulkCase(ctx, {
        id: "c",
        title: `(c) ${fmt(n)} updates: the table holds every key, each message has a higher sequence and new values`,
        load: updates,
        prefill: baseChunks,
        expectRows: n,
        expectNewer: n,
        expectCounts: { inserted: 0, updated: n, skipped: 0 },
      });
    }
    if (base !== null && baseChunks !== null && opts.cases.has("d")) {
      await bulkCase(ctx, {
        id: "d",
        title: `(d) ${fmt(n)} stale replays: the same messages again (equal sequences)`,
        load: base,
        prefill: baseChunks,
        expectRows: n,
        expectNewer: 0,
        expectCounts: { inserted: 0, updated: 0, skipped: n },
      });
    }
    // Let the bulk data go before (f) builds its own, and rebuild it for (g) (it is deterministic).
    base = null;
    baseChunks = null;
    if (opts.cases.has("f")) await parallelCase(ctx);
    if (opts.cases.has("g")) await cliCase(ctx, dataSet(n, { version: 0, parity: 0, order }));

    addOtherOrderRatios(ctx.measurements, reference?.otherRowsPerSec ?? null);
    const http = await httpHook(ctx);
    const peakRss = maxRssMb();

    const settingsLine = Object.entries(server.settings)
      .map(([k, v]) => `${k}=${v}`)
      .join(", ");
    const out: string[] = [];
    out.push("");
    out.push(`seqload bench — ${startedAt.toISOString()}${opts.quick ? " (--quick)" : ""}`);
    const loadAfter = round2(os.loadavg()[0] ?? 0);
    const stall1 = await cpuStallMicros();
    const cpuStallPct =
      stall0 === null || stall1 === null ? null : Math.round(((stall1 - stall0) / 1000 / (performance.now() - wall0)) * 100);
    out.push(
      `machine:    ${machine.cores} cores, ${machine.cpu}, ${machine.memoryGb} GB, ${machine.os}; Node ${machine.node}; load average ${machine.loadAvgBefore} before, ${loadAfter} after`,
    );
    if (cpuStallPct !== null)
      out.push(
        `contention: some task waited for a CPU during ${cpuStallPct}% of the run (Linux PSI; this bench's own Node + PostgreSQL included)`,
      );
    out.push(`PostgreSQL: ${server.version} (${database.source}; client and server share the cores)`);
    out.push(`settings:   ${settingsLine}`);
    out.push(
      `data:       ${fmt(n)} rows of 6 columns (bigint key id, text, integer, number, boolean, date-time) + 19-digit bigint sequences; ${opts.shuffled ? "shuffled" : "ascending"} key order; ~5% NULLs, 1% names needing COPY escapes`,
    );
    out.push(
      `ratios:     ×COPY = rows/s ÷ raw COPY (encoded while streaming) of the same rows, keys ${keyOrder} as in the cases' data, into a fresh keyed table of the same shape`,
    );
    out.push("            (for (e): ÷ raw COPY of the same 100-row batches, one COPY each);");
    out.push(`            ×COPY ${otherOrder(keyOrder)} = rows/s ÷ raw COPY of the same rows with keys ${otherOrder(keyOrder)} ((a)–(d));`);
    out.push(
      "            ×floor = rows/s ÷ the staged upsert in plain SQL of the same case ((b)–(d): COPY to a temp stage, INSERT … SELECT … ORDER BY id ON CONFLICT … WHERE, one transaction);",
    );
    out.push(
      "            ×kysely = rows/s ÷ the kysely baseline of the same case (dedup in JS, 1,000-row INSERT … VALUES … ON CONFLICT … WHERE, one transaction)",
    );
    out.push(
      "cpu:        Node cpu s = CPU time of this process (input already built); PG cpu s = CPU time of all PostgreSQL processes (when local)",
    );
    out.push(
      `seqload:    default options (copyThreshold 5000, poolSize 4); (a)–(d) as one batch of all rows and as 10 batches${opts.repeat > 1 ? `; reference and (a)–(d): best of ${opts.repeat} runs` : "; one run each"}`,
    );
    out.push("");
    out.push(measurementTable(ctx.measurements, otherOrder(keyOrder)));
    out.push("");
    const targets = targetChecks(ctx.measurements, keyOrder, isHttpRatio(http) ? http : null);
    out.push("issue 5 targets (best seqload batching per case):");
    out.push(targetTable(targets.filter((t) => t.issue === 5)));
    out.push("");
    out.push(`issue 15 targets (best seqload batching per case; ×COPY against raw COPY with keys ${keyOrder}, as the data):`);
    out.push(targetTable(targets.filter((t) => t.issue === 15)));
    out.push("");
    out.push(
      `peak RSS of the bench process (maxRSS): ${fmt(peakRss)} MB (it holds the generated input: ${fmt(n)} messages, their COPY text, and a second version for (c))`,
    );
    out.push("");
    console.log(out.join("\n"));
    const json = {
      bench: "seqload",
      startedAt: startedAt.toISOString(),
      quick: opts.quick,
      rows: n,
      keyOrder,
      machine: { ...machine, loadAvgAfter: loadAfter, cpuStallPct },
      postgres: { version: server.version, source: database.source, settings: server.settings },
      copyRowsPerSec: ctx.copyRowsPerSec,
      copyReference: {
        keyOrder,
        rowsPerSec: reference?.rowsPerSec ?? null,
        otherKeyOrder: otherOrder(keyOrder),
        otherRowsPerSec: reference?.otherRowsPerSec ?? null,
      },
      measurements: ctx.measurements,
      targets,
      peakRssMb: peakRss,
      rssAtEndMb: rssMb(),
      http,
    };
    console.log(JSON.stringify(json));
  } finally {
    if (loader !== null) await loader.close();
    await dropSchema(pool).catch(() => {});
    await pool.end();
    await database.stop();
  }
}

function isHttpRatio(x: unknown): x is HttpRatio {
  const r = x as Partial<HttpRatio> | null;
  return typeof r === "object" && r !== null && typeof r.httpBatchesPerSec === "number" && typeof r.libraryBatchesPerSec === "number";
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exitCode = 1;
});
