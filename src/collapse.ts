/**
 * Step 4 of the data path: encode every message into the text PostgreSQL reads and collapse the
 * batch's own duplicates in one O(n) pass: per key the highest sequence wins; on a tie the
 * message later in the batch wins. Keyless (append-only) batches keep every message.
 */
import type { ColumnType } from "./columns.js";
import { canonicalKeyText, encodeValue } from "./values.js";
import type { ValidatedBatch } from "./validate.js";

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
  rows: StagedRow[];
  /** Messages dropped because another message for the same key won. */
  collapsed: number;
  minSequence: bigint | null;
  maxSequence: bigint | null;
  /** activate_version messages (not rows). */
  activations: bigint[];
}

export function collapseBatch(batch: ValidatedBatch, tableColumns: Map<string, ColumnType | "other">): CollapsedBatch {
  const columns: string[] = [];
  const types: ColumnType[] = [];
  for (const [name, type] of tableColumns) {
    if (type === "other") continue;
    columns.push(name);
    types.push(type);
  }
  const keyPositions = batch.keyNames.map((k) => columns.indexOf(k));
  const keyTypes = keyPositions.map((p) => types[p] as ColumnType);
  const rows: StagedRow[] = [];
  const byKey = new Map<string, number>();
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
    const data = m.data as Record<string, unknown>;
    const isDelete = m.action === "delete";
    const cells = new Array<string | null>(columns.length);
    for (let i = 0; i < columns.length; i++) {
      // A delete carries the key; the row's other columns are kept by the apply step.
      cells[i] =
        isDelete && !batch.keyNames.includes(columns[i] as string) ? null : encodeValue(data[columns[i] as string], types[i] as ColumnType);
    }
    const row: StagedRow = { cells, sequence: m.sequence, isDelete };
    if (keyPositions.length === 0) {
      rows.push(row);
      continue;
    }
    let key = "";
    for (let k = 0; k < keyPositions.length; k++) {
      const text = canonicalKeyText(cells[keyPositions[k] as number] as string, keyTypes[k] as ColumnType);
      // NUL cannot occur in validated text, so it separates composite key parts unambiguously.
      key = k === 0 ? text : `${key}\u0000${text}`;
    }
    const at = byKey.get(key);
    if (at === undefined) {
      byKey.set(key, rows.length);
      rows.push(row);
    } else {
      collapsed++;
      if (m.sequence >= (rows[at] as StagedRow).sequence) rows[at] = row; // tie: the later message wins
    }
  }
  return { columns, types, rows, collapsed, minSequence, maxSequence, activations };
}
