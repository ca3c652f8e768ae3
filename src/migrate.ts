/**
 * seqload's own schema ("seqload"), migrated by umzug from the SQL files in migrations/
 * (NNNN_name.up.sql / NNNN_name.down.sql). A session advisory lock makes concurrent starters
 * take turns: the first applies what is pending, the others then find nothing to do.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type pg from "pg";
import type { UmzugStorage } from "umzug";
import { checkout } from "./options.js";
import { MIGRATIONS_DIR } from "./sql.js";
import { inTransaction } from "./transaction.js";

/** Advisory lock namespace for seqload (first int of the two-int form); second int 0 = migrations. */
export const LOCK_NAMESPACE = 0x5e0_10ad;

export interface MigrationStatus {
  executed: string[];
  pending: string[];
}

type Ctx = pg.PoolClient | pg.Client;

const storage: UmzugStorage<Ctx> = {
  async logMigration({ name, context }) {
    await context.query("INSERT INTO seqload.migrations (name) VALUES ($1)", [name]);
  },
  async unlogMigration({ name, context }) {
    await context.query("DELETE FROM seqload.migrations WHERE name = $1", [name]);
  },
  async executed({ context }) {
    const r = await context.query<{ name: string }>("SELECT name FROM seqload.migrations ORDER BY name");
    return r.rows.map((row) => row.name);
  },
};

function migrations() {
  const files = readdirSync(MIGRATIONS_DIR)
    .filter((f) => f.endsWith(".up.sql"))
    .sort();
  return files.map((file) => {
    const name = file.slice(0, -".up.sql".length);
    const upSql = readFileSync(join(MIGRATIONS_DIR, file), "utf8");
    let downSql: string | null = null;
    try {
      downSql = readFileSync(join(MIGRATIONS_DIR, `${name}.down.sql`), "utf8");
    } catch {
      downSql = null;
    }
    return {
      name,
      // Each migration and its log row commit together, or not at all.
      up: async ({ context }: { context: Ctx }) =>
        runInTransaction(context, upSql, "INSERT INTO seqload.migrations (name) VALUES ($1)", name),
      down: async ({ context }: { context: Ctx }) => {
        if (downSql === null) throw new Error(`migration ${name} has no down file`);
        await runInTransaction(context, downSql, "DELETE FROM seqload.migrations WHERE name = $1", name);
      },
    };
  });
}

async function runInTransaction(client: Ctx, text: string, logSql: string, name: string): Promise<void> {
  await inTransaction(client, async () => {
    await client.query(text);
    await client.query(logSql, [name]);
  });
}

async function umzugFor(client: Ctx, log: (line: string) => void) {
  // Imported only to migrate: umzug (with its own CLI's dependencies) takes ~100 ms to load, which
  // every `seqload load` paid up front although the check that nothing is pending needs no umzug.
  const { Umzug } = await import("umzug");
  // Logging the migration row is done inside the migration's transaction; the storage below
  // only reads, so its log/unlog are no-ops to avoid writing the row twice.
  return new Umzug<Ctx>({
    migrations: migrations(),
    context: client,
    storage: { ...storage, logMigration: async () => {}, unlogMigration: async () => {} },
    logger: {
      info: (m) => {
        const e = m as { event?: string; name?: string; durationSeconds?: number };
        if (e.event === "migrated") log(`migrated ${e.name} (${e.durationSeconds ?? 0}s)`);
        if (e.event === "reverted") log(`reverted ${e.name}`);
      },
      warn: () => {},
      error: () => {},
      debug: () => {},
    },
  });
}

async function withMigrationLock<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await checkout(pool);
  let broken: Error | undefined;
  try {
    await client.query("SELECT pg_advisory_lock($1, 0)", [LOCK_NAMESPACE]);
    try {
      await client.query("CREATE SCHEMA IF NOT EXISTS seqload");
      await client.query(
        "CREATE TABLE IF NOT EXISTS seqload.migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
      );
      return await fn(client);
    } finally {
      await client.query("SELECT pg_advisory_unlock($1, 0)", [LOCK_NAMESPACE]);
    }
  } catch (e) {
    broken = e as Error;
    throw e;
  } finally {
    client.release(broken);
  }
}

/** Apply every pending migration; returns the names applied. */
export async function migrateUp(pool: pg.Pool, log: (line: string) => void = () => {}): Promise<string[]> {
  return withMigrationLock(pool, async (client) => {
    const done = await (await umzugFor(client, log)).up();
    return done.map((m) => m.name);
  });
}

/** Revert migrations: the last one, or all of them with `{ all: true }`. Returns the names reverted. */
export async function migrateDown(pool: pg.Pool, opts: { all?: boolean } = {}, log: (line: string) => void = () => {}): Promise<string[]> {
  return withMigrationLock(pool, async (client) => {
    const done = await (await umzugFor(client, log)).down(opts.all ? { to: 0 } : undefined);
    return done.map((m) => m.name);
  });
}

export async function migrationStatus(pool: pg.Pool): Promise<MigrationStatus> {
  const client = await checkout(pool);
  try {
    const has = await client.query<{ ok: boolean }>("SELECT to_regclass('seqload.migrations') IS NOT NULL AS ok");
    const all = migrations().map((m) => m.name);
    const executed = has.rows[0]?.ok ? await storage.executed({ context: client }) : [];
    return { executed, pending: all.filter((n) => !executed.includes(n)) };
  } finally {
    client.release();
  }
}

/** True when every migration this version knows is applied (cheap check used by createLoader). */
export async function isUpToDate(pool: pg.Pool): Promise<boolean> {
  const s = await migrationStatus(pool);
  return s.pending.length === 0;
}
