// loadBatch inside the caller's transaction, with a pg client after BEGIN and with a kysely
// Transaction: everything in that transaction (DDL and large batches included), nothing visible
// before COMMIT, nothing left after ROLLBACK, and no cache that believes in rolled-back DDL.
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Batch, BatchValidationError, DatabaseError, type LoadOptions, type LoadResult, type Loader } from "../src/index.js";
import { uniqueTable, useDatabase } from "./helpers/context.js";

const ctx = useDatabase("callertx");

/** Run `work` in a transaction of the caller's, then COMMIT or ROLLBACK; `work` gets the loadBatch option. */
type InTransaction = <T>(
  outcome: "commit" | "rollback",
  work: (option: LoadOptions, query: (text: string) => Promise<unknown[]>) => Promise<T>,
) => Promise<T>;

let pool: pg.Pool;
let db: Kysely<Record<string, Record<string, unknown>>>;

beforeAll(() => {
  pool = new pg.Pool({ connectionString: ctx.url, max: 4 });
  const kyselyPool = new pg.Pool({ connectionString: ctx.url, max: 2 });
  // The test database is dropped WITH (FORCE) after this file: a connection still closing then gets
  // 57P01, which a pool without an 'error' listener throws as an uncaught exception (seen on Node 24).
  for (const p of [pool, kyselyPool]) p.on("error", () => {});
  db = new Kysely({ dialect: new PostgresDialect({ pool: kyselyPool }) });
});
afterAll(async () => {
  await pool.end();
  await db.destroy();
});

class Rollback extends Error {}

const MODES: { mode: string; inTransaction: InTransaction }[] = [
  {
    mode: "pg client after BEGIN",
    inTransaction: async (outcome, work) => {
      const client = await pool.connect();
      try {
        await client.query("BEGIN");
        const result = await work({ client }, async (text) => (await client.query(text)).rows);
        await client.query(outcome === "commit" ? "COMMIT" : "ROLLBACK");
        return result;
      } catch (e) {
        await client.query("ROLLBACK");
        throw e;
      } finally {
        client.release();
      }
    },
  },
  {
    mode: "kysely transaction",
    inTransaction: async (outcome, work) => {
      let result: Awaited<ReturnType<typeof work>> | undefined;
      try {
        await db.transaction().execute(async (trx) => {
          const { sql } = await import("kysely");
          result = await work({ transaction: trx }, async (text) => (await sql.raw(text).execute(trx)).rows);
          if (outcome === "rollback") throw new Rollback();
        });
      } catch (e) {
        if (!(e instanceof Rollback)) throw e;
      }
      return result as Awaited<ReturnType<typeof work>>;
    },
  },
];

const schema = { properties: { id: { type: "integer" }, v: { type: "string" } } };

function batch(table: string, sequence: number, ids: number[], extra: Record<string, unknown> = {}): Batch {
  const properties = { ...schema.properties, ...Object.fromEntries(Object.keys(extra).map((k) => [k, { type: "string" }])) };
  return {
    table_name: table,
    key_names: ["id"],
    schema: { properties },
    messages: ids.map((id) => ({ action: "upsert", sequence, data: { id, v: `${id}@${sequence}`, ...extra } })),
  };
}

async function tableExists(table: string): Promise<boolean> {
  const r = await ctx.query<{ ok: boolean }>("select to_regclass($1) is not null as ok", [`public."${table}"`]);
  return r[0]?.ok ?? false;
}

async function columns(table: string): Promise<string[]> {
  const r = await ctx.query<{ name: string }>(
    "select attname::text as name from pg_attribute where attrelid = $1::regclass and attnum > 0 and not attisdropped order by attnum",
    [`public."${table}"`],
  );
  return r.map((x) => x.name);
}

async function loadLogRows(table: string): Promise<number> {
  const r = await ctx.query<{ n: number }>("select count(*)::int as n from seqload.loads where table_name = $1", [table]);
  return r[0]?.n ?? 0;
}

async function rowCount(table: string): Promise<number> {
  const r = await ctx.query<{ n: number }>(`select count(*)::int as n from public."${table}"`);
  return r[0]?.n ?? 0;
}

describe("loadBatch(batch, { client }) outside a transaction", () => {
  it("is refused before anything is written, since each statement would commit on its own", async () => {
    const loader = await ctx.loader();
    const t = uniqueTable("autocommit");
    const client = await pool.connect();
    try {
      await expect(loader.loadBatch(batch(t, 1, [1]), { client })).rejects.toMatchObject({ code: "INVALID_OPTION" });
    } finally {
      client.release();
    }
    expect(await tableExists(t)).toBe(false);
  });
});

