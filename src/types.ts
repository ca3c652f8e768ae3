/** The public data shapes: a Stitch Import API batch in, a LoadResult out. */

/** A sequence as the library accepts it: a safe-integer number, a bigint, or a decimal string. */
export type SequenceInput = number | bigint | string;

export interface BatchMessage {
  /** "upsert", "delete" (a sequenced tombstone) or "activate_version" (full-table replication). */
  action: string;
  /** Signed 64-bit ordering value; higher wins. */
  sequence: SequenceInput;
  /** The record; required for upsert, only the key properties are needed for delete. */
  data?: Record<string, unknown>;
  /** Accepted and ignored (target-stitch sends it). */
  time_extracted?: string;
}

export interface JsonSchema {
  type?: string | string[];
  format?: string;
  properties?: Record<string, JsonSchema>;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  [keyword: string]: unknown;
}

/** The body of Stitch's `POST /v2/import/batch`. */
export interface Batch {
  table_name: string;
  /** Primary key properties; absent or [] means append-only. */
  key_names?: string[];
  schema: JsonSchema;
  messages: BatchMessage[];
  /** Full-table replication version (target-stitch). */
  table_version?: SequenceInput;
  /** Accepted and ignored (target-stitch sends it). */
  bookmark_names?: string[];
}

export interface LoadResult {
  /** The table written, as named in the batch. */
  table: string;
  /** Messages in the batch. */
  received: number;
  /** Messages dropped inside the batch because a message for the same key had a higher sequence (or the same, later). */
  collapsed: number;
  /** New rows created by upserts. */
  inserted: number;
  /** Existing rows replaced by an upsert with a higher sequence. */
  updated: number;
  /** Delete messages applied (tombstones written). */
  deleted: number;
  /** Messages not applied because the stored version's sequence was as high or higher (and activate_version messages that found nothing to retire). */
  skipped: number;
  /** Invalid messages written to seqload.rejected instead (onInvalid "quarantine"; always 0 with "fail"). */
  rejected: number;
}
