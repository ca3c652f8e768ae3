/**
 * `seqload singer`: a Singer target. Reads a tap's messages from stdin, one JSON message a line,
 * loads them through the library (src/singer.ts turns them into batches), and prints each STATE's
 * value on stdout once every RECORD before it is committed. Stdout holds nothing else.
 */
import { isUtf8 } from "node:buffer";
import { readFile } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import { parseJson } from "../json.js";
import { type LoadResult, createLoader, createSequencer } from "../index.js";
import { identifierProblem } from "../identifiers.js";
import { DEFAULT_SINGER_BATCH_SIZE, SingerBatcher, SingerInputError, type SingerStep } from "../index.js";
import { openDatabase } from "./database.js";
import { CliError, EXIT_INVALID_INPUT, EXIT_OK, InputSyntaxError, batchError, describeError } from "./errors.js";
import { addToTotals, emptyTotals, summaryLine, totalsLine } from "./format.js";
import { firstInvalidUtf8 } from "./input.js";
import type { Io } from "./io.js";

export interface SingerFlags {
  /** A Singer config file (JSON): database_url, schema, batch_size, sequence_property; flags win. */
  config?: string;
  databaseUrl?: string;
  schema?: string;
  /** On a Citus coordinator: "auto" distributes new tables, "off" keeps them local (loader option `distribute`). */
  distribute?: string;
  batchSize?: string;
  sequenceProperty?: string;
  /** --on-invalid: fail (default: exit 2 at an invalid RECORD) or quarantine (into seqload.rejected). */
  onInvalid?: string;
}

const STDIN = "<stdin>";

/**
 * stdin as numbered lines (1-based), strictly UTF-8. Split on the newline byte first (it never
 * occurs inside a multi-byte UTF-8 sequence), then each line is checked and decoded on its own,
 * so bytes that are not UTF-8 are reported at their line, after every line before it was handled.
 */
async function* stdinLines(): AsyncGenerator<{ line: number; text: string }> {
  let line = 1;
  let pending: Buffer[] = []; // the start of a line cut by the end of a chunk
  const text = (bytes: Buffer): string => {
    if (!isUtf8(bytes)) {
      const at = firstInvalidUtf8(bytes);
      throw new SingerInputError(line, `invalid UTF-8 at byte ${at + 1} of the line; Singer messages are UTF-8 JSON`);
    }
    return bytes.toString("utf8");
  };
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    let from = 0;
    for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, from)) {
      const bytes = pending.length === 0 ? chunk.subarray(from, at) : Buffer.concat([...pending, chunk.subarray(from, at)]);
      pending = [];
      yield { line, text: text(bytes) };
      line++;
      from = at + 1;
    }
    if (from < chunk.length) pending.push(chunk.subarray(from));
  }
  if (pending.length > 0) yield { line, text: text(Buffer.concat(pending)) };
}

/** parseJson's "… at position N" as a column. */
function syntaxError(line: number, e: unknown): InputSyntaxError {
  const message = e instanceof Error ? e.message : String(e);
  const m = /^(.*) at position (\d+)$/s.exec(message);
  // eslint-disable-next-line no-control-regex -- control characters are what this escapes
  const reason = (m?.[1] ?? message).replace(/[\u0000-\u001f]/g, (ch) => JSON.stringify(ch).slice(1, -1));
  return new InputSyntaxError(STDIN, line, m ? Number(m[2]) + 1 : 1, reason, null);
}

