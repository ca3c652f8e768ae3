// Per-file isolation: every test file works in its own freshly created database on the server
// that test/globalSetup.ts provided, so files can run in parallel without seeing each other.
import { randomBytes } from "node:crypto";
import pg from "pg";
import { inject } from "vitest";

export interface TestDatabase {
  /** Connection string to the new database. */
  url: string;
  name: string;
  /** Drops the database, disconnecting any client still using it. Safe to call twice. */
  drop(): Promise<void>;
}

/** Connection string of the server-level (admin) connection from globalSetup. */
export function adminUrl(): string {
  return inject("adminUrl");
}

/** Worker URLs when the test server is a Citus coordinator, else [] (see test/globalSetup.ts). */
export function citusWorkers(): string[] {
  return inject("citusWorkers");
}

/** The same server, user, password and options as `adminUrl`, but database `dbName`. */
export function urlForDatabase(adminUrl: string, dbName: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${encodeURIComponent(dbName)}`;
  return url.toString();
}

/** Opens a pg.Client on `url`, runs `fn`, and always closes the client. */
export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Runs `fn` up to 5 times, 0.5 s, 1 s, 2 s, 4 s apart; the last failure is thrown. For idempotent set-up steps only. */
async function retried<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (attempt >= 5) throw e;
      const message = e instanceof Error ? e.message : String(e);
      console.warn(`test database set-up: attempt ${attempt} failed (${message}); trying again`);
      await new Promise((r) => setTimeout(r, 250 * 2 ** attempt));
    }
  }
}

export async function createTestDatabase(prefix = "db"): Promise<TestDatabase> {
  // Identifiers are limited to 63 bytes; keep the prefix short and plain so names stay readable.
  const clean =
    prefix
      .toLowerCase()
      .replace(/[^a-z0-9_]+/g, "_")
      .slice(0, 30) || "db";
  const name = `seqload_t_${clean}_${randomBytes(5).toString("hex")}`;
  const admin = adminUrl();
  const workers = citusWorkers();
  const quoted = pg.escapeIdentifier(name);
  await withClient(admin, (c) => c.query(`CREATE DATABASE ${quoted}`));
  if (workers.length > 0) {
    // Citus keeps its metadata per database: a new database needs the extension on every node and
    // its workers registered in the coordinator's copy (what citus/cluster.sh createdb does).
    for (const worker of workers) {
      await withClient(worker, (c) => c.query(`CREATE DATABASE ${quoted}`));
      await retried(() => withClient(urlForDatabase(worker, name), (c) => c.query("CREATE EXTENSION IF NOT EXISTS citus")));
    }
    await withClient(urlForDatabase(admin, name), async (c) => {
      const self = new URL(admin);
      await c.query("CREATE EXTENSION citus");
      // Tests use triggers to inject slowness and failures; on distributed tables Citus allows
      // them only with this setting (the trigger then runs on the shards).
      await c.query(`ALTER DATABASE ${quoted} SET citus.enable_unsafe_triggers = on`);
      await retried(() => c.query("SELECT citus_set_coordinator_host($1, $2)", [self.hostname, Number(self.port || "5432")]));
      for (const worker of workers) {
        const w = new URL(worker);
        // citus_add_node connects to the worker to copy the metadata there; on a loaded machine
        // that connection has failed now and then ("failure on connection marked as essential").
        // Adding a node that is already there returns its id, so trying again is safe.
        await retried(() => c.query("SELECT citus_add_node($1, $2)", [w.hostname, Number(w.port || "5432")]));
      }
    });
  }
  let dropped = false;
  return {
    url: urlForDatabase(admin, name),
    name,
    async drop() {
      if (dropped) return;
      dropped = true;
      // WITH (FORCE) (PostgreSQL 13+) ends sessions a test forgot to close instead of failing.
      await withClient(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${quoted} WITH (FORCE)`));
      for (const worker of workers) await withClient(worker, (c) => c.query(`DROP DATABASE IF EXISTS ${quoted} WITH (FORCE)`));
    },
  };
}
