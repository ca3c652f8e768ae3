/**
 * Input files for `load` and `validate`: each FILE (or `-` for stdin) is read as a stream and
 * handed out one parsed batch at a time, so memory holds one batch, not the file.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { isAscii, isUtf8 } from "node:buffer";
import { parseJsonYielding } from "../json.js";
import { CliError, EXIT_INVALID_INPUT, InputSyntaxError } from "./errors.js";
import { BatchSplitter, type RawBatch, SplitError } from "./splitter.js";

export interface Input {
  /** As given on the command line; `-` is stdin. */
  path: string;
  /** For messages: the path, or `<stdin>`. */
  name: string;
  /** Size in bytes, when known (not for stdin). */
  size: number | null;
}

/** One batch of an input, parsed losslessly, with where it came from. */
export interface InputBatch {
  input: Input;
  /** 1-based position of the batch in its input. */
  number: number;
  /** Line and column where the batch starts. */
  line: number;
  column: number;
  value: unknown;
  /** Bytes of all inputs read (the counter's value) when this batch was complete. */
  bytesRead: number;
}

/** 1 MiB reads: a JSON Lines batch of 20,000 messages is a few MB, so a few chunks each. */
const CHUNK_BYTES = 1 << 20;

/** Check every input before anything is loaded, so a typo in the last name fails fast. */
export async function openInputs(paths: string[]): Promise<Input[]> {
  const list = paths.length === 0 ? ["-"] : paths;
  if (list.filter((p) => p === "-").length > 1) throw new CliError("stdin (-) can be read only once");
  if (paths.length === 0 && process.stdin.isTTY) {
    throw new CliError("no input: name a FILE, or pipe batches into stdin (e.g. `seqload load < batches.jsonl`); see --help");
  }
  const inputs: Input[] = [];
  for (const path of list) {
    if (path === "-") {
      inputs.push({ path, name: "<stdin>", size: null });
      continue;
    }
    try {
      const st = await stat(path);
      if (st.isDirectory()) throw new CliError(`${path} is a directory, not a file of batches`);
      inputs.push({ path, name: path, size: st.isFile() ? st.size : null });
    } catch (e) {
      if (e instanceof CliError) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      throw new CliError(code === "ENOENT" ? `${path}: no such file` : `${path}: cannot read it (${(e as Error).message})`);
    }
  }
  return inputs;
}

/** Where a byte count lives, so that a progress display can read it while batches are loading. */
export interface ReadCounter {
  bytes: number;
}

/** The batches of one input, in order. Throws InputSyntaxError on malformed JSON. */
export async function* readBatches(input: Input, counter: ReadCounter = { bytes: 0 }): AsyncGenerator<InputBatch> {
  const stream = input.path === "-" ? process.stdin : createReadStream(input.path, { highWaterMark: CHUNK_BYTES });
  const splitter = new BatchSplitter();
  const utf8 = new Utf8Decoder((bytes, bad, offset) => {
    // Where exactly: the first byte that starts no valid UTF-8 sequence. Nothing of `bytes` has
    // reached the splitter yet, so its line is where they start.
    let line = splitter.currentLine;
    let lineStart = -1;
    for (let i = 0; i < bad; i++) {
      if (bytes[i] === 10) {
        line++;
        lineStart = i;
      }
    }
    const column = lineStart === -1 && line === splitter.currentLine ? bad + 1 : bad - lineStart;
    return new CliError(
      `${input.name}:${line}:${column}: invalid UTF-8 (byte offset ${offset + bad}); ` +
        "seqload reads UTF-8 text only: convert the file first (e.g. iconv -f latin1 -t utf-8)",
      EXIT_INVALID_INPUT,
    );
  });
  let number = 0;
  const parsed = async (raw: RawBatch & { incomplete?: boolean }): Promise<InputBatch> => {
    number++;
    const value = await parseRaw(input, number, raw);
    return { input, number, line: raw.line, column: raw.column, value, bytesRead: counter.bytes };
  };
  const split = (f: () => RawBatch[]): RawBatch[] => {
    try {
      return f();
    } catch (e) {
      if (e instanceof SplitError) throw new InputSyntaxError(input.name, e.line, e.column, e.reason, null);
      throw e;
    }
  };
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      counter.bytes += chunk.byteLength;
      for (const text of utf8.decode(chunk)) {
        const raws = split(() => splitter.push(text));
        // One batch at a time: its text is parsed, then dropped (shift) before the batch is loaded,
        // so that memory holds the parsed batch, not its text as well. The parse gives the event
        // loop turns: the batch before it (src/pipeline.ts) goes on talking to the database.
        while (raws.length > 0) yield await parsed(raws.shift() as RawBatch);
      }
    }
    utf8.end();
    const raws = split(() => splitter.end());
    while (raws.length > 0) yield await parsed(raws.shift() as RawBatch);
  } catch (e) {
    if (e instanceof InputSyntaxError || e instanceof CliError) throw e;
    throw new CliError(`${input.name}: cannot read it (${(e as Error).message})`);
  } finally {
    if (input.path !== "-") (stream as ReturnType<typeof createReadStream>).destroy();
  }
}

/** Bytes a UTF-8 sequence takes, by its first byte (a byte that starts none counts as 1). */
const sequenceLength = (b: number): number => (b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1);

/**
 * Strict UTF-8 decoding of a stream of chunks. Bytes that are not UTF-8 (a Latin-1 export, say)
 * must not become U+FFFD silently: they are checked with buffer.isAscii / isUtf8, then decoded with
 * Buffer#toString, which makes strings of one byte per character when the text allows.
 * (TextDecoder with `fatal` made every 1 MiB chunk a 2 MiB two-byte string outside the heap, even
 * for ASCII, and the lines cut from it two-byte strings too: twice the memory.)
 * A sequence cut by a chunk boundary is carried over to the next chunk.
 * @internal exported for the tests
 */
