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

export async function createTestDatabase(prefix = "db"): Promise<TestDatabase> {
  // Identifiers are limited to 63 bytes; keep the prefix short and plain so names stay readable.
  const clean =
    prefix
      .toLowerCase()
      .replace(/[^a-z0-9_]+/g, "_")
      .slice(0, 30) || "db";
  const name = `seqload_t_${clean}_${randomBytes(5).toString("hex")}`;
  const admin = adminUrl();
  await withClient(admin, (c) => c.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`));
  let dropped = false;
  return {
    url: urlForDatabase(admin, name),
    name,
    async drop() {
      if (dropped) return;
      dropped = true;
      // WITH (FORCE) (PostgreSQL 13+) ends sessions a test forgot to close instead of failing.
      await withClient(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`));
    },
  };
}
