// Where the SQL's shape is the point: what the prepared small-batch statement looks like.
import { readFileSync } from "node:fs";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { type ApplyShape, applyStatement, staleSampleStatement } from "../src/apply.js";
import { bind } from "../src/builder.js";
import { collapseBatch } from "../src/collapse.js";
import { createLoader } from "../src/index.js";
import { createTableQuery, planTable } from "../src/plan.js";
import { arrayValues } from "../src/stage.js";
import { checkBatch } from "../src/validate.js";
import { useDatabase } from "./helpers/context.js";
import { citusWorkers } from "./helpers/db.js";

const ctx = useDatabase("sqlshape");
const schema = { properties: { id: { type: "integer" }, v: { type: "string" } } };

describe("the small-batch statement", () => {
  it("is prepared once per connection, applies rows in key order with the guard, and has no stale-row pre-filter", async () => {
    // Regression: with the NOT EXISTS pre-filter, the prepared statement's generic plan (made while
    // the table was small) became a hash anti join that read the whole table on every batch.
    const pool = new pg.Pool({ connectionString: ctx.url, max: 1 });
    const loader = await createLoader({ pool });
    try {
      for (let b = 0; b < 3; b++) {
        await loader.loadBatch({
          table_name: "shape",
          key_names: ["id"],
          schema,
          messages: [{ action: "upsert", sequence: b, data: { id: b, v: "x" } }],
        });
      }
      const prepared = await pool.query<{ statement: string }>("select statement from pg_prepared_statements where name like 'seqload_%'");
      expect(prepared.rows).toHaveLength(1);
      const sql = prepared.rows[0]?.statement ?? "";
      expect(sql).toContain('on conflict ("id") do update');
      expect(sql).toContain('where "excluded"."_sequence" > "public"."shape"."_sequence"');
      expect(sql).toContain('order by "s"."c0"');
      expect(sql).not.toContain("not exists");
    } finally {
      await loader.close();
      await pool.end();
    }
  });
});

describe("the large-batch apply", () => {
  it("pre-filters stale rows only when a sample of the batch says most are stale (replays), and applies correctly either way", async () => {
    const pool = new pg.Pool({ connectionString: ctx.url, max: 1 });
    const texts: string[] = [];
    pool.on("connect", (client) => {
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as unknown as { query: unknown }).query = (...args: unknown[]) => {
        const q = args[0];
        texts.push(typeof q === "string" ? q : ((q as { text?: string }).text ?? ""));
        return query(...args);
      };
    });
    const loader = await createLoader({ pool, copyThreshold: 0 });
    const batch = (sequence: number, ids: number[]) => ({
      table_name: "prefilter",
      key_names: ["id"],
      schema,
      messages: ids.map((id) => ({ action: "upsert", sequence, data: { id, v: `${id}@${sequence}` } })),
    });
    const applies = () => texts.filter((t) => t.includes('on conflict ("id")'));
    try {
      const ids = Array.from({ length: 1000 }, (_, i) => i);
      await loader.loadBatch(batch(1, ids)); // new table: COPY straight in
      texts.length = 0;
      // Mostly replays: 900 stale, 100 newer.
      const replay = await loader.loadBatch({
        ...batch(1, ids.slice(0, 900)),
        messages: [...batch(1, ids.slice(0, 900)).messages, ...batch(2, ids.slice(900)).messages],
      });
      expect(replay).toMatchObject({ updated: 100, skipped: 900 });
      expect(applies()).toHaveLength(1);
      // On Citus the pre-filter is an outer join (it refuses the correlated NOT EXISTS over a local table).
      expect(applies()[0]).toContain(citusWorkers().length > 0 ? "left join" : "not exists");
      texts.length = 0;
      // All newer: no pre-filter.
      const newer = await loader.loadBatch(batch(3, ids));
      expect(newer).toMatchObject({ updated: 1000, skipped: 0 });
      expect(applies()).toHaveLength(1);
      expect(applies()[0]).not.toMatch(/not exists|left join/);
      const rows = await ctx.query<{ n: number }>(`SELECT count(*)::int AS n FROM public.prefilter WHERE _sequence = 3 AND v = id || '@3'`);
      expect(rows[0]?.n).toBe(1000);
    } finally {
      await loader.close();
      await pool.end();
    }
  });
});

