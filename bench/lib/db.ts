/** The one database of a bench run, and the plain SQL the bench needs around the timed sections. */
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { startEmbeddedPostgres } from "../../src/embedded.js";

export const BENCH_SCHEMA = "seqload_bench";

export interface BenchDatabase {
  connectionString: string;
  /** "DATABASE_URL" or "embedded PostgreSQL (temp dir)". */
  source: string;
  stop(): Promise<void>;
}

/** DATABASE_URL if set, else an embedded PostgreSQL in a temp dir, removed by stop(). */
export async function provideDatabase(): Promise<BenchDatabase> {
  const url = process.env.DATABASE_URL;
  if (url !== undefined && url !== "") return { connectionString: url, source: "DATABASE_URL", stop: async () => {} };
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "seqload-bench-"));
  const server = await startEmbeddedPostgres({ dataDir: path.join(dataDir, "data"), persistent: false });
  return {
    connectionString: server.connectionString,
    source: "embedded PostgreSQL (temp dir)",
    async stop() {
      await server.stop();
      await fs.rm(dataDir, { recursive: true, force: true });
    },
  };
}

const q = (name: string): string => `"${name.replaceAll('"', '""')}"`;
export const qualified = (table: string): string => `${q(BENCH_SCHEMA)}.${q(table)}`;

/** The table seqload would create for the bench schema (same columns, types, key and defaults). */
export function createTableSql(table: string): string {
  return `CREATE TABLE ${qualified(table)} (
  "id" bigint NOT NULL,
  "name" text,
  "qty" bigint,
  "price" numeric,
  "active" boolean,
  "updated_at" timestamp with time zone,
  "_sequence" bigint NOT NULL,
  "_loaded_at" timestamp with time zone NOT NULL DEFAULT now(),
  "_deleted_at" timestamp with time zone,
  PRIMARY KEY ("id")
)`;
}

export async function resetSchema(pool: pg.Pool): Promise<void> {
  await pool.query(`DROP SCHEMA IF EXISTS ${q(BENCH_SCHEMA)} CASCADE`);
  await pool.query(`CREATE SCHEMA ${q(BENCH_SCHEMA)}`);
}

export async function dropSchema(pool: pg.Pool): Promise<void> {
  await pool.query(`DROP SCHEMA IF EXISTS ${q(BENCH_SCHEMA)} CASCADE`);
  // seqload's load log grows by one row per batch; keep it from skewing later runs.
  await pool.query("DELETE FROM seqload.loads WHERE schema_name = $1").catch(() => {});
}

export async function dropTable(pool: pg.Pool, table: string): Promise<void> {
  await pool.query(`DROP TABLE IF EXISTS ${qualified(table)}`);
}

/**
 * Before a timed section: settle a pre-filled table (hint bits, visibility map, statistics) so the
 * timed statement does not pay for the fill, and flush dirty buffers so that no checkpoint from an
 * earlier section lands in this one. CHECKPOINT needs superuser or pg_checkpoint; skipped without.
 */
export async function settle(pool: pg.Pool, tables: string[]): Promise<void> {
  for (const t of tables) await pool.query(`VACUUM (ANALYZE) ${qualified(t)}`);
  await pool.query("CHECKPOINT").catch(() => {});
}

export interface ServerFacts {
  version: string;
  settings: Record<string, string>;
}

const SETTINGS = [
  "shared_buffers",
  "work_mem",
  "maintenance_work_mem",
  "synchronous_commit",
  "fsync",
  "wal_level",
  "max_wal_size",
  "temp_buffers",
  "checkpoint_timeout",
];

export async function serverFacts(pool: pg.Pool): Promise<ServerFacts> {
  const v = await pool.query<{ v: string }>("SELECT version() AS v");
  const s = await pool.query<{ name: string; setting: string }>(
    "SELECT name, current_setting(name) AS setting FROM unnest($1::text[]) AS name",
    [SETTINGS],
  );
  const settings: Record<string, string> = {};
  for (const row of s.rows) settings[row.name] = row.setting;
  return { version: v.rows[0]?.v ?? "unknown", settings };
}
