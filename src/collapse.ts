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

/**
 * The winners in key order, when every key column is an integer (bigint): the order of the key's
 * index, and of the upsert's ORDER BY. Racing loaders that insert in one order wait for each other
 * instead of deadlocking, and the index fills at its right edge. Null for other keys (text sorts
 * by the column's collation, which JavaScript does not know). Winners already in order come back
 * as they are.
 */
export function keyOrdered(c: CollapsedBatch): ValidatedMessage[] | null {
  const width = c.keyNames.length;
  if (width === 0) return null;
  for (const k of c.keyNames) if (c.types[c.columns.indexOf(k)] !== "bigint") return null;
  const n = c.winners.length;
  // Row i's key is keys[i * width … i * width + width - 1].
  const keys = new Array<number | bigint>(n * width);
  for (let i = 0; i < n; i++) {
    const data = (c.winners[i] as ValidatedMessage).data as Record<string, unknown>;
    for (let k = 0; k < width; k++) {
      const key = integerKey(data[c.keyNames[k] as string]);
      if (key === null) return null;
      keys[i * width + k] = key;
    }
  }
  const compare = (a: number, b: number): number => {
    for (let k = 0; k < width; k++) {
      const p = keys[a * width + k] as number | bigint;
      const q = keys[b * width + k] as number | bigint;
      if (p < q) return -1;
      if (p > q) return 1;
    }
    return 0;
  };
  let sorted = true;
  for (let i = 1; i < n && sorted; i++) sorted = compare(i - 1, i) <= 0;
  if (sorted) return c.winners;
  if (width === 1 && keys.every((k) => typeof k === "number")) {
    // The common case, fast. Keys are unique (the collapse left one winner per key): dense ones
    // (ids) go straight into their slot; others through a typed array's own numeric sort.
    let min = Infinity;
    let max = -Infinity;
    for (const k of keys) {
      if (k < min) min = k;
      if (k > max) max = k;
    }
    if (max - min < 4 * n) {
      const slots = new Array<ValidatedMessage | undefined>(max - min + 1);
      for (let i = 0; i < n; i++) slots[(keys[i] as number) - min] = c.winners[i];
      const out: ValidatedMessage[] = [];
      for (const m of slots) if (m !== undefined) out.push(m);
      return out;
    }
    // Else, when (key - min) × span + position stays exact in a double, one native sort of those
    // numbers orders the keys and carries each one's position with it.
    const span = 2 ** Math.ceil(Math.log2(n + 1));
    if ((max - min + 1) * span <= Number.MAX_SAFE_INTEGER) {
      const packed = new Float64Array(n);
      for (let i = 0; i < n; i++) packed[i] = ((keys[i] as number) - min) * span + i;
      packed.sort();
      const out = new Array<ValidatedMessage>(n);
      for (let i = 0; i < n; i++) out[i] = c.winners[(packed[i] as number) % span] as ValidatedMessage;
      return out;
    }
    const byKey = new Map<number, ValidatedMessage>();
    for (let i = 0; i < n; i++) byKey.set(keys[i] as number, c.winners[i] as ValidatedMessage);
    const sortedKeys = Float64Array.from(keys).sort();
    const out = new Array<ValidatedMessage>(n);
    for (let i = 0; i < n; i++) out[i] = byKey.get(sortedKeys[i] as number) as ValidatedMessage;
    return out;
  }
  const order = Array.from({ length: n }, (_, i) => i).sort(compare);
  return order.map((i) => c.winners[i] as ValidatedMessage);
}

/** An integer key value as a number when safe, else as a bigint (the two compare exactly); else null. */
function integerKey(value: unknown): number | bigint | null {
  if (typeof value === "number" && Number.isSafeInteger(value)) return value;
  return isNumeric(value) ? exactInteger(value) : null;
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