describe.each(MODES)("loadBatch in the caller's transaction ($mode)", ({ inTransaction }) => {
  let loader: Loader;
  beforeAll(async () => {
    loader = await ctx.loader();
  });

  it("a new table: invisible to others until COMMIT, then there with its rows and load-log row", async () => {
    const t = uniqueTable("newtable");
    const result = await inTransaction("commit", async (option) => {
      const r = await loader.loadBatch(batch(t, 1, [1, 2, 3]), option);
      expect(await tableExists(t)).toBe(false); // another connection sees nothing yet
      expect(await loadLogRows(t)).toBe(0);
      return r;
    });
    expect(result).toMatchObject({ table: t, received: 3, inserted: 3 });
    expect(await rowCount(t)).toBe(3);
    expect(await loadLogRows(t)).toBe(1);
  });

  it("quarantine: the rejected rows live and die with the caller's transaction (large batch too)", async () => {
    const t = uniqueTable("quarantine");
    const rejectedRows = async () =>
      (await ctx.query<{ n: number }>("select count(*)::int as n from seqload.rejected where table_name = $1", [t]))[0]?.n;
    const mixed = (sequence: number, n: number): Batch => {
      const b = batch(
        t,
        sequence,
        Array.from({ length: n }, (_, i) => i + 1),
      );
      b.messages.push({ action: "upsert", sequence, data: { id: "bad", v: "x" } }, { action: "upsert", sequence, data: { v: "no key" } });
      return b;
    };
    await inTransaction("rollback", (option) => loader.loadBatch(mixed(1, 3), { ...option, onInvalid: "quarantine" }));
    expect(await rejectedRows()).toBe(0);
    expect(await tableExists(t)).toBe(false);
    const r = await inTransaction("commit", (option) => loader.loadBatch(mixed(2, 6000), { ...option, onInvalid: "quarantine" }));
    expect(r).toMatchObject({ received: 6002, inserted: 6000, rejected: 2 });
    expect(await rejectedRows()).toBe(2);
    expect(await rowCount(t)).toBe(6000);
    await inTransaction("rollback", (option) => loader.loadBatch(mixed(3, 6000), { ...option, onInvalid: "quarantine" }));
    expect(await rejectedRows()).toBe(2);
    expect(await loadLogRows(t)).toBe(1);
  });

  it("a new table rolled back leaves no table, registry or load-log row, and the loader does not believe in it", async () => {
    const t = uniqueTable("rolledback");
    await inTransaction("rollback", (option) => loader.loadBatch(batch(t, 1, [1, 2]), option));
    expect(await tableExists(t)).toBe(false);
    expect(await loadLogRows(t)).toBe(0);
    expect(await ctx.query("select 1 from seqload.tables where table_name = $1", [t])).toEqual([]);
    // The same loader, on its own transactions, creates the table as if nothing had happened.
    expect(await loader.loadBatch(batch(t, 2, [1]))).toMatchObject({ inserted: 1 });
    expect(await rowCount(t)).toBe(1);
  });

  it("drift: a new column rolled back is gone, and the loader adds it again later; committed, it stays", async () => {
    const t = uniqueTable("drift");
    await loader.loadBatch(batch(t, 1, [1]));
    await inTransaction("rollback", (option) => loader.loadBatch(batch(t, 2, [1], { extra: "x" }), option));
    expect(await columns(t)).not.toContain("extra");
    expect(await loadLogRows(t)).toBe(1);
    // Not cached as added: the loader's own next batch with the column adds it.
    expect(await loader.loadBatch(batch(t, 3, [2], { extra: "y" }))).toMatchObject({ inserted: 1 });
    expect(await columns(t)).toContain("extra");
    await inTransaction("commit", (option) => loader.loadBatch(batch(t, 4, [3], { other: "z" }), option));
    expect(await columns(t)).toContain("other");
    expect(await ctx.query(`select id::int, other from public."${t}" where other is not null`)).toEqual([{ id: 3, other: "z" }]);
  });

  it("a 20,000-row batch, into a new table and into an existing one: all or nothing with the caller's transaction", async () => {
    const ids = Array.from({ length: 20_000 }, (_, i) => i);
    const fresh = uniqueTable("big_new");
    await inTransaction("rollback", (option) => loader.loadBatch(batch(fresh, 1, ids), option));
    expect(await tableExists(fresh)).toBe(false);
    const r = await inTransaction("commit", (option) => loader.loadBatch(batch(fresh, 1, ids), option));
    expect(r).toMatchObject({ received: 20_000, inserted: 20_000 });
    expect(await rowCount(fresh)).toBe(20_000);

    const existing = uniqueTable("big_existing");
    await loader.loadBatch(batch(existing, 1, ids.slice(0, 10_000)));
    const before = await ctx.query(`select id, _sequence from public."${existing}" order by id limit 3`);
    await inTransaction("rollback", (option) => loader.loadBatch(batch(existing, 2, ids), option));
    expect(await ctx.query(`select id, _sequence from public."${existing}" order by id limit 3`)).toEqual(before);
    expect(await rowCount(existing)).toBe(10_000);
    const updated: LoadResult = await inTransaction("commit", (option) => loader.loadBatch(batch(existing, 2, ids), option));
    expect(updated).toMatchObject({ received: 20_000, inserted: 10_000, updated: 10_000, skipped: 0 });
    const seqs = await ctx.query<{ n: number }>(`select count(*)::int as n from public."${existing}" where _sequence = 2`);
    expect(seqs[0]?.n).toBe(20_000);
    expect(await loadLogRows(existing)).toBe(2);
  });

  it("an invalid batch throws before any SQL: the caller's transaction stays usable and commits its own work", async () => {
    const t = uniqueTable("invalid");
    await loader.loadBatch(batch(t, 1, [1]));
    await inTransaction("commit", async (option, query) => {
      await query(`update public."${t}" set v = 'caller' where id = 1`);
      const bad = { ...batch(t, 2, [2]), messages: [{ action: "upsert", sequence: 2, data: { id: "not a number" } }] };
      await expect(loader.loadBatch(bad, option)).rejects.toBeInstanceOf(BatchValidationError);
      expect(await query("select 1 as one")).toEqual([{ one: 1 }]); // not aborted
    });
    expect(await ctx.query(`select v from public."${t}"`)).toEqual([{ v: "caller" }]);
  });

  it("puts back the settings it changes, and a refused batch (key mismatch) leaves the transaction usable", async () => {
    const t = uniqueTable("settings");
    await loader.loadBatch(batch(t, 1, [1]));
    await inTransaction("commit", async (option, query) => {
      await query("SET LOCAL lock_timeout = '1234ms'");
      await query("SET LOCAL TimeZone = 'Europe/Paris'");
      await loader.loadBatch(batch(t, 2, [2], { added: "x" }), option); // DDL: lock_timeout and TimeZone set inside
      expect(await query("SELECT current_setting('lock_timeout') AS l, current_setting('TimeZone') AS z")).toEqual([
        { l: "1234ms", z: "Europe/Paris" },
      ]);
      const otherKey = { ...batch(t, 3, [3]), key_names: ["v"] };
      await expect(loader.loadBatch(otherKey, option)).rejects.toMatchObject({ code: "KEY_NAMES_CHANGED" });
      expect(await query("SELECT current_setting('lock_timeout') AS l")).toEqual([{ l: "1234ms" }]);
    });
    expect(await columns(t)).toContain("added");
  });

  it("activate_version (full-table replication) retires older rows inside the transaction, counted like anywhere else", async () => {
    const t = uniqueTable("fulltable");
    await loader.loadBatch({ ...batch(t, 1, [1, 2, 3]), table_version: 1 });
    const v2 = { ...batch(t, 2, [1]), table_version: 2 };
    v2.messages.push({ action: "activate_version", sequence: 3 });
    const r = await inTransaction("commit", (option) => loader.loadBatch(v2, option));
    expect(r).toMatchObject({ received: 2, updated: 1, deleted: 1, skipped: 0 });
    const live = await ctx.query(`select id::int from public."${t}" where _deleted_at is null order by id`);
    expect(live).toEqual([{ id: 1 }]);
  });

  it("a lock timeout is not retried inside: a retryable error that says to roll back, and retry is the caller's", async () => {
    const t = uniqueTable("locked");
    const impatient = await ctx.loader({ lockTimeoutMs: 200 });
    await impatient.loadBatch(batch(t, 1, [1]));
    const blocker = await pool.connect();
    try {
      await blocker.query("BEGIN");
      await blocker.query(`LOCK TABLE public."${t}" IN ACCESS EXCLUSIVE MODE`);
      const error = await inTransaction("rollback", (option) =>
        impatient.loadBatch(batch(t, 2, [2], { added: "x" }), option).catch((e: unknown) => e),
      );
      expect(error).toMatchObject({ code: "TRANSIENT", retryable: true });
      expect((error as Error).message).toContain("the caller's transaction must be rolled back");
      expect(impatient.stats.retries).toBe(0);
    } finally {
      await blocker.query("ROLLBACK");
      blocker.release();
    }
    expect(await columns(t)).not.toContain("added");
  });

  it("a database error says the caller's transaction must be rolled back, and leaves nothing after it is", async () => {
    const t = uniqueTable("dberror");
    await loader.loadBatch(batch(t, 1, [1]));
    await ctx.query(`alter table public."${t}" add constraint no_bad check (v <> 'bad')`);
    const failing = { ...batch(t, 2, [2]), messages: [{ action: "upsert", sequence: 2, data: { id: 2, v: "bad" } }] };
    const error = await inTransaction("rollback", (option) => loader.loadBatch(failing, option).catch((e: unknown) => e));
    expect(error).toBeInstanceOf(DatabaseError);
    expect((error as DatabaseError).retryable).toBe(false);
    expect((error as DatabaseError).message).toContain("the caller's transaction must be rolled back");
    expect(loader.stats.retries).toBe(0);
    expect(await rowCount(t)).toBe(1);
  });
});
