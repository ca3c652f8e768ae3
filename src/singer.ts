/**
 * A Singer stream (SCHEMA, RECORD, STATE, ACTIVATE_VERSION messages, one per line) turned into
 * seqload batches, in order: per stream, records are collected into a batch of at most
 * `batchSize` messages; a STATE flushes every stream first, so that it is released only after
 * every RECORD before it is committed. Before any batch is handed out, every record read so far
 * (of every stream) is validated, so an invalid one stops the stream at its own line: nothing
 * read after it is ever loaded, and no STATE after it is released.
 *
 * Mapping (contract: DESIGN.md "Singer target"): stream → table_name (exactly), key_properties →
 * key_names (a change is an error), schema → schema (a new one mid-stream is drift: the batch
 * before it is flushed first), RECORD version → table_version, ACTIVATE_VERSION →
 * activate_version, a non-null `_sdc_deleted_at` → delete.
 */
import { BatchValidationError, SeqloadError, type ValidationIssue, validationIssue } from "./errors.js";
import { identifierProblem, showName } from "./identifiers.js";
import type { OnInvalid } from "./quarantine.js";
import { parseSequence } from "./sequence.js";
import { shorten } from "./text.js";
import type { Sequencer } from "./sequencer.js";
import type { Batch, BatchMessage, JsonSchema, SequenceInput } from "./types.js";
import { validateBatch } from "./validate.js";
import { jsonText } from "./values.js";

/** Stitch's and target-stitch's batch limit, and `seqload singer`'s default --batch-size. */
export const DEFAULT_SINGER_BATCH_SIZE = 20_000;

export interface SingerOptions {
  /** Records per batch and stream at most. Default 20,000. */
  batchSize?: number;
  /** Take each record's sequence from this property (an integer up to int64) instead of the sequencer. */
  sequenceProperty?: string;
  /** The sequencer of a stream's records (called once per stream, at its first SCHEMA). */
  sequencer: (stream: string) => Sequencer;
  /**
   * "fail" (default): an invalid RECORD throws a SingerInputError at its line. "quarantine": it
   * goes into its batch like any other, for a loader with onInvalid "quarantine" to set aside
   * (a record without its --sequence-property too). Malformed messages throw in either mode.
   */
  onInvalid?: OnInvalid;
}

/** What the caller does next, in order: load a batch, or release a STATE. */
export type SingerStep =
  | {
      kind: "batch";
      stream: string;
      batch: Batch;
      /** Input lines of the batch's first and last message. */
      firstLine: number;
      lastLine: number;
    }
  | {
      kind: "state";
      /** The STATE message's `value`, as JSON text with every digit kept. */
      json: string;
      line: number;
    };

/** A Singer message that cannot be loaded: malformed, out of order, or a record that is invalid. */
export class SingerInputError extends SeqloadError {
  constructor(
    /** 1-based input line. */
    readonly line: number,
    message: string,
    /** The record's validation problems, when it is an invalid record. */
    readonly issues: readonly ValidationIssue[] = [],
  ) {
    super("SINGER_INVALID", message);
  }
}

interface StreamState {
  schema: JsonSchema;
  /** jsonText(schema), to tell a changed SCHEMA from a repeated one. */
  schemaText: string;
  keyNames: string[];
  sequencer: Sequencer | null;
  /** Buffered messages and their table version (all of a batch share one). */
  messages: BatchMessage[];
  /** The input line of each buffered message. */
  lines: number[];
  /** How many of the buffered messages have been validated. */
  validated: number;
  version: bigint | null;
  firstLine: number;
  lastLine: number;
  /** The highest --sequence-property value seen (the sequence of an ACTIVATE_VERSION then). */
  maxSequence: bigint | null;
}

const describe = (v: unknown): string => (v === null ? "null" : Array.isArray(v) ? "an array" : typeof v);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** An integer version (RECORD `version`, ACTIVATE_VERSION `version`), exactly. */
function parseVersion(value: unknown, line: number, what: string): bigint {
  const v = parseSequence(value);
  if (typeof v === "string") throw new SingerInputError(line, `${what}: version ${v}`);
  return v;
}

