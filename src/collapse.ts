/**
 * Step 4 of the data path: collapse the batch's own duplicates in one O(n) pass over the keys
 * only: per key the highest sequence wins; on a tie the message later in the batch wins.
 * Keyless (append-only) batches keep every message. Encoding the winners into the text
 * PostgreSQL reads happens later, row by row, while they are sent (stage.ts): a large batch is
 * never held a second time as encoded rows.
 */
import type { ColumnType } from "./columns.js";
import { canonicalKeyText, encodeValue, exactInteger, isNumeric } from "./values.js";
import type { ValidatedBatch, ValidatedMessage } from "./validate.js";

export interface StagedRow {
  /** Encoded value per staged column (null = SQL NULL). */
  cells: (string | null)[];
  sequence: bigint;
  /** A delete (tombstone) rather than an upsert. */
  isDelete: boolean;
}

export interface CollapsedBatch {
  /** Staged column names, in table order. */
  columns: string[];
  types: ColumnType[];
  /** Key column names (empty for an append-only table). */
  keyNames: string[];
  /** The messages that become rows (upserts and deletes that won their key), in batch order. */
  winners: ValidatedMessage[];
  /** How many of the winners are deletes. */
  deletes: number;
  /** Messages dropped because another message for the same key won. */
  collapsed: number;
  minSequence: bigint | null;
  maxSequence: bigint | null;
  /** activate_version messages (not rows). */
  activations: bigint[];
}

/** A Map key for one key value: equal for values PostgreSQL finds equal in a column of `type`. */
function keyPart(value: unknown, type: ColumnType): string | number {
  if (type === "bigint") {
    // The common case without building a string: a safe integer is its own key.
    if (typeof value === "number" && Number.isSafeInteger(value)) return value;
    if (isNumeric(value)) {
      const n = exactInteger(value);
      if (n !== null) return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n.toString();
    }
  }
  return canonicalKeyText(encodeValue(value, type) as string, type);
}

export function collapseBatch(batch: ValidatedBatch, tableColumns: Map<string, ColumnType | "other">): CollapsedBatch {
  const columns: string[] = [];
  const types: ColumnType[] = [];
  for (const [name, type] of tableColumns) {
    if (type === "other") continue;
    columns.push(name);
    types.push(type);
  }
  const keyNames = batch.keyNames;
  const keyTypes = keyNames.map((k) => types[columns.indexOf(k)] as ColumnType);
  const winners: ValidatedMessage[] = [];
  const byKey = new Map<string | number, number>();
  let collapsed = 0;
  let minSequence: bigint | null = null;
  let maxSequence: bigint | null = null;
  const activations: bigint[] = [];

  for (const m of batch.messages) {
    if (minSequence === null || m.sequence < minSequence) minSequence = m.sequence;
    if (maxSequence === null || m.sequence > maxSequence) maxSequence = m.sequence;
    if (m.action === "activate_version") {
      activations.push(m.sequence);
      continue;
    }
    if (keyNames.length === 0) {
      winners.push(m);
      continue;
    }
    const data = m.data as Record<string, unknown>;
    let key: string | number = keyPart(data[keyNames[0] as string], keyTypes[0] as ColumnType);
    for (let k = 1; k < keyNames.length; k++) {
      // NUL cannot occur in validated text, so it separates composite key parts unambiguously.
      key = `${key}\u0000${keyPart(data[keyNames[k] as string], keyTypes[k] as ColumnType)}`;
    }
    const at = byKey.get(key);
    if (at === undefined) {
      byKey.set(key, winners.length);
      winners.push(m);
    } else {
      collapsed++;
      if (m.sequence >= (winners[at] as ValidatedMessage).sequence) winners[at] = m; // tie: the later message wins
    }
  }
  let deletes = 0;
  for (const m of winners) if (m.action === "delete") deletes++;
  return { columns, types, keyNames, winners, deletes, collapsed, minSequence, maxSequence, activations };
}

/** Which staged columns a delete carries: only its key; the apply step keeps the row's other columns. */
export function carriedByDelete(c: CollapsedBatch): boolean[] {
  return c.columns.map((name) => c.keyNames.includes(name));
}

/** An encoder of one cell: the text of column `i` of a winning message, or null (SQL NULL). */
export function cellEncoder(c: CollapsedBatch): (m: ValidatedMessage, i: number) => string | null {
  const carried = carriedByDelete(c);
  return (m, i) =>
    m.action === "delete" && !carried[i]
      ? null
      : encodeValue((m.data as Record<string, unknown>)[c.columns[i] as string], c.types[i] as ColumnType);
}

/** The winners as encoded rows (for the array parameters of a small batch). */
export function stagedRows(c: CollapsedBatch): StagedRow[] {
  const cell = cellEncoder(c);
  return c.winners.map((m) => ({ cells: c.columns.map((_, i) => cell(m, i)), sequence: m.sequence, isDelete: m.action === "delete" }));
}
