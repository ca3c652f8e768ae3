/**
 * The physical limit: `COPY t FROM STDIN` (text format) through pg-copy-streams, with an encoder
 * written for this one known shape (no per-value type dispatch), streamed in chunks so that Node
 * encodes while PostgreSQL parses and indexes the previous chunk.
 */
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import type { BenchMessage } from "./data.js";

const SPECIAL = /[\\\n\r\t]/;
const SPECIAL_ALL = /[\\\n\r\t]/g;
const ESCAPES: Record<string, string> = { "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t" };

function text(v: string | null): string {
  if (v === null) return "\\N";
  return SPECIAL.test(v) ? v.replace(SPECIAL_ALL, (c) => ESCAPES[c] as string) : v;
}

/** One COPY text line: id, name, qty, price, active, updated_at, _sequence. */
export function copyLine(m: BenchMessage): string {
  const d = m.data;
  return `${d.id}\t${text(d.name)}\t${d.qty === null ? "\\N" : d.qty}\t${d.price}\t${d.active ? "t" : "f"}\t${d.updated_at}\t${m.sequence}\n`;
}

export const COPY_COLUMNS = `"id", "name", "qty", "price", "active", "updated_at", "_sequence"`;

/** COPY text of the messages, in chunks of `rowsPerChunk` lines. */
export function* copyChunks(messages: readonly BenchMessage[], rowsPerChunk = 2000): Generator<string> {
  let chunk = "";
  let n = 0;
  for (const m of messages) {
    chunk += copyLine(m);
    if (++n === rowsPerChunk) {
      yield chunk;
      chunk = "";
      n = 0;
    }
  }
  if (chunk.length > 0) yield chunk;
}

/** Stream `chunks` into `COPY quotedTable (columns) FROM STDIN`. */
export async function copyInto(client: pg.ClientBase, quotedTable: string, chunks: Iterable<string>): Promise<void> {
  const stream = client.query(copyFrom(`COPY ${quotedTable} (${COPY_COLUMNS}) FROM STDIN`));
  await pipeline(Readable.from(chunks), stream);
}