const SHOWN_ISSUES = 20;

/**
 * One line per problem, as BatchValidationError lists them: a path cut at 200 characters (a 1 MB
 * property name must not flood stderr) and at most 20 problems.
 */
function issueLines(issues: readonly ValidationIssue[], empty: string): string {
  const lines = issues.slice(0, SHOWN_ISSUES).map((i) => `  - ${shorten(i.path, 200) || empty}: ${i.message}`);
  if (issues.length > SHOWN_ISSUES) lines.push(`  - … and ${issues.length - SHOWN_ISSUES} more`);
  return lines.join("\n");
}

/** Validation issues of message `at` of a batch, with paths in the RECORD. */
function recordIssues(issues: ValidationIssue[], at: number, sequenceProperty: string | undefined): ValidationIssue[] {
  const prefix = `/messages/${at}`;
  return issues.map((i) => {
    let path = i.path.startsWith(`${prefix}/data`) ? `/record${i.path.slice(prefix.length + 5)}` : i.path.replace(prefix, "");
    if (sequenceProperty !== undefined && path === "/sequence") path = `/record/${sequenceProperty}`;
    return validationIssue(i.kind, null, path === "" ? "/record" : path, i.message); // kind is not enumerable: no spread
  });
}

export class SingerBatcher {
  private readonly streams = new Map<string, StreamState>();
  private readonly batchSize: number;

