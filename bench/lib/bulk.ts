/** The raw COPY reference (the limit) and cases (a)–(d): one big load each, on tables of their own. */
import type { LoadResult } from "../../src/index.js";
import { copyChunks, copyInto } from "./copy.js";
import { type BenchMessage, toBatches } from "./data.js";
import { dropTable, qualified, settle } from "./db.js";
import { CHUNK_ROWS, kyselyFor, kyselyUpsert } from "./kysely.js";
import { type Context, bestOf, cost, createTable, fmt, log, record, runsNote, sumCounts, tableState, withClient } from "./context.js";
import type { LoadCounts } from "./report.js";
import { timed } from "./stats.js";

export async function referenceCopy(ctx: Context, data: BenchMessage[]): Promise<string[]> {
  const { pool } = ctx;
  const n = data.length;
  log(`ref: raw COPY of ${fmt(n)} rows into a fresh keyed table`);
  const encode = await timed(async () => {
    let bytes = 0;
    for (const chunk of copyChunks(data)) bytes += chunk.length;
    return bytes;
  });
  record(
    ctx,
    { case: "ref", method: "JS COPY-text encoding only (no database)", rows: n, ...cost(encode), note: `${fmt(encode.value)} characters` },
    null,
  );

  const repeat = ctx.opts.repeat;
  const copy = await bestOf(repeat, async () => {
    await createTable(pool, "ref_copy", null);
    await settle(pool, []);
    const t = await timed(() => withClient(pool, (c) => copyInto(c, qualified("ref_copy"), copyChunks(data))));
    const state = await tableState(pool, "ref_copy");
    await dropTable(pool, "ref_copy");
    return { t, check: state.rows === n ? "ok" : `${state.rows} rows` };
  });
  const m = record(
    ctx,
    {
      case: "ref",
      method: "raw COPY, encoded while streaming (the limit)",
      rows: n,
      ...cost(copy.t),
      check: copy.check,
      note: runsNote(copy.runs),
    },
    null,
  );
  ctx.copyRowsPerSec = m.rowsPerSec;

  const chunks = [...copyChunks(data)];
  const pre = await bestOf(repeat, async () => {
    await createTable(pool, "ref_copy_pre", null);
    await settle(pool, []);
    const t = await timed(() => withClient(pool, (c) => copyInto(c, qualified("ref_copy_pre"), chunks)));
    await dropTable(pool, "ref_copy_pre");
    return { t, check: "ok" };
  });
  record(
    ctx,
    {
      case: "ref",
      method: "raw COPY of pre-encoded text (server side only)",
      rows: n,
      ...cost(pre.t),
      check: pre.check,
      note: runsNote(pre.runs),
    },
    null,
  );

  // Key order matters to the primary key's B-tree: shown for reference, not used as a denominator.
  const sorted = [...data].sort((x, y) => x.data.id - y.data.id);
  const inOrder = await bestOf(repeat, async () => {
    await createTable(pool, "ref_copy_sorted", null);
    await settle(pool, []);
    const t = await timed(() => withClient(pool, (c) => copyInto(c, qualified("ref_copy_sorted"), copyChunks(sorted))));
    await dropTable(pool, "ref_copy_sorted");
    return { t, check: "ok" };
  });
  record(
    ctx,
    {
      case: "ref",
      method: "raw COPY, same rows in key order (sort not timed)",
      rows: n,
      ...cost(inOrder.t),
      check: inOrder.check,
      note: runsNote(inOrder.runs),
    },
    null,
  );
  return chunks;
}

// ---------------------------------------------------------------------------------------------
// Cases (a)–(d): one big load each, on tables of their own

export interface BulkCase {
  id: "a" | "b" | "c" | "d";
  title: string;
  load: BenchMessage[];
  /** COPY text to pre-fill every target table with; null = (a): no table for seqload, an empty one for kysely. */
  prefill: readonly string[] | null;
  expectRows: number;
  /** Rows whose sequence is from version ≥ 1 after the load. */
  expectNewer: number;
  expectCounts: Partial<LoadCounts>;
}

function checkState(c: BulkCase, state: { rows: number; newer: number }): string {
  if (state.rows !== c.expectRows) return `${fmt(state.rows)} rows, expected ${fmt(c.expectRows)}`;
  if (state.newer !== c.expectNewer) return `${fmt(state.newer)} rows with newer sequences, expected ${fmt(c.expectNewer)}`;
  return "ok";
}

function checkCounts(c: BulkCase, counts: LoadCounts): string {
  for (const [k, v] of Object.entries(c.expectCounts) as [keyof LoadCounts, number][]) {
    if (counts[k] !== v) return `LoadResult.${k} = ${fmt(counts[k])}, expected ${fmt(v)}`;
  }
  const sum = counts.collapsed + counts.inserted + counts.updated + counts.deleted + counts.skipped;
  if (sum !== counts.received) return `counts do not add up to received (${fmt(sum)} ≠ ${fmt(counts.received)})`;
  return "ok";
}

export async function bulkCase(ctx: Context, c: BulkCase): Promise<void> {
  const { pool } = ctx;
  const n = c.load.length;
  log(`${c.title}`);

  const repeat = ctx.opts.repeat;
  const db = kyselyFor(pool);
  const k = await bestOf(repeat, async () => {
    const kTable = `${c.id}_kysely`;
    await createTable(pool, kTable, c.prefill);
    await settle(pool, c.prefill === null ? [] : [kTable]);
    const t = await timed(() => kyselyUpsert(db, kTable, c.load));
    const check = checkState(c, await tableState(pool, kTable));
    await dropTable(pool, kTable);
    return { t, check };
  });
  const km = record(
    ctx,
    {
      case: c.id,
      method: `kysely baseline (1 tx, ${fmt(CHUNK_ROWS)}-row VALUES)`,
      rows: n,
      ...cost(k.t),
      check: k.check,
      note: runsNote(k.runs),
    },
    null,
  );

  const sizes = [n, Math.ceil(n / 10)];
  for (const size of sizes) {
    const count = Math.ceil(n / size);
    const r = await bestOf(repeat, async (rep) => {
      // A table name per run: for (a) every run must meet a table that does not exist yet.
      const table = `${c.id}_seqload_${count}_${rep}`;
      if (c.prefill !== null) await createTable(pool, table, c.prefill);
      else await dropTable(pool, table);
      await settle(pool, c.prefill === null ? [] : [table]);
      const batches = toBatches(table, c.load, size);
      const t = await timed(async () => {
        const results: LoadResult[] = [];
        for (const b of batches) results.push(await ctx.loader.loadBatch(b));
        return sumCounts(results);
      });
      const stateCheck = checkState(c, await tableState(pool, table));
      await dropTable(pool, table);
      return { t, check: stateCheck !== "ok" ? stateCheck : checkCounts(c, t.value) };
    });
    record(
      ctx,
      {
        case: c.id,
        method: `seqload ${count}×${fmt(size)}`,
        rows: n,
        ...cost(r.t),
        counts: r.t.value,
        check: r.check,
        note: runsNote(r.runs),
      },
      km.rowsPerSec,
    );
  }
}
