// Faults: killed connections, timeouts, lock waits, deadlocks and a restarted server. A batch is
// all-or-nothing, the caller learns whether retrying is safe, and the loader heals by itself.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { startEmbeddedPostgres } from "../src/embedded.js";
import { ConnectionError, DatabaseError, RetryExhaustedError, createLoader } from "../src/index.js";
import { uniqueTable, useDatabase } from "./helpers/context.js";
import { citusWorkers } from "./helpers/db.js";

const ctx = useDatabase("faults");
const schema = { properties: { id: { type: "integer" }, v: { type: "string" } } };
const rows = (n: number, sequence: number, v: string) =>
  Array.from({ length: n }, (_, id) => ({ action: "upsert", sequence, data: { id, v } }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A statement-level trigger that makes every write to `t` take `seconds`: a window to act in. */
async function slowDown(t: string, seconds: number) {
  await ctx.query(
    `create or replace function "${t}_slow"() returns trigger language plpgsql as $$ begin perform pg_sleep(${seconds}); return null; end $$`,
  );
  await ctx.query(`create trigger slow before insert on "${t}" for each statement execute function "${t}_slow"()`);
}

/**
 * The loader's backend, once its statement sleeps in the trigger. On a Citus coordinator the
 * trigger sleeps on the workers' shards: citus_stat_activity names the global pid of the
 * coordinator backend that sent it, and pg_terminate_backend(global pid) ends that backend.
 */
async function waitForSleepingBackend(): Promise<string> {
  const citus = citusWorkers().length > 0;
  for (let i = 0; i < 200; i++) {
    const r = await ctx.query<{ pid: string }>(
      citus
        ? "select global_pid::text as pid from citus_stat_activity where wait_event = 'PgSleep' and datname = current_database() limit 1"
        : "select pid::text as pid from pg_stat_activity where wait_event = 'PgSleep' and datname = current_database()",
    );
    if (r[0]) return r[0].pid;
    await sleep(25);
  }
  throw new Error("the loader's backend never reached the trigger");
}

const terminate = (pid: string) =>
  ctx.query(citusWorkers().length > 0 ? "select pg_terminate_backend($1::bigint)" : "select pg_terminate_backend($1::int)", [pid]);

describe("faults", () => {
  it("a connection killed mid-batch: typed error saying replay is safe, nothing written, the same loader then converges", async () => {
    const t = uniqueTable("killed");
    const loader = await ctx.loader({ maxRetries: 0 });
    await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages: rows(10, 1, "before") });
    await slowDown(t, 2);
    const load = loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages: rows(500, 2, "after") }).catch((e: unknown) => e);
    await terminate(await waitForSleepingBackend());
    const err = await load;
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as ConnectionError).retryable).toBe(true);
    expect((err as Error).message).toMatch(/loading it again is safe/);
    expect(await ctx.query(`select count(*)::int as n, max(v) as v from "${t}"`)).toEqual([{ n: 10, v: "before" }]);
    await ctx.query(`drop trigger slow on "${t}"`);
    // No restart: the pool dropped the dead connection and the loader goes on.
    expect(await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages: rows(500, 2, "after") })).toMatchObject({
      inserted: 490,
      updated: 10,
    });
  });

  it("with retries on, a killed connection is retried inside the loader and the batch lands once", async () => {
    const t = uniqueTable("killretry");
    const loader = await ctx.loader({ maxRetries: 3 });
    await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages: rows(5, 1, "before") });
    await slowDown(t, 1);
    const load = loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages: rows(50, 2, "after") });
    await terminate(await waitForSleepingBackend());
    expect(await load).toMatchObject({ inserted: 45, updated: 5 });
    expect(loader.stats.retries).toBeGreaterThanOrEqual(1);
    expect(await ctx.query(`select count(*)::int as n, min(v) as v from "${t}"`)).toEqual([{ n: 50, v: "after" }]);
  });

  it("an append-only batch is not replayed after a lost connection (it could append twice); the error says so", async () => {
    const t = uniqueTable("appendkill");
    const loader = await ctx.loader({ maxRetries: 5 });
    await loader.loadBatch({ table_name: t, schema, messages: rows(3, 1, "x") });
    await slowDown(t, 2);
    const load = loader.loadBatch({ table_name: t, schema, messages: rows(3, 1, "y") }).catch((e: unknown) => e);
    await terminate(await waitForSleepingBackend());
    const err = await load;
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as ConnectionError).retryable).toBe(false);
    expect((err as Error).message).toMatch(/may or may not have been committed/);
    expect(loader.stats.retries).toBe(0);
  });

  it("a statement timeout: typed retryable TIMEOUT error, nothing written; loading again converges", async () => {
    const t = uniqueTable("timeout");
    const loader = await ctx.loader({ statementTimeoutMs: 300 });
    await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages: rows(3, 1, "before") });
    await slowDown(t, 2);
    const err = await loader
      .loadBatch({ table_name: t, key_names: ["id"], schema, messages: rows(20, 2, "after") })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatabaseError);
    expect((err as DatabaseError).code).toBe("TIMEOUT");
    expect((err as DatabaseError).sqlState).toBe("57014");
    expect((err as DatabaseError).retryable).toBe(true);
    expect(await ctx.query(`select count(*)::int as n from "${t}"`)).toEqual([{ n: 3 }]);
    await ctx.query(`drop trigger slow on "${t}"`);
    expect(await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages: rows(20, 2, "after") })).toMatchObject({
      inserted: 17,
      updated: 3,
    });
  });

  it("a lock timeout on DDL is retried with backoff; when the lock never comes, a typed retryable error", async () => {
    const t = uniqueTable("locked");
    const loader = await ctx.loader({ lockTimeoutMs: 100, maxRetries: 3 });
    await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages: rows(3, 1, "a") });
    const holder = new pg.Client({ connectionString: ctx.url });
    await holder.connect();
    try {
      // Briefly: the loader's ALTER (a new column) times out, backs off and succeeds once the lock is gone.
      await holder.query("begin");
      await holder.query(`lock table "${t}" in access exclusive mode`);
      const wider = { properties: { ...schema.properties, extra: { type: "string" } } };
      const load = loader.loadBatch({
        table_name: t,
        key_names: ["id"],
        schema: wider,
        messages: [{ action: "upsert", sequence: 2, data: { id: 1, extra: "x" } }],
      });
      await sleep(150);
      await holder.query("commit");
      expect(await load).toMatchObject({ updated: 1 });
      expect(loader.stats.retries).toBeGreaterThanOrEqual(1);
      // For good: retries run out and the caller gets RetryExhaustedError (retryable: try later).
      await holder.query("begin");
      await holder.query(`lock table "${t}" in access exclusive mode`);
      const wider2 = { properties: { ...wider.properties, extra2: { type: "string" } } };
      const err = await loader
        .loadBatch({ table_name: t, key_names: ["id"], schema: wider2, messages: [{ action: "upsert", sequence: 3, data: { id: 1 } }] })
        .catch((e: unknown) => e);
      await holder.query("rollback");
      expect(err).toBeInstanceOf(RetryExhaustedError);
      expect((err as RetryExhaustedError).sqlState).toBe("55P03");
      expect((err as RetryExhaustedError).retryable).toBe(true);
      expect((err as Error).message).toMatch(/gave up after 4 attempts/);
    } finally {
      await holder.end();
    }
  });

  it("a deadlock (40P01) is retried inside the loader", async () => {
    const t = uniqueTable("deadlock");
    const loader = await ctx.loader({ maxRetries: 3 });
    await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages: rows(3, 1, "a") });
    const other = new pg.Client({ connectionString: ctx.url });
    await other.connect();
    try {
      // The other session holds key 2; the loader locks key 1 (key order) and then waits for key 2;
      // the other session then asks for key 1: a cycle. The loader waited first, so its deadlock
      // check fires first and it is the victim; it retries after the other session commits. The
      // other session checks only after 30 s, so that the loader is the victim even when a busy
      // machine runs the loader's check late.
      await other.query("set deadlock_timeout = '30s'");
      await other.query("begin");
      await other.query(`select * from "${t}" where id = 2 for update`);
      const load = loader.loadBatch({
        table_name: t,
        key_names: ["id"],
        schema,
        messages: [
          { action: "upsert", sequence: 5, data: { id: 1, v: "L" } },
          { action: "upsert", sequence: 5, data: { id: 2, v: "L" } },
        ],
      });
      for (let i = 0; i < 100; i++) {
        const w = await ctx.query("select 1 from pg_locks where not granted and locktype = 'transactionid'");
        if (w.length > 0) break;
        await sleep(20);
      }
      const otherUpdate = other.query(`update "${t}" set v = 'other' where id = 1`).catch((e: unknown) => e);
      await otherUpdate;
      await other.query("commit");
      expect(await load).toMatchObject({ updated: 2 });
      expect(loader.stats.retries).toBeGreaterThanOrEqual(1);
      expect(await ctx.query(`select id, v, _sequence::int as s from "${t}" where id in (1, 2) order by id`)).toEqual([
        { id: "1", v: "L", s: 5 },
        { id: "2", v: "L", s: 5 },
      ]);
    } finally {
      await other.end();
    }
  });
});

