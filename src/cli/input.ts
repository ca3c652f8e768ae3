/**
 * Input files for `load` and `validate`: each FILE (or `-` for stdin) is read as a stream and
 * handed out one parsed batch at a time, so memory holds one batch, not the file.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { parse as losslessParse } from "lossless-json";
import { parseJson } from "../json.js";
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
  // fatal: bytes that are not UTF-8 (a Latin-1 export, say) must not become U+FFFD silently.
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let offset = 0;
  const decode = (chunk?: Buffer): string => {
    try {
      return chunk === undefined ? decoder.decode() : decoder.decode(chunk, { stream: true });
    } catch {
      const end = offset + (chunk?.byteLength ?? 0);
      throw new CliError(
        `${input.name}: invalid UTF-8 after line ${splitter.currentLine} (between bytes ${offset} and ${end}); ` +
          "seqload reads UTF-8 text only: convert the file first (e.g. iconv -f latin1 -t utf-8)",
        EXIT_INVALID_INPUT,
      );
    }
  };
  let number = 0;
  const parsed = (raw: RawBatch & { incomplete?: boolean }): InputBatch => {
    number++;
    return { input, number, line: raw.line, column: raw.column, value: parseRaw(input, number, raw), bytesRead: counter.bytes };
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
      const text = decode(chunk);
      offset += chunk.byteLength;
      for (const raw of split(() => splitter.push(text))) yield parsed(raw);
    }
    const tail = decode();
    const last = split(() => [...(tail ? splitter.push(tail) : []), ...splitter.end()]);
    for (const raw of last) yield parsed(raw);
  } catch (e) {
    if (e instanceof InputSyntaxError || e instanceof CliError) throw e;
    throw new CliError(`${input.name}: cannot read it (${(e as Error).message})`);
  } finally {
    if (input.path !== "-") (stream as ReturnType<typeof createReadStream>).destroy();
  }
}

function parseRaw(input: Input, number: number, raw: RawBatch & { incomplete?: boolean }): unknown {
  try {
    const value = parseJson(raw.text);
    if (raw.incomplete)
      throw new InputSyntaxError(input.name, raw.line, raw.column, "unexpected end of input: the batch object is not closed", number);
    return value;
  } catch (e) {
    if (e instanceof InputSyntaxError) throw e;
    const { offset, reason } = locateSyntaxError(raw.text);
    const { line, column } = positionIn(raw, offset);
    throw new InputSyntaxError(input.name, line, column, reason, number);
  }
}

/**
 * JSON.parse's messages differ between Node versions and often lack a position; lossless-json's
 * say "... at position N" consistently, so malformed text is parsed once more with it.
 */
function locateSyntaxError(text: string): { offset: number; reason: string } {
  try {
    losslessParse(text);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const m = /^(.*) at position (\d+)$/s.exec(message);
    const reason = (m?.[1] ?? message).replace(/[\u0000-\u001f]/g, (ch) => JSON.stringify(ch).slice(1, -1));
    return { offset: m ? Number(m[2]) : text.length, reason };
  }
  return { offset: text.length, reason: "malformed JSON" };
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
