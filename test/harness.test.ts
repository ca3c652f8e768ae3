// Checks the test harness itself: a server was provided and per-file databases are isolated.
import pg from "pg";
import { afterAll, describe, expect, inject, it } from "vitest";
import { adminUrl, createTestDatabase, type TestDatabase, urlForDatabase, withClient } from "./helpers/db.js";

describe("test harness", () => {
  const created: TestDatabase[] = [];
  afterAll(async () => {
    for (const db of created) await db.drop();
  });

  it("says which kind of server it provided", () => {
    expect(["env", "testcontainers", "embedded"]).toContain(inject("dbKind"));
    expect(adminUrl()).toMatch(/^postgres(ql)?:\/\//);
  });

  it("creates distinct, reachable databases and drops them", async () => {
    const a = await createTestDatabase("harness");
    const b = await createTestDatabase("harness");
    created.push(a, b);
    expect(a.name).not.toBe(b.name);
    expect(a.url).not.toBe(b.url);
    expect(a.name).toMatch(/^seqload_t_harness_[0-9a-f]{10}$/);

    for (const db of [a, b]) {
      const row = await withClient(db.url, async (c) => (await c.query("select 1 as one, current_database() as db")).rows[0]);
      expect(row).toEqual({ one: 1, db: db.name });
    }
    // A table made in one database is invisible from the other.
    await withClient(a.url, (c) => c.query("create table only_in_a (id int)"));
    const seenFromB = await withClient(b.url, async (c) => (await c.query("select to_regclass('only_in_a') as t")).rows[0]);
    expect(seenFromB).toEqual({ t: null });

    // drop() works even while a session is still connected (WITH (FORCE)), and twice.
    const lingering = new pg.Client({ connectionString: a.url });
    lingering.on("error", () => {}); // the forced drop terminates this session
    await lingering.connect();
    await a.drop();
    await a.drop();
    await b.drop();
    await lingering.end().catch(() => undefined);

    const left = await withClient(
      adminUrl(),
      async (c) => (await c.query("select datname from pg_database where datname = any($1)", [[a.name, b.name]])).rows,
    );
    expect(left).toEqual([]);
  });

  it("builds URLs for other databases on the same server", () => {
    const url = urlForDatabase("postgres://u:p%40ss@127.0.0.1:5433/postgres?sslmode=disable", "x_1");
    expect(url).toBe("postgres://u:p%40ss@127.0.0.1:5433/x_1?sslmode=disable");
  });
});