describe("PostgreSQL restarted between batches", () => {
  const dir = mkdtempSync(join(tmpdir(), "seqload-restart-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("the loader's pool heals by itself and the next batch loads", async () => {
    let server = await startEmbeddedPostgres({ dataDir: join(dir, "pg"), persistent: true });
    const loader = await createLoader({ connectionString: server.connectionString, poolSize: 2 });
    try {
      await loader.loadBatch({ table_name: "r", key_names: ["id"], schema, messages: rows(10, 1, "before") });
      await server.stop();
      server = await startEmbeddedPostgres({ dataDir: join(dir, "pg"), persistent: true, port: server.port });
      expect(await loader.loadBatch({ table_name: "r", key_names: ["id"], schema, messages: rows(10, 2, "after") })).toMatchObject({
        updated: 10,
      });
      expect((await loader.pool.query("select count(*)::int as n from r where v = 'after'")).rows).toEqual([{ n: 10 }]);
    } finally {
      await loader.close();
      await server.stop();
    }
  }, 120_000);
});

describe("connection failures", () => {
  it("a refused connection names the URL (password hidden) and what to check, and says nothing was written", async () => {
    const loader = await createLoader({ connectionString: "postgres://someone:s3cret@127.0.0.1:1/nowhere", maxRetries: 0 });
    const err = await loader.loadBatch({ table_name: "t", key_names: ["id"], schema, messages: rows(1, 1, "x") }).catch((e: unknown) => e);
    await loader.close();
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).toMatch(
      /^could not connect to PostgreSQL at postgres:\/\/someone:\*\*\*@127\.0\.0\.1:1\/nowhere \(connect ECONNREFUSED.*is the server running.*Nothing was written\.$/,
    );
    expect((err as Error).message).not.toContain("s3cret");
  });

  it("a database that does not exist is named as such, not retryable", async () => {
    const url = new URL(ctx.url);
    url.pathname = "/no_such_database_here";
    const loader = await createLoader({ connectionString: url.toString(), maxRetries: 0 });
    const err = await loader.loadBatch({ table_name: "t", key_names: ["id"], schema, messages: rows(1, 1, "x") }).catch((e: unknown) => e);
    await loader.close();
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as ConnectionError).retryable).toBe(false);
    expect((err as Error).message).toMatch(/does the database exist\?/);
  });
});
