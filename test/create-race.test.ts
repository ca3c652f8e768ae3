// Several loaders creating the same new table at the same moment: all succeed, one table.
import pg from "pg";
import { describe, expect, it } from "vitest";
import { readTableInfo } from "../src/catalog.js";
import { createLoader } from "../src/index.js";
import { PATHS, uniqueTable, useDatabase } from "./helpers/context.js";

const ctx = useDatabase("race");
const schema = { properties: { id: { type: "integer" }, who: { type: "integer" }, v: { type: "string" } } };

describe.each(PATHS)("concurrent first loads ($path path)", ({ copyThreshold }) => {
  it("8 loaders (separate pools) loading the first batch of the same new table at once all succeed", async () => {
    const t = uniqueTable("newtable");
    const loaders = await Promise.all(
      Array.from({ length: 8 }, () => createLoader({ connectionString: ctx.url, copyThreshold, poolSize: 2 })),
    );
    try {
      // Each loader sends keys 0..99 with its own sequence (loader i uses sequence 1000 + i), so
      // the expected final state is known: every key carries loader 7's version.
      const batches = loaders.map((_, who) => ({
        table_name: t,
        key_names: ["id"],
        schema,
        messages: Array.from({ length: 100 }, (_, id) => ({ action: "upsert", sequence: 1000 + who, data: { id, who, v: `from ${who}` } })),
      }));
      // Warm the pools first so that the loads really start together.
      await Promise.all(loaders.map((l) => l.pool.query("select 1")));
      const results = await Promise.all(loaders.map((l, i) => l.loadBatch(batches[i])));
      for (const r of results) expect(r.received).toBe(100);
      const applied = results.reduce((n, r) => n + r.inserted + r.updated, 0);
      const skipped = results.reduce((n, r) => n + r.skipped, 0);
      expect(results.reduce((n, r) => n + r.inserted, 0)).toBe(100);
      expect(applied + skipped).toBe(800);
      expect(await ctx.query("select count(*)::int as n from pg_class where relname = $1 and relkind = 'r'", [t])).toEqual([{ n: 1 }]);
      const rows = await ctx.query<{ n: number; who: string; seq: string }>(
        `select count(*)::int as n, min(who)::text as who, min(_sequence)::text as seq from "${t}"`,
      );
      expect(rows).toEqual([{ n: 100, who: "7", seq: "1007" }]);
    } finally {
      await Promise.all(loaders.map((l) => l.close()));
    }
  });
});

describe("reading a table's shape while another loader creates it", () => {
  it("reads the table and its columns under one snapshot (regression: a table committed after the snapshot came back with no columns)", async () => {
    const creator = new pg.Client({ connectionString: ctx.url });
    const reader = new pg.Client({ connectionString: ctx.url });
    await creator.connect();
    await reader.connect();
    try {
      const t = uniqueTable("snap");
      await creator.query("begin");
      await creator.query(
        `create table "${t}" (id bigint primary key, _sequence bigint not null, _loaded_at timestamptz not null default now(), _deleted_at timestamptz)`,
      );
      // The reader's snapshot predates the commit; catalog caches would already see the table.
      await reader.query("begin isolation level repeatable read");
      await reader.query("select 1");
      await creator.query("commit");
      const info = await readTableInfo(reader, "public", t);
      await reader.query("commit");
      // Either not there yet, or there with all its columns: never there without columns.
      expect(info.exists === false || info.columns.has("_sequence")).toBe(true);
      expect(await readTableInfo(reader, "public", t)).toMatchObject({ exists: true, keyNames: ["id"] });
    } finally {
      await creator.end();
      await reader.end();
    }
  });

  it("never sees a half-created table (regression: to_regclass saw the new table, the column list did not)", async () => {
    const loaders = await Promise.all(Array.from({ length: 6 }, () => createLoader({ connectionString: ctx.url, poolSize: 1 })));
    try {
      for (let round = 0; round < 25; round++) {
        const t = uniqueTable("halfseen");
        const results = await Promise.allSettled(
          loaders.map((l, i) =>
            l.loadBatch({
              table_name: t,
              key_names: ["id"],
              schema,
              messages: [{ action: "upsert", sequence: i, data: { id: i % 3, who: i } }],
            }),
          ),
        );
        const failures = results.filter((r) => r.status === "rejected").map((r) => String(r.reason));
        expect(failures).toEqual([]);
      }
    } finally {
      await Promise.all(loaders.map((l) => l.close()));
    }
  });
});

describe("migrations", () => {
  it("two processes' loaders starting at once on a fresh database both succeed and migrate once", async () => {
    const admin = new pg.Client({ connectionString: ctx.url });
    await admin.connect();
    try {
      await admin.query("drop schema if exists seqload cascade");
      const loaders = await Promise.all(Array.from({ length: 4 }, () => createLoader({ connectionString: ctx.url })));
      const t = uniqueTable("migr");
      await Promise.all(
        loaders.map((l, i) =>
          l.loadBatch({
            table_name: `${t}_${i}`,
            key_names: ["id"],
            schema,
            messages: [{ action: "upsert", sequence: 1, data: { id: 1 } }],
          }),
        ),
      );
      const applied = await admin.query("select name from seqload.migrations order by name");
      expect(applied.rows).toEqual([
        { name: "0001_init" },
        { name: "0002_loads_max_sequence" },
        { name: "0003_distribution" },
        { name: "0004_rejected" },
      ]);
      const registry = await admin.query(
        "select table_name, key_names, columns from seqload.tables where table_name like $1 order by table_name",
        [`${t}_%`],
      );
      expect(registry.rows).toHaveLength(4);
      expect(registry.rows[0]).toEqual({ table_name: `${t}_0`, key_names: ["id"], columns: { id: "bigint", who: "bigint", v: "text" } });
      const log = await admin.query(
        "select received, inserted, min_sequence::text, max_sequence::text from seqload.loads where table_name = $1",
        [`${t}_0`],
      );
      expect(log.rows).toEqual([{ received: 1, inserted: 1, min_sequence: "1", max_sequence: "1" }]);
      await Promise.all(loaders.map((l) => l.close()));
    } finally {
      await admin.end();
    }
  });

  it("createLoader({ migrate: false }) does not create seqload's schema", async () => {
    const admin = new pg.Client({ connectionString: ctx.url });
    await admin.connect();
    try {
      await admin.query("drop schema if exists seqload cascade");
      const loader = await createLoader({ connectionString: ctx.url, migrate: false });
      const err = await loader
        .loadBatch({ table_name: "nomigr", key_names: ["id"], schema, messages: [{ action: "upsert", sequence: 1, data: { id: 1 } }] })
        .catch((e: unknown) => e);
      expect(String((err as Error).message)).toMatch(/seqload\.(tables|loads)/);
      expect((await admin.query("select to_regnamespace('seqload')::text as s")).rows).toEqual([{ s: null }]);
      await loader.close();
      // Put the schema back for the other tests in this file.
      const l2 = await createLoader({ connectionString: ctx.url });
      await l2.loadBatch({
        table_name: "nomigr",
        key_names: ["id"],
        schema,
        messages: [{ action: "upsert", sequence: 1, data: { id: 1 } }],
      });
      await l2.close();
    } finally {
      await admin.end();
    }
  });
});
