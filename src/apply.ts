/**
 * Step 6 of the data path: the one set-based statement that applies a staged batch. PostgreSQL
 * enforces the ordering rule itself: a stored row is replaced only by a strictly higher sequence,
 * and rows are applied in key order so that concurrent loaders lock keys in the same order and
 * cannot deadlock each other. For a small batch the counts come back from the same statement and
 * the load log row is written by it too: a single round trip. A large batch without deletes runs
 * the bare INSERT and is counted by the caller (loader.ts) from the command tag.
 */
import { type CollapsedBatch, cellEncoder } from "./collapse.js";
import { prefilterJoin } from "./citus.js";
import { COLUMN_SQL } from "./columns.js";
import type { ValidatedMessage } from "./validate.js";
import { quoteIdent, quoteQualified } from "./identifiers.js";

export interface ApplySqlInput {
  schema: string;
  table: string;
  keyNames: string[];
  batch: CollapsedBatch;
  /** FROM item yielding columns c0…cN, _sequence, _delete (an unnest(...) AS s(...) or the stage table AS s). */
  source: string;
  /** Parameter number carrying the batch's table_version, or null when the table has no _table_version column. */
  tableVersionParam: number | null;
  /** Number of the first log parameter ($n): schema, table, received, collapsed, staged, min, max, table version follow; null = no log row here. */
  firstLogParam: number | null;
  /**
   * Filter out stale rows before ON CONFLICT. Only for the COPY path: the small-batch statement is
   * prepared once per connection, and its generic plan (made while the table was small) would
   * turn the filter into a scan of the whole table on every batch.
   */
  prefilter: boolean;
  /** Pre-filter with an outer join instead of NOT EXISTS (Citus refuses the correlated subquery over a local table). */
  prefilterJoin?: boolean;
  /**
   * Number of the parameter holding the count of staged rows (needed for `skipped`); null for the
   * bare INSERT without RETURNING, counts or log row (the caller counts from the command tag).
   */
  stagedParam: number | null;
}

export interface ApplyCounts {
  inserted: number;
  updated: number;
  deleted: number;
  skipped: number;
}

export function applySql(input: ApplySqlInput): string {
  const { batch, keyNames } = input;
  const quotedTable = quoteQualified(input.schema, input.table);
  const targetColumns = [...batch.columns.map(quoteIdent), `"_sequence"`, `"_deleted_at"`];
  const selectList = [...batch.columns.map((_, i) => `s.c${i}`), "s._sequence", "CASE WHEN s._delete THEN now() END"];
  if (input.tableVersionParam !== null) {
    targetColumns.push(`"_table_version"`);
    selectList.push(`$${input.tableVersionParam}::bigint`);
  }
  const keyPositions = keyNames.map((k) => batch.columns.indexOf(k));
  let conflict = "";
  let order = "";
  let prefilter = "";
  let source = input.source;
  if (keyNames.length > 0) {
    // A delete keeps the row's other columns (a tombstone); an upsert replaces them all.
    const sets = batch.columns
      .filter((c) => !keyNames.includes(c)) // key columns stay out of SET: a weaker row lock, no key change
      .map((c) => `${quoteIdent(c)} = CASE WHEN excluded."_deleted_at" IS NULL THEN excluded.${quoteIdent(c)} ELSE t.${quoteIdent(c)} END`);
    sets.push(`"_sequence" = excluded."_sequence"`, `"_loaded_at" = excluded."_loaded_at"`, `"_deleted_at" = excluded."_deleted_at"`);
    if (input.tableVersionParam !== null) sets.push(`"_table_version" = excluded."_table_version"`);
    conflict = `ON CONFLICT (${keyNames.map(quoteIdent).join(", ")}) DO UPDATE SET\n    ${sets.join(",\n    ")}\n  WHERE excluded."_sequence" > t."_sequence"`;
    order = `ORDER BY ${keyPositions.map((p) => `s.c${p}`).join(", ")}`;
    // Rows whose stored version is already as new never reach ON CONFLICT, which would lock (and
    // so write) every such row just to find the guard false. Racy on its own, but only ever as an
    // optimisation: the guard in ON CONFLICT still decides for every row that gets through.
    if (input.prefilter && input.prefilterJoin) {
      ({ from: source, where: prefilter } = prefilterJoin(input.schema, input.table, keyNames, keyPositions, input.source)); // HOOK(citus)
    } else if (input.prefilter) {
      const match = keyNames.map((k, i) => `x.${quoteIdent(k)} = s.c${keyPositions[i]}`).join(" AND ");
      prefilter = `WHERE NOT EXISTS (SELECT 1 FROM ${quotedTable} AS x WHERE ${match} AND x."_sequence" >= s._sequence)`;
    }
  }
  const insert = `INSERT INTO ${quotedTable} AS t (${targetColumns.join(", ")})
  SELECT ${selectList.join(", ")}
  FROM ${source}
  ${prefilter}
  ${order}
  ${conflict}`;
  if (input.stagedParam === null) return insert;
  const p = input.firstLogParam;
  const log =
    p === null
      ? ""
      : `, l AS (
  INSERT INTO seqload.loads (schema_name, table_name, received, collapsed, inserted, updated, deleted, skipped, min_sequence, max_sequence, table_version)
  SELECT $${p}, $${p + 1}, $${p + 2}::int, $${p + 3}::int, c.inserted, c.updated, c.deleted, c.skipped + $${p + 2}::int - $${p + 3}::int - $${input.stagedParam}::int, $${p + 4}::bigint, $${p + 5}::bigint, $${p + 6}::bigint
  FROM c
)`;
  return `WITH w AS (
  ${insert}
  RETURNING t.xmax = 0 AS ins, t."_deleted_at" IS NOT NULL AS del
), c AS (
  SELECT count(*) FILTER (WHERE ins AND NOT del)::int AS inserted,
         count(*) FILTER (WHERE NOT ins AND NOT del)::int AS updated,
         count(*) FILTER (WHERE del)::int AS deleted,
         ($${input.stagedParam}::int - count(*))::int AS skipped
  FROM w
)${log}
SELECT inserted, updated, deleted, skipped FROM c`;
}