describe("a warm loader", () => {
  it("sends a small batch into a known table as one statement: no catalog query, no DDL, no transaction", async () => {
    const pool = new pg.Pool({ connectionString: ctx.url, max: 1 });
    const texts: string[] = [];
    pool.on("connect", (client) => {
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as unknown as { query: unknown }).query = (...args: unknown[]) => {
        const q = args[0];
        texts.push(typeof q === "string" ? q : ((q as { text?: string }).text ?? ""));
        return query(...args);
      };
    });
    const loader = await createLoader({ pool });
    const batch = (sequence: number) => ({
      table_name: "warm",
      key_names: ["id"],
      schema,
      messages: [1, 2, 3].map((id) => ({ action: "upsert", sequence, data: { id, v: `${id}@${sequence}` } })),
    });
    try {
      await loader.loadBatch(batch(1)); // creates the table, reads the catalog
      await loader.loadBatch(batch(2));
      texts.length = 0;
      const result = await loader.loadBatch(batch(3));
      expect(result).toMatchObject({ updated: 3 });
      expect(texts).toHaveLength(1);
      expect(texts[0]).toContain('on conflict ("id")');
      expect(texts[0]).toContain('insert into "seqload"."loads"');
    } finally {
      await loader.close();
      await pool.end();
    }
  });
});

