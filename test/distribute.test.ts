// The distribute option on any server: checked once at createLoader, and seqload.tables says how
// each table is placed ("local" on a single node; on a Citus coordinator see test/citus.test.ts).
import { describe, expect, it } from "vitest";
import { batchError, EXIT_INVALID_INPUT } from "../src/cli/errors.js";
import { ConfigurationError, DistributionChangeError, createLoader } from "../src/index.js";
import { answerForError } from "../src/server/replies.js";
import { uniqueTable, useDatabase } from "./helpers/context.js";
import { citusWorkers } from "./helpers/db.js";

const ctx = useDatabase("distribute");
const schema = { properties: { id: { type: "integer" } } };

describe("distribute", () => {
  it("accepts auto and off, and refuses anything else with a ConfigurationError", async () => {
    await expect(createLoader({ connectionString: ctx.url, distribute: "on" as "auto" })).rejects.toThrow(ConfigurationError);
    await expect(createLoader({ connectionString: ctx.url, distribute: "on" as "auto" })).rejects.toThrow(
      'distribute must be "auto" or "off", got "on"',
    );
    expect((await ctx.loader()).options.distribute).toBe("auto");
    expect((await ctx.loader({ distribute: "off" })).options.distribute).toBe("off");
  });

  it("seqload.tables records each table's placement: local on a single node or with distribute off", async () => {
    const citus = citusWorkers().length > 0;
    const keyed = uniqueTable("placed");
    const keyless = uniqueTable("placed_keyless");
    const off = uniqueTable("placed_off");
    const auto = await ctx.loader();
    await auto.loadBatch({ table_name: keyed, key_names: ["id"], schema, messages: [{ action: "upsert", sequence: 1, data: { id: 1 } }] });
    await auto.loadBatch({ table_name: keyless, schema, messages: [{ action: "upsert", sequence: 1, data: { id: 1 } }] });
    const local = await ctx.loader({ distribute: "off" });
    await local.loadBatch({ table_name: off, key_names: ["id"], schema, messages: [{ action: "upsert", sequence: 1, data: { id: 1 } }] });
    const rows = await ctx.query<{ table_name: string; distribution: string; distribution_column: string | null }>(
      "select table_name, distribution, distribution_column from seqload.tables where table_name = any($1)",
      [[keyed, keyless, off]],
    );
    const byName = (a: { table_name: string }, b: { table_name: string }) => (a.table_name < b.table_name ? -1 : 1);
    expect(rows.sort(byName)).toEqual(
      [
        { table_name: keyed, distribution: citus ? "hash" : "local", distribution_column: citus ? "id" : null },
        { table_name: keyless, distribution: citus ? "single_shard" : "local", distribution_column: null },
        { table_name: off, distribution: "local", distribution_column: null },
      ].sort(byName),
    );
  });

  it("a refused distribution-column change is the batch's problem: CLI exit 2, HTTP 400, with the library's words", () => {
    const e = new DistributionChangeError("orders", "id", "bigint", "numeric");
    expect(e.message).toBe(
      'table "orders" is distributed by Citus on column "id", and the batch would widen "id" from bigint to numeric; ' +
        "Citus cannot change the type of a distribution column. Nothing was written: send values that fit the column's type, or load into a new table.",
    );
    const cli = batchError("in.json:1 (batch 1)", e);
    expect(cli.exitCode).toBe(EXIT_INVALID_INPUT);
    expect(cli.message).toBe(`in.json:1 (batch 1): ${e.message}`);
    expect(answerForError(e)).toMatchObject({ status: 400, code: "DISTRIBUTION_COLUMN_CHANGE" });
  });
});