  constructor(private readonly options: SingerOptions) {
    this.batchSize = options.batchSize ?? DEFAULT_SINGER_BATCH_SIZE;
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1)
      throw new RangeError(`batchSize must be a positive integer, got ${this.batchSize}`);
  }

  /** Handle one parsed message read at `line`; returns what to do now, in order. */
  push(message: unknown, line: number): SingerStep[] {
    try {
      return this.handle(message, line);
    } catch (e) {
      // A record read earlier and still unchecked may be invalid: that is the error to report.
      if (e instanceof SingerInputError) this.check();
      throw e;
    }
  }

  /**
   * Validate every buffered record not validated yet (each stream's new records as one batch);
   * throws a SingerInputError for the invalid record read first. Also called by the caller when a
   * line cannot be parsed, so that an earlier invalid record is the one reported.
   */
  check(): void {
    if (this.options.onInvalid === "quarantine") {
      // The loader sets invalid records aside; the batch itself was checked at its SCHEMA.
      for (const state of this.streams.values()) state.validated = state.messages.length;
      return;
    }
    let first: SingerInputError | null = null;
    for (const [stream, state] of this.streams) {
      if (state.validated === state.messages.length) continue;
      const from = state.validated;
      try {
        validateBatch({
          table_name: stream,
          key_names: state.keyNames,
          schema: state.schema,
          messages: state.messages.slice(from),
          ...(state.version === null ? {} : { table_version: state.version }),
        });
      } catch (e) {
        if (!(e instanceof BatchValidationError)) throw e;
        const at = Math.min(...e.issues.map((i) => i.index ?? 0));
        const line = state.lines[from + at] as number;
        if (first === null || line < first.line) {
          const issues = recordIssues(
            e.issues.filter((i) => (i.index ?? 0) === at),
            at,
            this.options.sequenceProperty,
          );
          first = new SingerInputError(
            line,
            `invalid ${state.messages[from + at]?.action === "activate_version" ? "ACTIVATE_VERSION" : "RECORD"} for stream ${showName(stream)}:\n${issueLines(issues, "/record")}`,
            issues,
          );
        }
      }
    }
    if (first !== null) throw first;
    for (const state of this.streams.values()) state.validated = state.messages.length;
  }

  private handle(message: unknown, line: number): SingerStep[] {
    if (!isObject(message)) throw new SingerInputError(line, `a Singer message must be a JSON object, got ${describe(message)}`);
    switch (message.type) {
      case "SCHEMA":
        return this.schema(message, line);
      case "RECORD":
        return this.record(message, line);
      case "ACTIVATE_VERSION":
        return this.activateVersion(message, line);
      case "STATE": {
        if (!("value" in message)) throw new SingerInputError(line, "STATE message without a value");
        const steps = this.flushAll();
        steps.push({ kind: "state", json: jsonText(message.value), line });
        return steps;
      }
      default:
        throw new SingerInputError(
          line,
          message.type === undefined
            ? 'message without a "type" (expected SCHEMA, RECORD, STATE or ACTIVATE_VERSION)'
            : `unsupported message type ${JSON.stringify(message.type)} (expected SCHEMA, RECORD, STATE or ACTIVATE_VERSION)`,
        );
    }
  }

  /** The input ended: every stream's last batch. */
  end(): SingerStep[] {
    return this.flushAll();
  }

  private streamOf(message: Record<string, unknown>, line: number, type: string): string {
    const stream = message.stream;
    if (typeof stream !== "string") throw new SingerInputError(line, `${type} message without a "stream" name`);
    return stream;
  }

  private known(message: Record<string, unknown>, line: number, type: string): [string, StreamState] {
    const stream = this.streamOf(message, line, type);
    const state = this.streams.get(stream);
    if (state === undefined) throw new SingerInputError(line, `${type} for stream ${showName(stream)} before its SCHEMA message`);
    return [stream, state];
  }

  private schema(message: Record<string, unknown>, line: number): SingerStep[] {
    const stream = this.streamOf(message, line, "SCHEMA");
    const nameProblem = identifierProblem(stream, "stream name");
    if (nameProblem !== null) throw new SingerInputError(line, `SCHEMA: ${nameProblem} (the stream name is the table name)`);
    const schema = message.schema;
    if (!isObject(schema))
      throw new SingerInputError(line, `SCHEMA for stream ${showName(stream)}: "schema" must be an object, got ${describe(schema)}`);
    const keys = message.key_properties ?? [];
    if (!Array.isArray(keys) || !keys.every((k) => typeof k === "string")) {
      throw new SingerInputError(line, `SCHEMA for stream ${showName(stream)}: "key_properties" must be an array of property names`);
    }
    const keyNames = keys;
    const previous = this.streams.get(stream);
    if (previous !== undefined && JSON.stringify(previous.keyNames) !== JSON.stringify(keyNames)) {
      throw new SingerInputError(
        line,
        `SCHEMA for stream ${showName(stream)} changes key_properties from ${JSON.stringify(previous.keyNames)} to ${JSON.stringify(keyNames)}; ` +
          "seqload never changes a table's primary key: load the new key into a new stream (table), or keep the old key",
      );
    }
    const schemaText = jsonText(schema);
    if (previous !== undefined && previous.schemaText === schemaText) return []; // a repeated SCHEMA changes nothing
    try {
      // A batch needs a message: an activate_version one checks the envelope (names, schema, key) alone.
      validateBatch({
        table_name: stream,
        key_names: keyNames,
        schema,
        table_version: 1,
        messages: [{ action: "activate_version", sequence: 1 }],
      });
    } catch (e) {
      if (e instanceof BatchValidationError) {
        throw new SingerInputError(
          line,
          `SCHEMA for stream ${showName(stream)} cannot become a table:\n${issueLines(e.issues, "(schema)")}`,
          e.issues,
        );
      }
      throw e;
    }
    const steps = previous === undefined ? [] : this.flush(stream, previous); // drift: the records before it go first
    this.streams.set(stream, {
      schema,
      schemaText,
      keyNames,
      sequencer: previous?.sequencer ?? (this.options.sequenceProperty === undefined ? this.options.sequencer(stream) : null),
      messages: [],
      lines: [],
      validated: 0,
      version: null,
      firstLine: 0,
      lastLine: 0,
      maxSequence: previous?.maxSequence ?? null,
    });
    return steps;
  }

  /** Before a message of table version `version`: flush a batch of another version. */
  private switchVersion(stream: string, state: StreamState, version: bigint | null): SingerStep[] {
    const steps = state.messages.length > 0 && state.version !== version ? this.flush(stream, state) : [];
    state.version = version;
    return steps;
  }

  private append(stream: string, state: StreamState, m: BatchMessage, line: number, steps: SingerStep[]): SingerStep[] {
    if (state.messages.length === 0) state.firstLine = line;
    state.messages.push(m);
    state.lines.push(line);
    state.lastLine = line;
    if (state.messages.length >= this.batchSize) steps.push(...this.flush(stream, state));
    return steps;
  }

  private record(message: Record<string, unknown>, line: number): SingerStep[] {
    const [stream, state] = this.known(message, line, "RECORD");
    const record = message.record;
    if (!isObject(record))
      throw new SingerInputError(line, `RECORD for stream ${showName(stream)}: "record" must be an object, got ${describe(record)}`);
    const version =
      message.version === undefined || message.version === null
        ? null
        : parseVersion(message.version, line, `RECORD for stream ${showName(stream)}`);
    const deletedAt = record._sdc_deleted_at;
    const action = deletedAt !== undefined && deletedAt !== null ? "delete" : "upsert";
    let sequence: bigint;
    const property = this.options.sequenceProperty;
    if (property !== undefined) {
      const v = parseSequence(record[property]);
      if (typeof v === "string" && this.options.onInvalid === "quarantine") {
        // Invalid as sent: the loader quarantines it with this sequence (or none) and its problem.
        const sent = record[property] === undefined ? null : (record[property] as SequenceInput);
        const steps = this.switchVersion(stream, state, version);
        return this.append(stream, state, { action, sequence: sent as SequenceInput, data: record }, line, steps);
      }
      if (typeof v === "string") {
        throw new SingerInputError(
          line,
          `invalid RECORD for stream ${showName(stream)}: its sequence property ${showName(property)} (--sequence-property) ${v}; it must be an integer up to 9223372036854775807`,
          [validationIssue("message", null, `/record/${property}`, v)],
        );
      }
      sequence = v;
      if (state.maxSequence === null || v > state.maxSequence) state.maxSequence = v;
    } else {
      sequence = (state.sequencer as Sequencer).next();
    }
    const m: BatchMessage = { action, sequence, data: record };
    const steps = this.switchVersion(stream, state, version);
    return this.append(stream, state, m, line, steps);
  }

  private activateVersion(message: Record<string, unknown>, line: number): SingerStep[] {
    const [stream, state] = this.known(message, line, "ACTIVATE_VERSION");
    if (message.version === undefined || message.version === null) {
      throw new SingerInputError(line, `ACTIVATE_VERSION for stream ${showName(stream)} without a version`);
    }
    const version = parseVersion(message.version, line, `ACTIVATE_VERSION for stream ${showName(stream)}`);
    // With --sequence-property there is no clock: the activation takes the stream's highest sequence.
    const sequence = state.sequencer !== null ? state.sequencer.next() : (state.maxSequence ?? 0n);
    const steps = this.switchVersion(stream, state, version);
    return this.append(stream, state, { action: "activate_version", sequence }, line, steps);
  }

  private flush(stream: string, state: StreamState): SingerStep[] {
    if (state.messages.length === 0) return [];
    this.check(); // nothing is loaded while a record read before it may be invalid
    const batch: Batch = {
      table_name: stream,
      key_names: state.keyNames,
      schema: state.schema,
      messages: state.messages,
      ...(state.version === null ? {} : { table_version: state.version }),
    };
    const step: SingerStep = { kind: "batch", stream, batch, firstLine: state.firstLine, lastLine: state.lastLine };
    state.messages = [];
    state.lines = [];
    state.validated = 0;
    return [step];
  }

  /** Every stream's buffered batch, the one holding the earliest line first. */
  private flushAll(): SingerStep[] {
    const pending = [...this.streams].filter(([, s]) => s.messages.length > 0).sort(([, a], [, b]) => a.firstLine - b.firstLine);
    return pending.flatMap(([stream, state]) => this.flush(stream, state));
  }
}