export class Utf8Decoder {
  /** The start of a sequence cut by the end of the last chunk. */
  private carry: Buffer | null = null;
  /** Input offset of the next byte that decode() will see (of `carry`, if any). */
  private offset = 0;

  /** `invalid(bytes, bad, offset)`: the error to throw when `bytes[bad]`, at input offset `offset + bad`, starts no valid sequence. */
  constructor(private readonly invalid: (bytes: Uint8Array, bad: number, offset: number) => Error) {}

  /** The text of `chunk` (with what was carried over), in one or two pieces; throws on invalid bytes. */
  decode(chunk: Buffer): string[] {
    const pieces: Buffer[] = [];
    let from = 0;
    if (this.carry !== null) {
      const missing = sequenceLength(this.carry[0] as number) - this.carry.length;
      from = Math.min(missing, chunk.length);
      const joined = Buffer.concat([this.carry, chunk.subarray(0, from)]);
      if (from < missing) {
        this.carry = joined;
        return [];
      }
      this.carry = null;
      pieces.push(joined);
    }
    const rest = chunk.subarray(from);
    const cut = completeLength(rest);
    if (cut > 0) pieces.push(rest.subarray(0, cut));
    // Check everything before handing anything out: an error names the line where `chunk` starts.
    let at = this.offset;
    const ascii = pieces.map((bytes) => isAscii(bytes));
    for (let k = 0; k < pieces.length; k++) {
      const bytes = pieces[k] as Buffer;
      if (ascii[k] !== true && !isUtf8(bytes)) throw this.invalid(bytes, Math.max(0, firstInvalidUtf8(bytes)), at);
      at += bytes.length;
    }
    if (cut < rest.length) this.carry = Buffer.from(rest.subarray(cut));
    this.offset = at;
    // ASCII (most exports) decodes as "ascii": the same text, 20 times as fast as "utf8" (0.09 against
    // 1.8 ms per MiB), one byte per character either way.
    return pieces.map((bytes, k) => bytes.toString(ascii[k] === true ? "ascii" : "utf8"));
  }

  /** The input ended: a sequence still open is invalid. */
  end(): void {
    if (this.carry !== null) throw this.invalid(this.carry, 0, this.offset);
  }
}

/** The length of `bytes` without a UTF-8 sequence that its end cuts short. */
function completeLength(bytes: Uint8Array): number {
  const n = bytes.length;
  for (let k = 1; k <= 3 && k <= n; k++) {
    const b = bytes[n - k] as number;
    if ((b & 0xc0) === 0x80) continue; // a continuation byte: look further back for the first byte
    return sequenceLength(b) > k ? n - k : n;
  }
  return n; // continuation bytes only: invalid or complete, isUtf8 tells
}

/**
 * Milliseconds of parsing between two turns of the event loop. The batch before this one is in the
 * database meanwhile (src/pipeline.ts), and each of its statements waits for a turn: with 4 ms
 * slices, PostgreSQL sat "idle in transaction" about a fifth of a `load` (pg_stat_activity
 * sampled every 5 ms), against a twentieth for the library's sequential loadBatch.
 */
const PARSE_SLICE_MS = 1;

async function parseRaw(input: Input, number: number, raw: RawBatch & { incomplete?: boolean }): Promise<unknown> {
  try {
    const value = await parseJsonYielding(raw.text, PARSE_SLICE_MS);
    if (raw.incomplete)
      throw new InputSyntaxError(input.name, raw.line, raw.column, "unexpected end of input: the batch object is not closed", number);
    return value;
  } catch (e) {
    if (e instanceof InputSyntaxError) throw e;
    const { offset, reason } = locateSyntaxError(e, raw.text);
    const { line, column } = positionIn(raw, offset);
    throw new InputSyntaxError(input.name, line, column, reason, number);
  }
}

/** parseJson's errors say "... at position N" (an offset in `text`); the reason without it. */
function locateSyntaxError(e: unknown, text: string): { offset: number; reason: string } {
  const message = e instanceof Error ? e.message : String(e);
  const m = /^(.*) at position (\d+)$/s.exec(message);
  // eslint-disable-next-line no-control-regex -- control characters are what this escapes
  const reason = (m?.[1] ?? message).replace(/[\u0000-\u001f]/g, (ch) => JSON.stringify(ch).slice(1, -1));
  return { offset: m ? Number(m[2]) : text.length, reason };
}

function positionIn(raw: RawBatch, offset: number): { line: number; column: number } {
  let line = raw.line;
  let lineStart = -1;
  for (let i = raw.text.indexOf("\n"); i !== -1 && i < offset; i = raw.text.indexOf("\n", i + 1)) {
    line++;
    lineStart = i;
  }
  return { line, column: lineStart === -1 ? raw.column + offset : offset - lineStart };
}

/** Offset of the first byte that does not begin a well-formed UTF-8 sequence, or -1. */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i] as number;
    let need: number;
    let min: number;
    if (b < 0x80) {
      i++;
      continue;
    } else if (b >= 0xc2 && b <= 0xdf) {
      need = 1;
      min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      min = 0x10000;
    } else {
      return i; // continuation byte out of place, C0/C1 (overlong), F5–FF
    }
    if (i + need >= bytes.length) return i; // cut short
    let cp = b & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k] as number;
      if ((c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i; // overlong, too big, surrogate
    i += need + 1;
  }
  return -1;
}
