/**
 * How the CLI fails: every error ends as one readable message on stderr and an exit code —
 * 2 for invalid input (malformed JSON, an invalid batch, key_names that conflict with the table),
 * 1 for anything else. Stack traces only with SEQLOAD_DEBUG=1.
 */
import { BatchValidationError, DistributionChangeError, KeyMismatchError, SeqloadError, type ValidationIssue } from "../errors.js";

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_INVALID_INPUT = 2;

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT_FAILURE,
  ) {
    super(message);
  }
}

/** Malformed JSON (or an input that is not batches at all) at file:line:column. */
export class InputSyntaxError extends CliError {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly column: number,
    readonly reason: string,
    /** The batch the error is in, when the splitter had found its start. */
    readonly batch: number | null,
  ) {
    super(`${file}:${line}:${column}: malformed JSON${batch === null ? "" : ` in batch ${batch}`}: ${reason}`, EXIT_INVALID_INPUT);
  }
}

const SHOWN_ISSUES = 50;

/** A name or path as shown in a message: whole unless huge (a 1 MB name must not flood stderr). */
function cut(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** One line per problem: the message index and the JSON path inside the batch. */
function formatIssues(issues: readonly ValidationIssue[]): string[] {
  const lines = issues.slice(0, SHOWN_ISSUES).map((i) => {
    const path = cut(i.path, 200);
    const where = i.index === null ? path || "(batch)" : `message ${i.index} at ${path}`;
    return `  - ${where}: ${i.message}`;
  });
  if (issues.length > SHOWN_ISSUES) lines.push(`  - … and ${issues.length - SHOWN_ISSUES} more`);
  return lines;
}

/** The place of a batch in its input, e.g. `batches.jsonl:3 (batch 3)`. */
export function batchPlace(file: string, line: number, batch: number): string {
  return `${file}:${line} (batch ${batch})`;
}

/** An error raised while handling one batch, with the batch's place in front. */
export function batchError(place: string, e: unknown): CliError {
  if (e instanceof BatchValidationError) {
    const table = e.table === null ? "" : ` for table ${JSON.stringify(cut(e.table, 80))}`;
    const n = e.issues.length;
    return new CliError(
      [`${place}: invalid batch${table}, ${n} problem${n === 1 ? "" : "s"}; nothing from it was written:`, ...formatIssues(e.issues)].join(
        "\n",
      ),
      EXIT_INVALID_INPUT,
    );
  }
  if (e instanceof KeyMismatchError || e instanceof DistributionChangeError)
    return new CliError(`${place}: ${e.message}`, EXIT_INVALID_INPUT);
  if (e instanceof CliError) return e;
  const { message, exitCode } = describeError(e);
  return new CliError(`${place}: not loaded: ${message}`, exitCode);
}

/** Message and exit code for anything thrown. */
export function describeError(e: unknown): { message: string; exitCode: number } {
  if (e instanceof CliError) return { message: e.message, exitCode: e.exitCode };
  if (e instanceof BatchValidationError || e instanceof KeyMismatchError || e instanceof DistributionChangeError) {
    return { message: e.message, exitCode: EXIT_INVALID_INPUT };
  }
  if (e instanceof SeqloadError) return { message: `${e.message} [${e.code}]`, exitCode: EXIT_FAILURE };
  const err = e instanceof Error ? e : new Error(String(e));
  const debug = process.env.SEQLOAD_DEBUG === "1";
  const hint = debug ? `\n${err.stack ?? ""}` : " (set SEQLOAD_DEBUG=1 for the stack trace)";
  return { message: `unexpected error: ${err.message}${hint}`, exitCode: EXIT_FAILURE };
}
