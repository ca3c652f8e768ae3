/**
 * Step 5 of the data path: get the collapsed rows to PostgreSQL. Small batches travel as typed
 * array parameters of one statement (one round trip, plan cached per connection); large ones
 * stream through COPY, encoded in chunks while PostgreSQL parses the previous ones.
 */
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { type CollapsedBatch, carriedByDelete, stagedRows } from "./collapse.js";
import { type CompiledQuery, type CreateTableBuilder } from "kysely";
import { db } from "./builder.js";
import { COLUMN_SQL, type ColumnType } from "./columns.js";
import { encodeValue } from "./values.js";

const COPY_SPECIAL = /[\\\n\r\t]/;
const COPY_SPECIAL_ALL = /[\\\n\r\t]/g;
const COPY_ESCAPES: Record<string, string> = { "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/** One value in COPY text format (NULL is \N; backslash, newline, CR and tab escaped). */
function copyText(value: string | null): string {
  if (value === null) return "\\N";
  return COPY_SPECIAL.test(value) ? value.replace(COPY_SPECIAL_ALL, (c) => COPY_ESCAPES[c] as string) : value;
}

/** How the last column of a staged line says "this is a delete". */
export type DeleteEncoding = "flag" | "timestamp";

function* copyChunks(c: CollapsedBatch, deleteEncoding: DeleteEncoding, deletedAt: string): Generator<string> {
  const CHUNK_ROWS = 2000;
  // cellEncoder's rule, inlined: this loop runs once per cell of a large batch.
  const { columns, types } = c;
  const width = columns.length;
  const carried = carriedByDelete(c);
  let chunk = "";
  let n = 0;
  for (const m of c.winners) {
    const data = m.data as Record<string, unknown>;
    const isDelete = m.action === "delete";
    let line = "";
    for (let i = 0; i < width; i++) {
      const cell = isDelete && !carried[i] ? null : encodeValue(data[columns[i] as string], types[i] as ColumnType);
      line += `${copyText(cell)}\t`;
    }
    line += m.sequence.toString();
    line += deleteEncoding === "flag" ? (isDelete ? "\tt\n" : "\tf\n") : isDelete ? `\t${deletedAt}\n` : "\t\\N\n";
    chunk += line;
    if (++n === CHUNK_ROWS) {
      yield chunk;
      chunk = "";
      n = 0;
    }
  }
  if (chunk.length > 0) yield chunk;
}

/**
 * COPY the batch's winning rows into `quotedTarget (columns…, _sequence, <delete column>)`, each
 * row encoded as it is sent, so that Node encodes while PostgreSQL parses the previous chunk.
 * `deletedAt`: what a tombstone's `_deleted_at` says with delete encoding "timestamp": the
 * transaction's time from the server (`transactionTime`), as the upsert's `now()` writes it, never
 * the client's clock; unused (null) with "flag".
 */
export async function copyRows(
  client: pg.ClientBase,
  quotedTarget: string,
  quotedColumns: string[],
  c: CollapsedBatch,
  deleteEncoding: DeleteEncoding,
  deletedAt: string | null,
): Promise<void> {
  if (deleteEncoding === "timestamp" && deletedAt === null) throw new Error("copyRows: a timestamp delete encoding needs deletedAt");
  const deleteColumn = deleteEncoding === "flag" ? `"_delete"` : `"_deleted_at"`;
  const stream = client.query(copyFrom(`COPY ${quotedTarget} (${[...quotedColumns, `"_sequence"`, deleteColumn].join(", ")}) FROM STDIN`));
  await pipeline(Readable.from(copyChunks(c, deleteEncoding, deletedAt ?? "")), stream);
}

/** CREATE TEMP TABLE for the staging of one batch; dropped at commit. */
export function createStageQuery(batch: CollapsedBatch): CompiledQuery {
  let create: CreateTableBuilder<string, string> = db.schema.createTable(STAGE_NAME).temporary().onCommit("drop");
  batch.types.forEach((t, i) => {
    create = create.addColumn(`c${i}`, COLUMN_SQL[t]);
  });
  return create.addColumn("_sequence", "bigint").addColumn("_delete", "boolean").compile();
}

const STAGE_NAME = "seqload_stage";
export const STAGE_TABLE = `pg_temp.${STAGE_NAME}`;
export const stageColumnNames = (columns: readonly string[]) => columns.map((_, i) => `c${i}`);

/** The values of the array-parameter source's slots: c0…cN, sequences, deletes (see apply.ts). */
export function arrayValues(batch: CollapsedBatch): Record<string, unknown> {
  const rows = stagedRows(batch);
  const values: Record<string, unknown> = {};
  batch.columns.forEach((_, i) => {
    values[`c${i}`] = rows.map((r) => r.cells[i]);
  });
  values.sequences = rows.map((r) => r.sequence.toString());
  values.deletes = rows.map((r) => r.isDelete);
  return values;
}
