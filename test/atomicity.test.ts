// A failure while applying a batch leaves the table as it was before the batch.
import { describe, expect, it } from "vitest";
import { DatabaseError } from "../src/index.js";
import { PATHS, uniqueTable, useDatabase } from "./helpers/context.js";

const ctx = useDatabase("atomic");
const schema = { properties: { id: { type: "integer" }, name: { type: "string" } } };
const up = (id: number, sequence: number, name: string) => ({ action: "upsert", sequence, data: { id, name } });

describe.each(PATHS)("atomicity ($path path)", ({ copyThreshold }) => {
  it("a failure raised by PostgreSQL in the middle of applying rolls the whole batch back", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("boom");
    await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages: [up(1, 1, "one"), up(2, 1, "two")] });
    // Force a failure on one row that PostgreSQL only meets while applying: a trigger that raises.
    await ctx.query(`create function "${t}_boom"() returns trigger language plpgsql as $$
      begin if new.name = 'boom' then raise exception 'forced failure for %', new.id; end if; return new; end $$`);
    await ctx.query(`create trigger boom before insert or update on "${t}" for each row execute function "${t}_boom"()`);
    const before = await ctx.query(`select *, xmin::text from "${t}" order by id`);
    const messages = [
      up(1, 2, "updated"),
      up(3, 2, "new"),
      ...Array.from({ length: 50 }, (_, i) => up(10 + i, 2, `row${i}`)),
      up(2, 2, "boom"),
      up(99, 2, "last"),
    ];
    const err = await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatabaseError);
    expect((err as DatabaseError).message).toMatch(/forced failure for 2.*rolled back/s);
    expect((err as DatabaseError).retryable).toBe(false);
    expect(await ctx.query(`select *, xmin::text from "${t}" order by id`)).toEqual(before);
    expect(await ctx.query("select count(*)::int as n from seqload.loads where table_name = $1", [t])).toEqual([{ n: 1 }]);
    // The loader is still usable afterwards.
    await ctx.query(`drop trigger boom on "${t}"`);
    expect(await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages })).toMatchObject({ inserted: 52, updated: 2 });
  });

  it("a failure while creating a new table leaves no table behind", async () => {
    const loader = await ctx.loader({ copyThreshold });
    const t = uniqueTable("newboom");
    // Make the last statement of the creating transaction fail: the load-log insert, after the
    // CREATE TABLE and the rows. (A CHECK constraint on seqload's own log, in this test database only.)
    await ctx.query(`alter table seqload.loads add constraint "no_${t}" check (table_name <> '${t}')`);
    const messages = Array.from({ length: 20 }, (_, i) => up(i, 1, `r${i}`));
    const err = await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages }).catch((e: unknown) => e);
    await ctx.query(`alter table seqload.loads drop constraint "no_${t}"`);
    expect(err).toBeInstanceOf(DatabaseError);
    expect((err as DatabaseError).sqlState).toBe("23514");
    expect(await ctx.query("select to_regclass($1)::text as t", [`"${t}"`])).toEqual([{ t: null }]);
    expect(await ctx.query("select count(*)::int as n from seqload.tables where table_name = $1", [t])).toEqual([{ n: 0 }]);
    // The loader did not cache a table that never came to be: the same batch now loads.
    expect(await loader.loadBatch({ table_name: t, key_names: ["id"], schema, messages })).toMatchObject({ inserted: 20 });
  });
});
