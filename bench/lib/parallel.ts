/** Case (f): 8 writers in parallel on shared keys; the final state is checked key by key. */
import pg from "pg";
import { type LoadResult, type Loader, createLoader } from "../../src/index.js";
import { copyChunks } from "./copy.js";
import { benchSchema, contendedStreams, toBatches } from "./data.js";
import { BENCH_SCHEMA, dropTable, qualified, settle } from "./db.js";
import { kyselyFor, kyselyUpsert } from "./kysely.js";
import { type Context, cost, createTable, fmt, log, record, sumCounts } from "./context.js";
import { timed } from "./stats.js";

async function wrongKeys(pool: pg.Pool, table: string): Promise<number> {
  const r = await pool.query<{ bad: string }>(`SELECT count(*) AS bad
FROM ${qualified("f_expected")} e FULL JOIN ${qualified(table)} t ON t."id" = e."id"
WHERE e."id" IS NULL OR t."id" IS NULL OR t."_sequence" <> e."_sequence"
   OR t."name" IS DISTINCT FROM e."name" OR t."qty" IS DISTINCT FROM e."qty" OR t."price" IS DISTINCT FROM e."price"
   OR t."active" IS DISTINCT FROM e."active" OR t."updated_at" IS DISTINCT FROM e."updated_at"`);
  return Number(r.rows[0]?.bad);
}

function split<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

export async function parallelCase(ctx: Context): Promise<void> {
  const { pool, opts } = ctx;
  const total = opts.parallelRows;
  const writers = opts.writers;
  const keys = Math.max(1000, Math.floor(total / 5));
  const size = opts.parallelBatchSize;
  log(
    `(f) ${writers} loaders in parallel: ${fmt(total)} messages over ${fmt(keys)} shared keys, batches of ${fmt(size)}, random unique sequences`,
  );
  const { streams, winners } = contendedStreams(total, keys, writers, 20240601);
  await createTable(pool, "f_expected", [...copyChunks([...winners.values()])]);

  // kysely: each writer sorts its batch by id (without that, writers deadlock each other) and retries on deadlock.
  await createTable(pool, "f_kysely", null);
  await settle(pool, ["f_expected"]);
  const kPool = new pg.Pool({ connectionString: ctx.connectionString, max: writers });
  const kdb = kyselyFor(kPool);
  await Promise.all(Array.from({ length: writers }, () => kPool.query("SELECT 1")));
  const k = await timed(() =>
    Promise.all(
      streams.map(async (stream) => {
        let retries = 0;
        for (const batch of split(stream, size)) retries += await kyselyUpsert(kdb, "f_kysely", batch, true);
        return retries;
      }),
    ),
  );
  await kPool.end();
  const kBad = await wrongKeys(pool, "f_kysely");
  const kRetries = k.value.reduce((a, b) => a + b, 0);
  const km = record(
    ctx,
    {
      case: "f",
      method: `kysely baseline, ${writers} writers (sorted, retry)`,
      rows: total,
      ...cost(k),
      check: kBad === 0 ? "ok" : `${fmt(kBad)} keys wrong`,
      note: `${kRetries} deadlock retries`,
    },
    null,
  );
  await dropTable(pool, "f_kysely");

  // seqload: 8 independent loaders (own pools), warmed up, all started at once.
  await createTable(pool, "f_seqload", null);
  const loaders: Loader[] = [];
  for (let w = 0; w < writers; w++)
    loaders.push(await createLoader({ connectionString: ctx.connectionString, schema: BENCH_SCHEMA, poolSize: 2 }));
  for (const [w, l] of loaders.entries())
    await l.loadBatch({
      table_name: "warmup",
      key_names: ["id"],
      schema: benchSchema(),
      messages: [{ action: "upsert", sequence: w + 1, data: { id: w, name: "warm" } }],
    });
  const batchesPerWriter = streams.map((s) => toBatches("f_seqload", s, size));
  await settle(pool, []);
  const s = await timed(() =>
    Promise.all(
      loaders.map(async (l, w) => {
        const results: LoadResult[] = [];
        for (const b of batchesPerWriter[w] ?? []) results.push(await l.loadBatch(b));
        return results;
      }),
    ),
  );
  for (const l of loaders) await l.close();
  const counts = sumCounts(s.value.flat());
  const bad = await wrongKeys(pool, "f_seqload");
  const sum = counts.collapsed + counts.inserted + counts.updated + counts.deleted + counts.skipped;
  const check =
    bad !== 0
      ? `${fmt(bad)} keys wrong`
      : counts.inserted !== winners.size
        ? `inserted ${fmt(counts.inserted)} ≠ ${fmt(winners.size)} keys`
        : sum !== total
          ? "counts do not add up"
          : "ok";
  record(ctx, { case: "f", method: `seqload, ${writers} loaders`, rows: total, ...cost(s), counts, check }, km.rowsPerSec);
  await dropTable(pool, "f_seqload");
  await dropTable(pool, "f_expected");
}
