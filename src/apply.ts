/**
 * Step 6 of the data path: the one set-based statement that applies a staged batch, built with
 * kysely. PostgreSQL enforces the ordering rule itself: a stored row is replaced only by a
 * strictly higher sequence, and rows are applied in key order so that concurrent loaders lock keys
 * in the same order and cannot deadlock each other. For a small batch the counts come back from
 * the same statement and the load-log row is written by it too: a single round trip. A large
 * batch without deletes runs the bare INSERT and is counted from the command tag (route.ts).
 *
 * Every statement here compiles once per table shape (see `cachedStatement`); values that differ
 * per batch are slots (builder.ts).
 */
import { type AliasedRawBuilder, type Expression, type RawBuilder, sql } from "kysely";
import { type Statement, TARGET, compileFor, db, slot, statement } from "./builder.js";
import { COLUMN_SQL, type ColumnType, systemColumnsOf } from "./columns.js";
import { STAGE_TABLE, stageColumnNames } from "./stage.js";

/** Everything the apply statement's text depends on. Two batches with equal shapes share one statement. */
export interface ApplyShape {
  schema: string;
  table: string;
  keyNames: string[];
  /** Staged column names and types, in table order. */
  columns: string[];
  types: ColumnType[];
  /** Where the rows come from: array parameters (unnest) or the COPY-filled stage table. */
  source: "arrays" | "stage";
  /** The table has _table_version and the batch sets it. */
  tableVersion: boolean;
  /**
   * Filter out stale rows before ON CONFLICT. Only for the staged path: the small-batch statement
   * is prepared once per connection, and its generic plan (made while the table was small) would
   * turn the filter into a scan of the whole table on every batch.
   */
  prefilter: boolean;
  /**
   * The pre-filter as an outer join of the staged rows (read in a subquery) with the table, instead
   * of NOT EXISTS: Citus refuses a correlated subquery over a local (temporary) table, but plans
   * the stage in a subquery on the coordinator and joins its result on the workers.
   */
  prefilterJoin: boolean;
  /** "returning": counts come back from the statement; "tag": the bare INSERT, counted from its command tag. */
  counts: "returning" | "tag";
  /** The statement writes the load-log row too (only with counts "returning"). */
  log: boolean;
}

export interface ApplyCounts {
  inserted: number;
  updated: number;
  deleted: number;
  skipped: number;
}

/** `x.col` for a raw column name (never parsed, unlike sql.ref). */
const col = (table: string, name: string) => sql.id(table, name);

/** The staged rows as a FROM item yielding c0…cN, _sequence, _delete. */
function source(shape: ApplyShape) {
  const names = [...stageColumnNames(shape.columns), "_sequence", "_delete"];
  if (shape.source === "stage") return sql`${sql.table(STAGE_TABLE)}`.as("s");
  const arrays = shape.types.map((t, i) => slot(`c${i}`, `${COLUMN_SQL[t]}[]`));
  arrays.push(slot("sequences", "bigint[]"), slot("deletes", "boolean[]"));
  return sql`unnest(${sql.join(arrays)})`.as(sql`s(${sql.join(names.map((n) => sql.id(n)))})`);
}