function positiveInt(flag: string, value: string | undefined, dflt: number): number {
  if (value === undefined) return dflt;
  if (!/^\d+$/.test(value) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
    throw new CliError(`${flag} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** Keys of a Singer config file (`--config FILE`, as Meltano passes it) and their flags. */
const CONFIG_KEYS = {
  database_url: "databaseUrl",
  schema: "schema",
  distribute: "distribute",
  batch_size: "batchSize",
  sequence_property: "sequenceProperty",
  on_invalid: "onInvalid",
} as const;

async function withConfig(flags: SingerFlags): Promise<SingerFlags> {
  if (flags.config === undefined) return flags;
  let config: unknown;
  try {
    config = JSON.parse(await readFile(flags.config, "utf8"));
  } catch (e) {
    throw new CliError(`--config ${flags.config}: cannot read it as JSON (${(e as Error).message})`);
  }
  if (typeof config !== "object" || config === null || Array.isArray(config))
    throw new CliError(`--config ${flags.config}: must hold a JSON object`);
  const merged: SingerFlags = { ...flags };
  for (const [key, flag] of Object.entries(CONFIG_KEYS)) {
    const value = (config as Record<string, unknown>)[key];
    if (value === undefined || value === null || merged[flag] !== undefined) continue;
    if (typeof value !== "string" && typeof value !== "number")
      throw new CliError(`--config ${flags.config}: ${key} must be a string or a number`);
    merged[flag] = String(value);
  }
  return merged;
}

export async function singerCommand(given: SingerFlags, io: Io): Promise<number> {
  const flags = await withConfig(given);
  const batchSize = positiveInt("--batch-size", flags.batchSize, DEFAULT_SINGER_BATCH_SIZE);
  const sequenceProperty = flags.sequenceProperty;
  const onInvalid = flags.onInvalid ?? "fail";
  if (onInvalid !== "fail" && onInvalid !== "quarantine") {
    throw new CliError(`--on-invalid (on_invalid) must be fail or quarantine, got ${JSON.stringify(onInvalid)}`);
  }
  if (sequenceProperty !== undefined && sequenceProperty === "") throw new CliError("--sequence-property must name a record property");
  const distribute = flags.distribute;
  if (distribute !== undefined && distribute !== "auto" && distribute !== "off")
    throw new CliError(`--distribute must be auto or off, got ${JSON.stringify(distribute)}`);
  if (process.stdin.isTTY) throw new CliError("no input: pipe a Singer tap into stdin (e.g. `tap-foo | seqload singer`); see --help");
  const db = await openDatabase({ databaseUrl: flags.databaseUrl, log: io.err });
  let loader: Awaited<ReturnType<typeof createLoader>> | null = null;
  const totals = emptyTotals();
  const started = performance.now();
  // Set from the callbacks below: `as` keeps TypeScript from narrowing them to null for good.
  let lastState = null as number | null; // input line of the last STATE printed
  let failedAt = null as number | null; // input line of an invalid message
  let loadFailure: CliError | null = null; // the error of a batch that failed to load
  let waitForLoad = async (): Promise<void> => {};
  try {
    loader = await createLoader({
      pool: db.pool,
      onInvalid,
      ...(flags.schema !== undefined ? { schema: flags.schema } : {}),
      ...(distribute !== undefined ? { distribute } : {}),
    });
    const ready = loader;
    // Each stream's sequencer starts above what its table holds, so a later run's records win over
    // an earlier run's even when this host's clock is behind (or stepped back since).
    const after = new Map<string, bigint | null>();
    const batcher = new SingerBatcher({
      batchSize,
      onInvalid,
      ...(sequenceProperty !== undefined ? { sequenceProperty } : {}),
      sequencer: (stream) => createSequencer({ after: after.get(stream) ?? null }),
    });
    // One batch loads while the lines after it are read and parsed; the next batch, a STATE and
    // the end wait for it (settle), so batches commit in input order and a STATE is printed only
    // after every batch before it committed. Memory: one batch in flight plus one per stream.
    let inflight: Promise<void> | null = null;
    const settle = async (): Promise<void> => {
      if (inflight !== null) await inflight;
      inflight = null;
      if (loadFailure !== null) throw loadFailure;
    };
    const run = async (steps: SingerStep[]): Promise<void> => {
      for (const step of steps) {
        await settle();
        if (step.kind === "state") {
          io.out(step.json);
          lastState = step.line;
          continue;
        }
        const place = `${STDIN}:${step.firstLine}${step.lastLine === step.firstLine ? "" : `-${step.lastLine}`} (stream ${JSON.stringify(step.stream)})`;
        const t0 = performance.now();
        // Settled here, never rejected: a failure is kept for settle() to throw.
        inflight = ready.loadBatch(step.batch).then(
          (result: LoadResult) => {
            addToTotals(totals, result);
            io.err(summaryLine(place, result, performance.now() - t0));
          },
          (e: unknown) => {
            loadFailure = batchError(place, e);
          },
        );
      }
    };
    waitForLoad = async () => {
      if (inflight !== null) await inflight;
    };
    /** A SingerInputError as exit 2 naming the line. */
    const invalid = (e: unknown): unknown => {
      if (!(e instanceof SingerInputError)) return e;
      failedAt = e.line;
      return new CliError(`${STDIN}:${e.line}: ${e.message}`, EXIT_INVALID_INPUT);
    };
    /** The batcher's answer, or its error as exit 2. */
    const steps = (f: () => SingerStep[]): SingerStep[] => {
      try {
        return f();
      } catch (e) {
        throw invalid(e);
      }
    };
    /** The input's lines, or its error as exit 2. */
    const readLines = async function* (lines: AsyncGenerator<{ line: number; text: string }>) {
      try {
        yield* lines;
      } catch (e) {
        // A record read before the bad bytes may be invalid: that one is reported.
        steps(() => (batcher.check(), []));
        throw invalid(e);
      }
    };
    for await (const { line, text } of readLines(stdinLines())) {
      if (text.trim() === "") continue;
      let message: unknown;
      try {
        message = parseJson(text);
      } catch (e) {
        steps(() => (batcher.check(), [])); // a record read before this line may be invalid: that one is reported
        failedAt = line;
        throw syntaxError(line, e);
      }
      const m = message as { type?: unknown; stream?: unknown };
      if (
        sequenceProperty === undefined &&
        m !== null &&
        typeof m === "object" &&
        m.type === "SCHEMA" &&
        typeof m.stream === "string" &&
        !after.has(m.stream) &&
        identifierProblem(m.stream, "stream") === null
      ) {
        after.set(m.stream, await ready.maxSequence(m.stream));
      }
      await run(steps(() => batcher.push(message, line)));
    }
    await run(steps(() => batcher.end()));
    await settle();
    if (totals.batches !== 1) io.err(totalsLine(totals, performance.now() - started));
    return EXIT_OK;
  } catch (thrown) {
    // A batch still loading finishes first (its outcome counts); a batch that failed comes before
    // anything read after it, so its failure is the one reported.
    await waitForLoad();
    const e = loadFailure ?? thrown;
    if (loadFailure !== null) failedAt = null;
    const { message, exitCode } = describeError(e);
    const n = totals.batches;
    const committed =
      n === 0 ? "No batch was committed." : `The ${n} batch${n === 1 ? "" : "es"} before it stay${n === 1 ? "s" : ""} committed.`;
    const state = lastState === null ? "No STATE was printed." : `The last STATE printed is the one of line ${lastState}.`;
    const after = failedAt === null ? "" : ` Nothing from line ${failedAt} on was loaded, and no later STATE printed.`;
    throw new CliError(`${message}\n${committed} ${state}${after}`, exitCode);
  } finally {
    await loader?.close();
    await db.close();
  }
}