/** Parameters for the log row (log-load.sql order, and applySql's log part from its first log parameter). */
export function logParams(schema: string, table: string, received: number, batch: CollapsedBatch, tableVersion: bigint | null): unknown[] {
  return [
    schema,
    table,
    received,
    batch.collapsed,
    batch.minSequence?.toString() ?? null,
    batch.maxSequence?.toString() ?? null,
    tableVersion?.toString() ?? null,
  ];
}

/**
 * activate_version V (full-table replication): every live row loaded under an older table
 * version, or under none, is marked deleted. Runs after the batch's rows, in its transaction.
 */
export function activateVersionSql(schema: string, table: string): string {
  return `UPDATE ${quoteQualified(schema, table)} SET "_deleted_at" = now()
  WHERE "_deleted_at" IS NULL AND ("_table_version" IS NULL OR "_table_version" < $1::bigint)`;
}

/**
 * How many of a sample of the batch's rows are stale (the table already holds the key at an equal
 * or higher sequence). Parameters: one array per key column, then the sequences (staleSampleParams).
 */
export function staleSampleSql(schema: string, table: string, keyNames: string[], batch: CollapsedBatch): string {
  const positions = keyNames.map((k) => batch.columns.indexOf(k));
  const arrays = positions.map((p, i) => `$${i + 1}::${COLUMN_SQL[batch.types[p] as keyof typeof COLUMN_SQL]}[]`);
  arrays.push(`$${keyNames.length + 1}::bigint[]`);
  const names = [...keyNames.map((_, i) => `k${i}`), "_sequence"];
  const match = keyNames.map((k, i) => `x.${quoteIdent(k)} = s.k${i}`).join(" AND ");
  return `SELECT count(*)::int AS stale FROM unnest(${arrays.join(", ")}) AS s(${names.join(", ")})
  WHERE EXISTS (SELECT 1 FROM ${quoteQualified(schema, table)} AS x WHERE ${match} AND x."_sequence" >= s._sequence)`;
}

export function staleSampleParams(batch: CollapsedBatch, sample: ValidatedMessage[]): unknown[] {
  const positions = batch.keyNames.map((k) => batch.columns.indexOf(k));
  const cell = cellEncoder(batch);
  return [...positions.map((p) => sample.map((m) => cell(m, p))), sample.map((m) => m.sequence.toString())];
}
