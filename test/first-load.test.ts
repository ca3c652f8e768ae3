// The first load into a new table: on the COPY path the table is created without its primary key,
// the rows are COPY'd straight in and the key is built afterwards. It must end exactly like the
// general path: same constraint, same rows, duplicates collapsed by PostgreSQL's notion of equality.
import { describe, expect, it } from "vitest";
import { PATHS, uniqueTable, useDatabase } from "./helpers/context.js";

const ctx = useDatabase("firstload");

interface Shape {
  constraint: string;
  definition: string;
  columns: string;
}

async function shapeOf(table: string): Promise<Shape> {
  const rows = await ctx.query<Shape>(
    `SELECT c.conname AS constraint, pg_get_constraintdef(c.oid) AS definition,
            (SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || CASE WHEN attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY attnum)
               FROM pg_attribute WHERE attrelid = c.conrelid AND attnum > 0 AND NOT attisdropped) AS columns
       FROM pg_constraint c WHERE c.conrelid = $1::regclass AND c.contype = 'p'`,
    [`seqload_data."${table}"`],
  );
  expect(rows).toHaveLength(1);
  return rows[0] as Shape;
}

describe("first load into a new table", () => {
  const schema = {
    properties: {
      tenant: { type: "string" },
      id: { type: "integer" },
      amount: { type: "number" },
      at: { type: "string", format: "date-time" },
    },
  };
  // Duplicates spelled differently: 1E+2 is 100, an equal sequence lets the later message win.
  const messages = [
    { action: "upsert", sequence: 5, data: { tenant: "a", id: 100, amount: 1, at: "2020-01-01T00:00:00Z" } },
    { action: "upsert", sequence: 7, data: { tenant: "a", id: 1e2, amount: 2, at: "2020-01-02T00:00:00Z" } },
    { action: "upsert", sequence: 7, data: { tenant: "b", id: 100, amount: 3, at: "2020-01-03T00:00:00Z" } },
    { action: "upsert", sequence: 7, data: { tenant: "b", id: 100, amount: 4, at: "2020-01-04T00:00:00Z" } },
    { action: "upsert", sequence: 6, data: { tenant: "a", id: 100, amount: 5, at: "2020-01-05T00:00:00Z" } },
    { action: "delete", sequence: 9, data: { tenant: "c", id: 1 } },
    { action: "upsert", sequence: 8, data: { tenant: "c", id: 1, amount: 6, at: "2020-01-06T00:00:00Z" } },
  ];

  const results = new Map<string, { shape: Shape; rows: unknown[]; result: unknown }>();
  for (const p of PATHS) {
    it(`${p.path}: creates the keyed table, collapses duplicates and reports the counts`, async () => {
      const loader = await ctx.loader({ copyThreshold: p.copyThreshold, schema: "seqload_data" });
      const table = uniqueTable("first");
      const result = await loader.loadBatch({ table_name: table, key_names: ["tenant", "id"], schema, messages });
      expect(result).toMatchObject({ received: 7, collapsed: 4, inserted: 2, updated: 0, deleted: 1, skipped: 0 });
      const rows = await ctx.query(
        `SELECT tenant, id::text, amount::text, at, _sequence::text, _deleted_at IS NOT NULL AS deleted FROM seqload_data."${table}" ORDER BY tenant, id`,
      );
      expect(rows).toEqual([
        { tenant: "a", id: "100", amount: "2", at: new Date("2020-01-02T00:00:00Z"), _sequence: "7", deleted: false },
        { tenant: "b", id: "100", amount: "4", at: new Date("2020-01-04T00:00:00Z"), _sequence: "7", deleted: false },
        { tenant: "c", id: "1", amount: null, at: null, _sequence: "9", deleted: true },
      ]);
      // A tombstone is dated by the server's transaction time on both paths, as its _loaded_at is.
      const dated = await ctx.query(`SELECT count(*)::int AS n FROM seqload_data."${table}" WHERE _deleted_at = _loaded_at`);
      expect(dated).toEqual([{ n: 1 }]);
      const shape = await shapeOf(table);
      expect(shape.definition).toBe("PRIMARY KEY (tenant, id)");
      expect(shape.constraint).toBe(`${table}_pkey`);
      results.set(p.path, {
        shape: { ...shape, constraint: shape.constraint.replace(table, "T") },
        rows,
        result: { ...result, table: "T" },
      });
      // The key really is enforced afterwards: a later batch updates instead of duplicating.
      const again = await loader.loadBatch({
        table_name: table,
        key_names: ["tenant", "id"],
        schema,
        messages: [{ action: "upsert", sequence: 10, data: { tenant: "a", id: 100, amount: 9, at: "2020-02-01T00:00:00Z" } }],
      });
      expect(again).toMatchObject({ inserted: 0, updated: 1 });
    });
  }

  it("both paths leave the same table", () => {
    const [a, b] = PATHS.map((p) => results.get(p.path));
    expect(a).toBeDefined();
    expect(b).toEqual(a);
  });

  for (const p of PATHS) {
    it(`${p.path}: a key that collides only after the lattice (numeric 1.50 and 1.5) is one row`, async () => {
      const loader = await ctx.loader({ copyThreshold: p.copyThreshold, schema: "seqload_data" });
      const table = uniqueTable("numkey");
      const result = await loader.loadBatch({
        table_name: table,
        key_names: ["k"],
        schema: { properties: { k: { type: "number" }, v: { type: "string" } } },
        messages: [
          { action: "upsert", sequence: 2, data: { k: 1.5, v: "second" } },
          { action: "upsert", sequence: 1, data: { k: 1.5, v: "first" } },
        ],
      });
      expect(result).toMatchObject({ inserted: 1, collapsed: 1 });
      expect(await ctx.query(`SELECT v FROM seqload_data."${table}"`)).toEqual([{ v: "second" }]);
    });
  }
});