/** INSERT … SELECT … ORDER BY key ON CONFLICT (key) DO UPDATE … WHERE excluded._sequence > stored _sequence. */
function upsert(shape: ApplyShape) {
  const { columns, keyNames } = shape;
  const keyPositions = keyNames.map((k) => columns.indexOf(k));
  const staged = (i: number) => col("s", `c${i}`);
  const picks: AliasedRawBuilder<unknown, string>[] = [
    ...columns.map((_, i) => staged(i).as(`c${i}`)),
    sql`${col("s", "_sequence")}`.as("_sequence"),
    sql`case when ${col("s", "_delete")} then now() end`.as("_deleted_at"),
  ];
  const targetColumns = [...columns, "_sequence", "_deleted_at"];
  if (shape.tableVersion) {
    picks.push(slot("tableVersion", "bigint").as("_table_version"));
    targetColumns.push("_table_version");
  }
  const match = () =>
    sql.join(
      keyNames.map((k, i) => sql`${col("x", k)} = ${staged(keyPositions[i] as number)}`),
      sql` and `,
    );
  let rows;
  if (shape.prefilter && shape.prefilterJoin && keyNames.length > 0) {
    // Citus: the same filter as the NOT EXISTS below, as an outer join (see ApplyShape.prefilterJoin).
    // A key matches at most one stored row (it is the primary key), so the join adds no rows.
    rows = db
      .selectFrom(sql`(select * from ${source(shape)})`.as("s"))
      .leftJoin(`${TARGET} as x`, (join) => join.on(sql<boolean>`${match()}`))
      .select(picks)
      .where(sql<boolean>`${col("x", keyNames[0] as string)} is null or ${col("x", "_sequence")} < ${col("s", "_sequence")}`);
  } else {
    rows = db.selectFrom(source(shape)).select(picks);
    if (shape.prefilter && keyNames.length > 0) {
      // Rows whose stored version is already as new never reach ON CONFLICT, which would lock (and
      // so write) every such row just to find the guard false. Racy on its own, but only ever as an
      // optimisation: the guard in ON CONFLICT still decides for every row that gets through.
      const stored = db
        .selectFrom(`${TARGET} as x`)
        .select(sql.lit(1).as("one"))
        .where(sql<boolean>`${match()} and ${col("x", "_sequence")} >= ${col("s", "_sequence")}`);
      rows = rows.where((eb) => eb.not(eb.exists(stored)));
    }
  }
  for (const p of keyPositions) rows = rows.orderBy(staged(p));
  const insert = db.insertInto(TARGET).columns(targetColumns).expression(rows);
  if (keyNames.length === 0) return insert;
  // A delete keeps the row's other columns (a tombstone); an upsert replaces them all. Key columns
  // stay out of SET: a weaker row lock, and no key change.
  const set: Record<string, Expression<unknown>> = {};
  for (const c of columns) {
    if (keyNames.includes(c)) continue;
    set[c] = sql`case when ${col("excluded", "_deleted_at")} is null then ${col("excluded", c)} else ${storedColumn(c)} end`;
  }
  for (const { name } of systemColumnsOf(shape.tableVersion)) set[name] = col("excluded", name);
  return insert.onConflict((oc) =>
    oc
      .columns(keyNames)
      .doUpdateSet(set)
      .where(sql<boolean>`${col("excluded", "_sequence")} > ${storedColumn("_sequence")}`),
  );
}

/** A column of the stored row (the target table, qualified by the compile step). */
function storedColumn(name: string): RawBuilder<unknown> {
  return sql`${sql.table(TARGET)}.${sql.id(name)}`;
}

/** The load-log row: its columns in one place, for the apply statement and for `logLoadStatement`. */
function logRow(counts: Record<keyof ApplyCounts, Expression<unknown>>): Record<string, Expression<unknown>> {
  return {
    schema_name: slot("schema"),
    table_name: slot("table"),
    received: slot("received", "int"),
    collapsed: slot("collapsed", "int"),
    ...counts,
    min_sequence: slot("minSequence", "bigint"),
    max_sequence: slot("maxSequence", "bigint"),
    table_version: slot("tableVersion", "bigint"),
    rejected: slot("rejected", "int"),
  };
}

const COUNTS = ["inserted", "updated", "deleted", "skipped"] as const;

/** The apply statement for one shape. Slots: c0…cN, sequences, deletes (arrays source), tableVersion, staged, and the log's. */
export function applyStatement(shape: ApplyShape): Statement {
  const insert = upsert(shape);
  if (shape.counts === "tag") return statement(compileFor(shape.schema, shape.table, insert));
  const written = insert.returning([
    sql<boolean>`${storedColumn("xmax")} = 0`.as("ins"),
    sql<boolean>`${storedColumn("_deleted_at")} is not null`.as("del"),
  ]);
  const counted = db
    .with("w", () => written)
    .with("c", (qc) =>
      qc
        .selectFrom("w")
        .select([
          sql<number>`count(*) filter (where "ins" and not "del")::int`.as("inserted"),
          sql<number>`count(*) filter (where not "ins" and not "del")::int`.as("updated"),
          sql<number>`count(*) filter (where "del")::int`.as("deleted"),
          sql<number>`(${slot("staged", "int")} - count(*))::int`.as("skipped"),
        ]),
    );
  if (!shape.log) return statement(compileFor(shape.schema, shape.table, counted.selectFrom("c").select(COUNTS)));
  // INSERT … SELECT from "c", not VALUES with scalar subqueries: Citus refuses subqueries in an
  // INSERT's VALUES (0A000) once the statement writes a distributed table.
  const row = logRow({
    inserted: col("c", "inserted"),
    updated: col("c", "updated"),
    deleted: col("c", "deleted"),
    // Messages that are not rows of this statement (collapsed, activations) count as skipped too.
    skipped: sql`${col("c", "skipped")} + ${slot("received", "int")} - ${slot("rejected", "int")} - ${slot("collapsed", "int")} - ${slot("staged", "int")}`,
  });
  const logged = counted.with("l", () =>
    db
      .insertInto("seqload.loads")
      .columns(Object.keys(row))
      .expression(db.selectFrom("c").select(Object.entries(row).map(([name, value]) => sql`${value}`.as(name)))),
  );
  return statement(compileFor(shape.schema, shape.table, logged.selectFrom("c").select(COUNTS)));
}

