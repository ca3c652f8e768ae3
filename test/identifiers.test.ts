// Hostile and long identifiers: stored under exactly their name, or refused; never executed.
import pg from "pg";
import { describe, expect, it } from "vitest";
import { BatchValidationError, createLoader } from "../src/index.js";
import { uniqueTable, useDatabase } from "./helpers/context.js";

const ctx = useDatabase("idents");

const HOSTILE = [
  'Robert"); DROP TABLE students; --',
  "a.b",
  "with space",
  "semi;colon",
  "MixedCase",
  "UPPER",
  'quote"inside',
  "single'quote",
  "back\\slash",
  "tab\there",
  "new\nline",
  "é漢字🎉",
  "select",
  "$1",
  "_underscore",
  "x".repeat(63),
  "é".repeat(31), // 62 bytes
];

describe("identifiers", () => {
  it("hostile table and column names are stored under exactly that name and cannot execute SQL", async () => {
    const loader = await ctx.loader();
    await ctx.query("create table students (id int)");
    for (const [i, name] of HOSTILE.entries()) {
      // The name itself is the table (made unique per case when short enough) and the key column.
      const t = Buffer.byteLength(name) > 55 ? name : `${name}_${i}`;
      const other = `v"; drop table students; --`;
      const properties: Record<string, object> = { [name]: { type: "integer" }, [other]: { type: "string" } };
      const r = await loader.loadBatch({
        table_name: t,
        key_names: [name],
        schema: { properties },
        messages: [{ action: "upsert", sequence: 1, data: { [name]: 1, [other]: name } }],
      });
      expect(r.inserted).toBe(1);
      const found = await ctx.query<{ relname: string }>(
        "select relname::text from pg_class where relnamespace = 'public'::regnamespace and relname = $1",
        [t],
      );
      expect(found).toEqual([{ relname: t }]);
      const cols = await ctx.query<{ n: string }>(
        "select attname::text as n from pg_attribute where attrelid = (select oid from pg_class where relname = $1 and relnamespace = 'public'::regnamespace) and attnum > 0 order by attnum",
        [t],
      );
      expect(cols.map((c) => c.n).slice(0, 2)).toEqual([name, other]);
      const stored = await ctx.query<{ v: string }>(`select ${pg.escapeIdentifier(other)} as v from ${pg.escapeIdentifier(t)}`);
      expect(stored).toEqual([{ v: name }]);
    }
    expect(await ctx.query("select to_regclass('students')::text as t")).toEqual([{ t: "students" }]);
  });

  it("works in a hostile target schema name too", async () => {
    const schemaName = 'Sch"ema; DROP SCHEMA public; --';
    const loader = await ctx.loader({ schema: schemaName });
    await loader.loadBatch({
      table_name: "t",
      key_names: ["id"],
      schema: { properties: { id: { type: "integer" } } },
      messages: [{ action: "upsert", sequence: 1, data: { id: 1 } }],
    });
    expect(await ctx.query("select nspname::text from pg_namespace where nspname = $1", [schemaName])).toEqual([{ nspname: schemaName }]);
    expect(await ctx.query("select count(*)::int as n from pg_namespace where nspname = 'public'")).toEqual([{ n: 1 }]);
  });

  it("names over 63 bytes are refused, so two different 70-byte names can never share a table or column", async () => {
    const loader = await ctx.loader();
    const a = `${"n".repeat(66)}_aa`; // 69 bytes, same first 63 bytes as b
    const b = `${"n".repeat(66)}_bb`;
    for (const table of [a, b]) {
      const err = await loader
        .loadBatch({
          table_name: table,
          schema: { properties: { x: { type: "integer" } } },
          messages: [{ action: "upsert", sequence: 1, data: { x: 1 } }],
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BatchValidationError);
      expect((err as BatchValidationError).issues[0]).toMatchObject({
        path: "/table_name",
        message: expect.stringMatching(/69 bytes long.*at most 63 bytes/),
      });
    }
    const t = uniqueTable("longcols");
    const err = await loader
      .loadBatch({
        table_name: t,
        schema: { properties: { [a]: { type: "integer" }, [b]: { type: "integer" } } },
        messages: [{ action: "upsert", sequence: 1, data: { [a]: 1, [b]: 2 } }],
      })
      .catch((e: unknown) => e);
    expect((err as BatchValidationError).issues.map((i) => i.path)).toEqual([`/schema/properties/${a}`, `/schema/properties/${b}`]);
    expect(await ctx.query("select count(*)::int as n from pg_class where relname like 'nnnnnnnnnn%'")).toEqual([{ n: 0 }]);
    // Multi-byte: 32 × "é" is 64 bytes, one over.
    const err2 = await loader
      .loadBatch({
        table_name: "é".repeat(32),
        schema: { properties: { x: { type: "integer" } } },
        messages: [{ action: "upsert", sequence: 1, data: { x: 1 } }],
      })
      .catch((e: unknown) => e);
    expect((err2 as BatchValidationError).issues[0]?.message).toMatch(/64 bytes long/);
  });

  it("property names equal to a system column, and names containing NUL, are clear errors", async () => {
    const loader = await ctx.loader();
    for (const name of ["_sequence", "_loaded_at", "_deleted_at", "_table_version", "bad\u0000name"]) {
      const err = await loader
        .loadBatch({
          table_name: uniqueTable("sys"),
          schema: { properties: { [name]: { type: "integer" } } },
          messages: [{ action: "upsert", sequence: 1, data: {} }],
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BatchValidationError);
      expect((err as BatchValidationError).message).toMatch(name.includes("\u0000") ? /NUL/ : /collides with a seqload system column/);
    }
    const err = await loader
      .loadBatch({ table_name: "t\u0000x", schema: { properties: {} }, messages: [{ action: "upsert", sequence: 1, data: {} }] })
      .catch((e: unknown) => e);
    expect((err as BatchValidationError).issues[0]).toMatchObject({ path: "/table_name", message: expect.stringMatching(/NUL/) });
  });

  it("a schema option over 63 bytes is refused when the loader is created", async () => {
    await expect(createLoader({ connectionString: ctx.url, schema: "s".repeat(64) })).rejects.toThrow(/64 bytes long/);
  });
});
