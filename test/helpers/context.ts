/** Per-file database and loader helpers for the library tests. */
import pg from "pg";
import { afterAll, beforeAll } from "vitest";
import { type Loader, type LoaderOptions, createLoader } from "../../src/index.js";
import { type TestDatabase, createTestDatabase } from "./db.js";

export interface DbContext {
  readonly url: string;
  /** A loader on this file's database (closed after the file). */
  loader(options?: Partial<LoaderOptions>): Promise<Loader>;
  /** Run SQL on this file's database. */
  query<R extends pg.QueryResultRow = Record<string, unknown>>(text: string, params?: unknown[]): Promise<R[]>;
}

/** Create a fresh database for the calling test file; everything is dropped afterwards. */
export function useDatabase(prefix: string): DbContext {
  let db: TestDatabase | undefined;
  let pool: pg.Pool | undefined;
  const loaders: Loader[] = [];
  beforeAll(async () => {
    db = await createTestDatabase(prefix);
    pool = new pg.Pool({ connectionString: db.url, max: 4 });
    pool.on("error", () => {});
  });
  afterAll(async () => {
    for (const l of loaders) await l.close().catch(() => {});
    await pool?.end();
    await db?.drop();
  });
  return {
    get url() {
      if (!db) throw new Error("database not ready (use inside tests)");
      return db.url;
    },
    async loader(options = {}) {
      if (!db) throw new Error("database not ready");
      const l = await createLoader({ connectionString: db.url, ...options });
      loaders.push(l);
      return l;
    },
    async query<R extends pg.QueryResultRow>(text: string, params: unknown[] = []) {
      if (!pool) throw new Error("database not ready");
      return (await pool.query<R>(text, params)).rows;
    },
  };
}

/** The two staging paths every correctness test runs through: array parameters and COPY. */
export const PATHS = [
  { path: "unnest", copyThreshold: 1_000_000_000 },
  { path: "copy", copyThreshold: 0 },
] as const;

let counter = 0;
/** A table name unique within the file. */
export function uniqueTable(base: string): string {
  counter += 1;
  return `${base}_${counter}`;
}