describe("the generated SQL", () => {
  // Pinned like kysely's docs show "the generated SQL": a change to the builder shows up here.
  const customers = {
    create:
      'create table "public"."customers" ("id" bigint not null, "name" text, "has_magic" boolean, "_sequence" bigint not null, "_loaded_at" timestamptz default now() not null, "_deleted_at" timestamptz, primary key ("id"))',
    apply:
      'with "w" as (insert into "public"."customers" ("id", "name", "has_magic", "_sequence", "_deleted_at") select "s"."c0" as "c0", "s"."c1" as "c1", "s"."c2" as "c2", "s"."_sequence" as "_sequence", case when "s"."_delete" then now() end as "_deleted_at" from unnest($1::bigint[], $2::text[], $3::boolean[], $4::bigint[], $5::boolean[]) as s("c0", "c1", "c2", "_sequence", "_delete") order by "s"."c0" on conflict ("id") do update set "name" = case when "excluded"."_deleted_at" is null then "excluded"."name" else "public"."customers"."name" end, "has_magic" = case when "excluded"."_deleted_at" is null then "excluded"."has_magic" else "public"."customers"."has_magic" end, "_sequence" = "excluded"."_sequence", "_loaded_at" = "excluded"."_loaded_at", "_deleted_at" = "excluded"."_deleted_at" where "excluded"."_sequence" > "public"."customers"."_sequence" returning "public"."customers"."xmax" = 0 as "ins", "public"."customers"."_deleted_at" is not null as "del"), "c" as (select count(*) filter (where "ins" and not "del")::int as "inserted", count(*) filter (where not "ins" and not "del")::int as "updated", count(*) filter (where "del")::int as "deleted", ($6::int - count(*))::int as "skipped" from "w"), "l" as (insert into "seqload"."loads" ("schema_name", "table_name", "received", "collapsed", "inserted", "updated", "deleted", "skipped", "min_sequence", "max_sequence", "table_version", "rejected") select $7 as "schema_name", $8 as "table_name", $9::int as "received", $10::int as "collapsed", "c"."inserted" as "inserted", "c"."updated" as "updated", "c"."deleted" as "deleted", "c"."skipped" + $11::int - $12::int - $13::int - $14::int as "skipped", $15::bigint as "min_sequence", $16::bigint as "max_sequence", $17::bigint as "table_version", $18::int as "rejected" from "c") select "inserted", "updated", "deleted", "skipped" from "c"',
  };
  const batch = checkBatch({
    table_name: "customers",
    key_names: ["id"],
    schema: { properties: { id: { type: "integer" }, name: { type: "string" }, has_magic: { type: "boolean" } } },
    messages: [{ action: "upsert", sequence: 1, data: { id: 1 } }],
  });
  const plan = planTable(batch, { exists: false, columns: new Map(), keyNames: [] });
  const applied = applyStatement({
    schema: "public",
    table: "customers",
    keyNames: ["id"],
    columns: ["id", "name", "has_magic"],
    types: ["bigint", "text", "boolean"],
    source: "arrays",
    tableVersion: false,
    prefilter: false,
    prefilterJoin: false,
    counts: "returning",
    log: true,
  });

  it("for a sample table is exactly this, and the README shows the same text", () => {
    expect(createTableQuery("public", "customers", ["id"], plan).sql).toBe(customers.create);
    expect(applied.text).toBe(customers.apply);
    expect(applied.slots).toEqual([
      ...["c0", "c1", "c2", "sequences", "deletes", "staged", "schema", "table", "received", "collapsed"],
      ...["received", "rejected", "collapsed", "staged", "minSequence", "maxSequence", "tableVersion", "rejected"],
    ]);
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const shown = /### The generated SQL[\s\S]*?```sql\n([\s\S]*?)```/.exec(readme)?.[1] ?? "";
    const flat = (text: string) => text.replace(/\s+/g, " ").replaceAll("( ", "(").trim();
    expect(flat(shown)).toBe(flat(`${customers.create} ${customers.apply}`));
  });

  it("keeps hostile names whole: a dot or ' as ' in a table name is never split", () => {
    const create = createTableQuery("my schema", 'a.b as c"; drop table x; --', ["id"], plan).sql;
    expect(create).toMatch(/^create table "my schema"\."a\.b as c""; drop table x; --" \(/);
  });
});

describe("the Citus forms of the stale sample and the pre-filter (joins)", () => {
  // Citus refuses the correlated subqueries; the loader uses these joins on a coordinator. Plain
  // PostgreSQL runs them too: there they must give the same answers as the correlated forms.
  it("count the same stale rows and write the same rows as the correlated forms (on Citus, which refuses those, the joins alone)", async () => {
    const citus = citusWorkers().length > 0;
    const rows = (sequence: number, ids: number[]) =>
      ids.map((id) => ({ action: "upsert", sequence, data: { id, v: `${id}@${sequence}` } }));
    const stored = [...rows(5, [1, 2, 3]), ...rows(1, [4, 5])];
    const incoming = checkBatch({ table_name: "join_a", key_names: ["id"], schema, messages: [...rows(3, [1, 2, 4, 6]), ...rows(5, [3])] });
    const plan = planTable(incoming, { exists: false, columns: new Map(), keyNames: [] });
    const c = collapseBatch(incoming, plan.columns);
    const sample = { k0: ["1", "2", "3", "4", "6"], sequences: ["3", "3", "5", "3", "3"] };
    const forms: [string, boolean][] = citus
      ? [["join_b", true]]
      : [
          ["join_a", false],
          ["join_b", true],
        ];
    const results: unknown[] = [];
    for (const [table, join] of forms) {
      await (await ctx.loader()).loadBatch({ table_name: table, key_names: ["id"], schema, messages: stored });
      const stale = staleSampleStatement("public", table, ["id"], ["bigint"], join);
      expect(stale.text).toContain(join ? "inner join" : "exists");
      const [sampled] = await ctx.query<{ existing: number; stale: number }>(stale.text, bind(stale, sample));
      const shape: ApplyShape = {
        schema: "public",
        table,
        keyNames: ["id"],
        columns: c.columns,
        types: c.types,
        source: "arrays",
        tableVersion: false,
        prefilter: true,
        prefilterJoin: join,
        counts: "returning",
        log: false,
      };
      const apply = applyStatement(shape);
      expect(apply.text).toContain(join ? "left join" : "not exists");
      const [counts] = await ctx.query(apply.text, bind(apply, { ...arrayValues(c), staged: c.winners.length, tableVersion: null }));
      const after = await ctx.query(`select id::int, v, _sequence::int from public.${table} order by id`);
      results.push({ existing: sampled?.existing, stale: sampled?.stale, counts, after });
      if (citus) {
        const correlated = staleSampleStatement("public", table, ["id"], ["bigint"], false);
        await expect(ctx.query(correlated.text, bind(correlated, sample))).rejects.toThrow(/not supported|only supported/);
      }
    }
    // Existing: 1–4. Stale: 1, 2 (stored 5 >= 3) and 3 (stored 5 >= 5); 4 is older, 6 is new.
    const expected = {
      existing: 4,
      stale: 3,
      counts: { inserted: 1, updated: 1, deleted: 0, skipped: 3 },
      after: [
        { id: 1, v: "1@5", _sequence: 5 },
        { id: 2, v: "2@5", _sequence: 5 },
        { id: 3, v: "3@5", _sequence: 5 },
        { id: 4, v: "4@3", _sequence: 3 },
        { id: 5, v: "5@1", _sequence: 1 },
        { id: 6, v: "6@3", _sequence: 3 },
      ],
    };
    expect(results).toEqual(forms.map(() => expected));
  });
});
