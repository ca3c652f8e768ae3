/** The raw COPY reference (the limit) and cases (a)–(d): one big load each, on tables of their own. */
import type { LoadResult } from "../../src/index.js";
import { COPY_COLUMNS, copyChunks, copyInto } from "./copy.js";
import { type BenchMessage, permutation, permute, toBatches } from "./data.js";
import { dropTable, qualified, settle } from "./db.js";
import { CHUNK_ROWS, kyselyFor, kyselyUpsert } from "./kysely.js";
import {
  type Context,
  bestOf,
  cost,
  createTable,
  fmt,
  log,
  record,
  round2,
  runsNote,
  sumCounts,
  tableState,
  withClient,
} from "./context.js";
import { type KeyOrder, type LoadCounts, otherOrder } from "./report.js";
import { timed } from "./stats.js";

/** Raw COPY reference figures: rows/s in the cases' key order (the ×COPY denominator) and in the other order. */
export interface CopyReference {
  /** COPY text of the rows in the cases' key order (pre-fills the tables of (c) and (d)). */
  chunks: string[];
  rowsPerSec: number;
  otherRowsPerSec: number;
}

/**
 * Raw COPY of `data` (in key order `order`) into a fresh keyed table, streamed and pre-encoded,
 * and of the same rows in the other key order: keys in order are raw COPY's best case (the
 * primary key's B-tree grows at its right edge), shuffled keys are its worst.
 */
export async function referenceCopy(ctx: Context, data: BenchMessage[], order: KeyOrder): Promise<CopyReference> {
  const { pool } = ctx;
  const n = data.length;
  log(`ref: raw COPY of ${fmt(n)} rows into a fresh keyed table, keys ${order} and ${otherOrder(order)}`);
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
  // The same rows in the other key order (reordering not timed).
  const reordered = order === "shuffled" ? [...data].sort((x, y) => x.data.id - y.data.id) : permute(data, permutation(n, 1));
  const streamed = async (rows: BenchMessage[], label: string, note: string | undefined) => {
    const r = await bestOf(repeat, async () => {
      await createTable(pool, "ref_copy", null);
      await settle(pool, []);
      const t = await timed(() => withClient(pool, (c) => copyInto(c, qualified("ref_copy"), copyChunks(rows))));
      const state = await tableState(pool, "ref_copy");
      await dropTable(pool, "ref_copy");
      return { t, check: state.rows === n ? "ok" : `${state.rows} rows` };
    });
    const notes = [note, runsNote(r.runs)].filter((x) => x !== undefined).join("; ");
    return record(
      ctx,
      {
        case: "ref",
        method: `raw COPY, keys ${label}, encoded while streaming`,
        rows: n,
        ...cost(r.t),
        check: r.check,
        ...(notes === "" ? {} : { note: notes }),
      },
      null,
    );
  };
  const orderLabel = (o: KeyOrder) => (o === "in order" ? "in order (its best case)" : "shuffled");
  const same = await streamed(data, orderLabel(order), "×COPY reference: the cases' key order");
  ctx.copyRowsPerSec = same.rowsPerSec;
  const other = await streamed(reordered, orderLabel(otherOrder(order)), `reordering not timed; the ×COPY ${otherOrder(order)} reference`);

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
      method: `raw COPY of pre-encoded text, keys ${order} (server side only)`,
      rows: n,
      ...cost(pre.t),
      check: pre.check,
      note: runsNote(pre.runs),
    },
    null,
  );
  return { chunks, rowsPerSec: same.rowsPerSec, otherRowsPerSec: other.rowsPerSec };
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

  const floor = c.prefill === null ? null : await stagedFloor(ctx, c, km.rowsPerSec);

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
    const m = record(
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
    if (floor !== null) m.vsFloor = round2(m.rows / m.seconds / floor);
  }
}

/** The stage of the plain-SQL floor: the table's columns (copy.ts's COPY column list), no key. */
const FLOOR_STAGE = "pg_temp.bench_stage";
const FLOOR_STAGE_DDL = `CREATE TEMP TABLE bench_stage (
  "id" bigint, "name" text, "qty" bigint, "price" numeric, "active" boolean, "updated_at" timestamp with time zone, "_sequence" bigint
) ON COMMIT DROP`;

/** The apply statement of the floor, in the shape of seqload's (src/apply.ts). */
function floorUpsertSql(quotedTable: string): string {
  const data = ["name", "qty", "price", "active", "updated_at"].map((col) => `"${col}" = excluded."${col}"`);
  return `INSERT INTO ${quotedTable} AS t (${COPY_COLUMNS})
SELECT ${COPY_COLUMNS} FROM ${FLOOR_STAGE} ORDER BY "id"
ON CONFLICT ("id") DO UPDATE SET ${data.join(", ")}, "_sequence" = excluded."_sequence", "_loaded_at" = excluded."_loaded_at", "_deleted_at" = excluded."_deleted_at"
WHERE excluded."_sequence" > t."_sequence"`;
}

/**
 * The staged upsert in plain SQL, in one transaction: COPY the rows (encoded while streaming, as
 * raw COPY) into a temp stage, then one INSERT … SELECT … ORDER BY key ON CONFLICT … DO UPDATE …
 * WHERE excluded._sequence > stored, the shape of seqload's apply (src/apply.ts) without its
 * tombstone CASEs, stale pre-filter and counts, and no dedup (the data are unique). work_mem as
 * seqload sets it for a large batch (the key-order sort would spill at the default). This is what
 * PostgreSQL itself needs for the case: seqload's ×floor divides by it. Returns its rows/s.
 */
async function stagedFloor(ctx: Context, c: BulkCase, kyselyRowsPerSec: number): Promise<number> {
  const { pool } = ctx;
  const n = c.load.length;
  const r = await bestOf(ctx.opts.repeat, async () => {
    const table = `${c.id}_floor`;
    await createTable(pool, table, c.prefill);
    await settle(pool, [table]);
    const t = await timed(() =>
      withClient(pool, async (client) => {
        await client.query("BEGIN");
        try {
          await client.query(FLOOR_STAGE_DDL);
          await client.query("SET LOCAL work_mem = '256MB'");
          await copyInto(client, FLOOR_STAGE, copyChunks(c.load));
          const applied = await client.query(floorUpsertSql(qualified(table)));
          await client.query("COMMIT");
          return applied.rowCount ?? 0;
        } catch (e) {
          await client.query("ROLLBACK");
          throw e;
        }
      }),
    );
    const written = (c.expectCounts.inserted ?? 0) + (c.expectCounts.updated ?? 0);
    const stateCheck = checkState(c, await tableState(pool, table));
    await dropTable(pool, table);
    return {
      t,
      check: stateCheck !== "ok" ? stateCheck : t.value === written ? "ok" : `${fmt(t.value)} rows written, expected ${fmt(written)}`,
    };
  });
  const m = record(
    ctx,
    {
      case: c.id,
      method: "staged upsert in plain SQL (the floor, 1 tx)",
      rows: n,
      ...cost(r.t),
      check: r.check,
      note: runsNote(r.runs),
    },
    kyselyRowsPerSec,
  );
  return m.rows / m.seconds;
}
