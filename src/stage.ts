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
 */
export async function copyRows(
  client: pg.PoolClient,
  quotedTarget: string,
  quotedColumns: string[],
  c: CollapsedBatch,
  deleteEncoding: DeleteEncoding,
): Promise<void> {
  const deleteColumn = deleteEncoding === "flag" ? `"_delete"` : `"_deleted_at"`;
  const stream = client.query(copyFrom(`COPY ${quotedTarget} (${[...quotedColumns, `"_sequence"`, deleteColumn].join(", ")}) FROM STDIN`));
  await pipeline(Readable.from(copyChunks(c, deleteEncoding, new Date().toISOString())), stream);
}

/** CREATE TEMP TABLE for the staging of one batch; dropped at commit. */
export function createStageSql(batch: CollapsedBatch): string {
  const cols = batch.columns.map((_, i) => `c${i} ${COLUMN_SQL[batch.types[i] as keyof typeof COLUMN_SQL]}`);
  return `CREATE TEMP TABLE seqload_stage (${[...cols, "_sequence bigint", "_delete boolean"].join(", ")}) ON COMMIT DROP`;
}

export const STAGE_TABLE = "pg_temp.seqload_stage";
export const stageColumnNames = (batch: CollapsedBatch) => batch.columns.map((_, i) => `c${i}`);

/** Array parameters for the unnest source: one per staged column, then sequences and delete flags. */
export function arrayParams(batch: CollapsedBatch): unknown[] {
  const rows = stagedRows(batch);
  const params: unknown[] = batch.columns.map((_, i) => rows.map((r) => r.cells[i]));
  params.push(rows.map((r) => r.sequence.toString()));
  params.push(rows.map((r) => r.isDelete));
  return params;
}

/** `unnest($1::bigint[], …) AS s(c0, …, _sequence, _delete)` starting at parameter `first`. */
export function unnestSource(batch: CollapsedBatch, first: number): string {
  const arrays = batch.types.map((t, i) => `$${first + i}::${COLUMN_SQL[t]}[]`);
  const n = batch.types.length;
  arrays.push(`$${first + n}::bigint[]`, `$${first + n + 1}::boolean[]`);
  return `unnest(${arrays.join(", ")}) AS s(${[...stageColumnNames(batch), "_sequence", "_delete"].join(", ")})`;
}