/** The load-log row on its own, with the counts as parameters (compiled once). */
export const logLoadStatement: Statement = statement(
  db
    .insertInto("seqload.loads")
    .values(
      logRow({
        inserted: slot("inserted", "int"),
        updated: slot("updated", "int"),
        deleted: slot("deleted", "int"),
        skipped: slot("skipped", "int"),
      }),
    )
    .compile(),
);

/**
 * activate_version V (full-table replication): every live row loaded under an older table
 * version, or under none, is marked deleted. Runs after the batch's rows, in its transaction.
 * Slot: tableVersion.
 */
export function activateVersionStatement(schema: string, table: string): Statement {
  const retire = db
    .updateTable(TARGET)
    .set({ _deleted_at: sql`now()` })
    .where("_deleted_at", "is", null)
    .where((eb) => eb.or([eb("_table_version", "is", null), eb("_table_version", "<", slot("tableVersion", "bigint"))]));
  return statement(compileFor(schema, table, retire));
}

/**
 * Of a sample of the batch's rows, how many keys the table already holds ("existing") and how many
 * of those are stale ("stale": stored at an equal or higher sequence), in one round trip, with the
 * transaction's timestamp as ISO 8601 ("now", the `_deleted_at` of a tombstone COPYed straight
 * into the table, as the upsert's `now()` would write). Slots: k0…kN (one array per key column),
 * sequences. `join`: as a join rather than correlated EXISTS, which Citus refuses over `unnest`
 * (0A000); a key matches at most one stored row (it is the primary key), so the join counts each
 * sampled row once.
 */
export function staleSampleStatement(schema: string, table: string, keyNames: string[], keyTypes: ColumnType[], join = false): Statement {
  const arrays = keyTypes.map((t, i) => slot(`k${i}`, `${COLUMN_SQL[t]}[]`));
  arrays.push(slot("sequences", "bigint[]"));
  const names = [...keyNames.map((_, i) => `k${i}`), "_sequence"];
  const sample = sql`unnest(${sql.join(arrays)})`.as(sql`s(${sql.join(names.map((n) => sql.id(n)))})`);
  const match = sql.join(
    keyNames.map((k, i) => sql`${col("x", k)} = ${col("s", `k${i}`)}`),
    sql` and `,
  );
  const newer = sql<boolean>`${col("x", "_sequence")} >= ${col("s", "_sequence")}`;
  const now = sql<string>`to_json(now()) #>> '{}'`.as("now");
  if (join) {
    const joined = db
      .selectFrom(sample)
      .innerJoin(`${TARGET} as x`, (j) => j.on(sql<boolean>`${match}`))
      .select([sql<number>`count(*)::int`.as("existing"), sql<number>`(count(*) filter (where ${newer}))::int`.as("stale"), now]);
    return statement(compileFor(schema, table, joined));
  }
  const stored = (condition: RawBuilder<boolean>) => db.selectFrom(`${TARGET} as x`).select(sql.lit(1).as("one")).where(condition);
  const query = db
    .selectFrom(sample)
    .select((eb) => [
      sql<number>`(count(*) filter (where ${eb.exists(stored(sql<boolean>`${match}`))}))::int`.as("existing"),
      sql<number>`(count(*) filter (where ${eb.exists(stored(sql<boolean>`${match} and ${newer}`))}))::int`.as("stale"),
      now,
    ]);
  return statement(compileFor(schema, table, query));
}
