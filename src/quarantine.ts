/**
 * Quarantine (`onInvalid: "quarantine"`): the messages of a batch that failed validation become
 * rows of `seqload.rejected`, written in the batch's own transaction, so that they commit (or roll
 * back) together with its valid rows. A rejected message is kept exactly as received: its JSON
 * text with every digit (19-digit integers, "1.00"), and the characters PostgreSQL cannot store
 * in text (U+0000, lone surrogates) written as JSON escapes, never dropped.
 */
import { BatchValidationError, type ValidationIssue, validationIssue } from "./errors.js";
import type { Session } from "./session.js";
import { loadSql } from "./sql.js";
import { jsonText } from "./values.js";

/** What to do with a message that fails validation. */
export type OnInvalid = "fail" | "quarantine";

export const ON_INVALID_VALUES: readonly OnInvalid[] = ["fail", "quarantine"];

/** A message headed for seqload.rejected, as the row's text columns. */
export interface RejectedRow {
  /** Position in the batch's `messages`. */
  index: number;
  /** The sequence as sent, as text; null when the message had none. */
  sequence: string | null;
  /** Every problem, one "path: message" line each. */
  reason: string;
  /** The problems as a JSON array of {index, path, message, kind}. */
  issues: string;
  /** The message as received, as JSON text. */
  message: string;
}

/** Rejected rows per INSERT: bounds the size of the array parameters. */
const INSERT_CHUNK = 5000;

// Characters PostgreSQL text (and jsonb) cannot hold: NUL and UTF-16 surrogates without their pair.
// eslint-disable-next-line no-control-regex -- matching NUL is the point
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** `s` with U+0000 and lone surrogates written as \u escapes, so that text can hold it. */
function storableText(s: string): string {
  return s.replace(UNSTORABLE, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** The sequence a message was sent with, as text ("as sent": numbers digit for digit). */
function sequenceText(message: unknown): string | null {
  if (typeof message !== "object" || message === null || Array.isArray(message)) return null;
  const v = (message as Record<string, unknown>).sequence;
  if (v === undefined || v === null) return null;
  if (typeof v === "string") return storableText(v);
  if (typeof v === "number" || typeof v === "bigint") return String(v);
  try {
    const text = jsonText(v); // a LosslessNumber writes back its digits; anything else its JSON
    return storableText(text);
  } catch {
    return null; // not writable as JSON (e.g. a cycle): the issue names the bad sequence
  }
}

/**
 * The rows for the invalid messages of a batch: `issues` are every problem found, all with a
 * message index. Throws BatchValidationError when a message cannot be written as JSON text (a
 * cycle, a function: only possible from the library), since quarantine must never lose data.
 */
export function rejectedRows(messages: readonly unknown[], issues: readonly ValidationIssue[], table: string): RejectedRow[] {
  const byIndex = new Map<number, ValidationIssue[]>();
  for (const issue of issues) {
    const index = issue.index as number;
    let list = byIndex.get(index);
    if (list === undefined) byIndex.set(index, (list = []));
    list.push(issue);
  }
  const rows: RejectedRow[] = [];
  const unwritable: ValidationIssue[] = [];
  for (const [index, list] of [...byIndex].sort(([a], [b]) => a - b)) {
    const raw = messages[index];
    let message: string | undefined;
    try {
      message = jsonText(raw);
    } catch (e) {
      unwritable.push(
        validationIssue("message", index, `/messages/${index}`, `cannot be quarantined: not writable as JSON (${(e as Error).message})`),
      );
      continue;
    }
    rows.push({
      index,
      sequence: sequenceText(raw),
      reason: storableText(list.map((i) => `${i.path}: ${i.message}`).join("\n")),
      issues: JSON.stringify(
        list.map((i) => ({ index: i.index, path: storableText(i.path), message: storableText(i.message), kind: i.kind })),
      ),
      // JSON.stringify escapes U+0000 and lone surrogates itself; undefined (no message at all) is null.
      message: message === undefined ? "null" : message,
    });
  }
  if (unwritable.length > 0) throw new BatchValidationError([...issues, ...unwritable], table);
  return rows;
}

/** Write the rejected rows of a batch into seqload.rejected, in the session's transaction. */
export async function insertRejected(s: Session, schema: string, table: string, rows: readonly RejectedRow[]): Promise<void> {
  for (let start = 0; start < rows.length; start += INSERT_CHUNK) {
    const chunk = rows.slice(start, start + INSERT_CHUNK);
    await s.query(loadSql("insert-rejected"), [
      schema,
      table,
      chunk.map((r) => r.sequence),
      chunk.map((r) => r.reason),
      chunk.map((r) => r.issues),
      chunk.map((r) => r.message),
    ]);
  }
}
