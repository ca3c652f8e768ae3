/**
 * Scale-out on Citus. When the target database has the `citus` extension, clients talk to the
 * coordinator and seqload:
 *   - creates each new keyed table as a hash-distributed table on its first key column, and each
 *     new keyless (append-only) table as a single-shard distributed table (Citus 12+), in the
 *     transaction that creates it (option `distribute`, "off" keeps new tables local);
 *   - refuses, before any DDL, a batch that would change the type of a distribution column (Citus
 *     cannot), with an error that names the table and the column;
 *   - replaces what Citus refuses or gets wrong on the data path: the stale-row sample and the
 *     pre-filter use joins instead of correlated subqueries (0A000 over `unnest` or a local table),
 *     and counts come from RETURNING (the command tag of an INSERT … SELECT through the
 *     coordinator counts rows sent, not rows written; pg_stat_get_xact_tuples_* on the coordinator
 *     does not see rows written on the workers).
 * Everything else (ON CONFLICT … WHERE, ADD COLUMN, widening a non-distribution column, advisory
 * locks on the coordinator, two-phase commit) works as on a single node.
 */
import type pg from "pg";
import { DistributionChangeError } from "./errors.js";
import { quoteQualified } from "./identifiers.js";
import type { TablePlan } from "./plan.js";
import type { Session } from "./session.js";
import { loadSql } from "./sql.js";

type Queryable = Pick<Session, "query">;

/** Whether new tables are distributed when the database has Citus. */
export type DistributeMode = "auto" | "off";

/** The Citus extension found in the target database. */
export interface Citus {
  /** extversion, e.g. "13.2-1". */
  version: string;
  /** Major version (12 and newer have single-shard distributed tables). */
  major: number;
}

/**
 * How a table is placed, as recorded in seqload.tables.distribution:
 * "local" (a plain table on the coordinator or a single node), "hash" (hash-distributed on
 * `column`), "single_shard" (distributed without a column: one shard on one worker), or the kinds
 * seqload never creates but may find: "reference", "citus_local", "other".
 */
export type Distribution =
  { kind: "hash"; column: string } | { kind: "local" | "single_shard" | "reference" | "citus_local" | "other"; column: null };

/** Longer table names get shortened shard names (name + "_pkey" + "_" + a shard id up to 20 digits must fit 63 bytes). */
const LONG_NAME_BYTES = 63 - "_pkey".length - 1 - 20;

const detected = new WeakMap<pg.Pool, Promise<Citus | null>>();

/** The citus extension in the pool's database, or null; asked once per pool. */
export function detectCitus(pool: pg.Pool): Promise<Citus | null> {
  let found = detected.get(pool);
  if (found === undefined) {
    found = pool.query<{ version: string }>("SELECT extversion AS version FROM pg_extension WHERE extname = 'citus'").then((r) => {
      const version = r.rows[0]?.version;
      return version === undefined ? null : { version, major: Number.parseInt(version, 10) };
    });
    // A failed probe (e.g. the server was down) is asked again next time.
    found.catch(() => detected.delete(pool));
    detected.set(pool, found);
  }
  return found;
}

/** Where a new table goes: hash on its first key; keyless single-shard (Citus 12+) or local. */
export function chooseDistribution(citus: Citus | null, mode: DistributeMode, keyNames: string[]): Distribution {
  if (citus === null || mode === "off") return { kind: "local", column: null };
  const first = keyNames[0];
  if (first !== undefined) return { kind: "hash", column: first };
  return citus.major >= 12 ? { kind: "single_shard", column: null } : { kind: "local", column: null };
}

/**
 * Distribute a table this transaction has just created (still empty), and record how in
 * seqload.tables (its row must exist). create_distributed_table takes the column name as is, unquoted.
 */
export async function distributeNewTable(
  client: Pick<Session, "query" | "setLocal">,
  schema: string,
  table: string,
  distribution: Distribution,
): Promise<void> {
  const quotedTable = quoteQualified(schema, table);
  if (distribution.kind !== "local" && Buffer.byteLength(table, "utf8") > LONG_NAME_BYTES) {
    // Shard names are the table's (or its key's) name plus "_<shard id>"; too long for 63 bytes,
    // Citus shortens them with a hash, and creating such shards over parallel connections in the
    // transaction that created the table deadlocks (found with 63-byte names). One connection per
    // worker for the rest of this transaction avoids it.
    await client.setLocal("citus.multi_shard_modify_mode", "sequential");
  }
  if (distribution.kind === "hash") {
    await client.query("SELECT create_distributed_table($1::regclass, $2)", [quotedTable, distribution.column]);
  } else if (distribution.kind === "single_shard") {
    // colocate_with none: each keyless table gets its own shard group, so they spread over workers.
    await client.query("SELECT create_distributed_table($1::regclass, NULL, colocate_with => 'none')", [quotedTable]);
  } else {
    return;
  }
  await recordDistribution(client, schema, table, distribution);
}

async function recordDistribution(client: Queryable, schema: string, table: string, distribution: Distribution): Promise<void> {
  await client.query(loadSql("record-distribution"), [schema, table, distribution.kind, distribution.column]);
}

/** How an existing table is placed, from Citus's catalog. */
async function readDistribution(client: Queryable, schema: string, table: string): Promise<Distribution> {
  const r = await client.query<{ kind: Distribution["kind"]; column: string | null }>(loadSql("table-distribution"), [
    quoteQualified(schema, table),
  ]);
  const row = r.rows[0];
  if (row === undefined) return { kind: "local", column: null };
  if (row.kind === "hash" && row.column !== null) return { kind: "hash", column: row.column };
  return { kind: row.kind === "hash" ? "other" : row.kind, column: null };
}

/**
 * Before any DDL on an existing table: refuse a plan that widens the distribution column (Citus
 * cannot change its type, and would answer with an internal XX000), and keep seqload.tables in
 * step with what the catalog says (a table may have been distributed by hand).
 */
export async function checkAlterOnCitus(client: Queryable, schema: string, table: string, plan: TablePlan): Promise<void> {
  const distribution = await readDistribution(client, schema, table);
  if (distribution.kind === "hash") {
    const change = plan.widen.find(([name]) => name === distribution.column);
    if (change !== undefined) throw new DistributionChangeError(table, change[0], change[1], change[2]);
  }
  await recordDistribution(client, schema, table, distribution);
}
