/**
 * The hand-written baseline: what a careful user writes with kysely. Dedup the batch in JS (per id
 * the highest sequence, the later message on a tie), then multi-row INSERT … VALUES of 1,000 rows
 * per statement with ON CONFLICT (id) DO UPDATE … WHERE excluded._sequence > t._sequence, all
 * chunks of a batch in one transaction. `sorted` orders rows by id first (needed against deadlocks
 * once several writers share keys); the single-writer cases leave it off, as most users would.
 */
import { type Kysely, type Transaction, sql } from "kysely";
import { Kysely as KyselyClass, PostgresDialect } from "kysely";
import type pg from "pg";
import { BENCH_SCHEMA } from "./db.js";
import type { BenchMessage } from "./data.js";

interface BenchTable {
  id: number;
  name: string | null;
  qty: number | null;
  price: number;
  active: boolean;
  updated_at: string;
  _sequence: bigint;
}

type BenchDB = Record<string, BenchTable>;

export const CHUNK_ROWS = 1000;

export function kyselyFor(pool: pg.Pool): Kysely<BenchDB> {
  return new KyselyClass<BenchDB>({ dialect: new PostgresDialect({ pool }) });
}

function dedup(messages: readonly BenchMessage[]): BenchTable[] {
  const latest = new Map<number, BenchMessage>();
  for (const m of messages) {
    const seen = latest.get(m.data.id);
    if (seen === undefined || m.sequence >= seen.sequence) latest.set(m.data.id, m);
  }
  const rows: BenchTable[] = [];
  for (const m of latest.values()) rows.push({ ...m.data, _sequence: m.sequence });
  return rows;
}

async function upsertChunk(db: Kysely<BenchDB> | Transaction<BenchDB>, table: string, chunk: BenchTable[]): Promise<void> {
  await db
    .withSchema(BENCH_SCHEMA)
    .insertInto(table)
    .values(chunk)
    .onConflict((oc) =>
      oc
        .column("id")
        .doUpdateSet((eb) => ({
          name: eb.ref("excluded.name"),
          qty: eb.ref("excluded.qty"),
          price: eb.ref("excluded.price"),
          active: eb.ref("excluded.active"),
          updated_at: eb.ref("excluded.updated_at"),
          _sequence: eb.ref("excluded._sequence"),
        }))
        // kysely 0.28's insertInto takes no alias: the target is referred to by its table name.
        .where("excluded._sequence", ">", sql.ref<bigint>(`${table}._sequence`)),
    )
    .execute();
}

/**
 * Upsert one batch. A single chunk runs as one statement (atomic by itself); more chunks share a
 * transaction. Retries the whole batch on deadlock / serialization failure, as a user must.
 * Returns the number of retries.
 */
export async function kyselyUpsert(db: Kysely<BenchDB>, table: string, messages: readonly BenchMessage[], sorted = false): Promise<number> {
  const rows = dedup(messages);
  if (sorted) rows.sort((a, b) => a.id - b.id);
  const chunks: BenchTable[][] = [];
  for (let i = 0; i < rows.length; i += CHUNK_ROWS) chunks.push(rows.slice(i, i + CHUNK_ROWS));
  for (let retries = 0; ; retries++) {
    try {
      if (chunks.length === 1) await upsertChunk(db, table, chunks[0] as BenchTable[]);
      else
        await db.transaction().execute(async (trx) => {
          for (const chunk of chunks) await upsertChunk(trx, table, chunk);
        });
      return retries;
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if ((code !== "40P01" && code !== "40001") || retries >= 20) throw e;
    }
  }
}
