/**
 * Splits a stream of JSON text into the text of one batch at a time, without parsing it and without
 * ever holding more than one batch (plus one chunk) in memory. Three shapes are accepted:
 *   - JSON Lines: one batch object per line (also a file with a single one-line object);
 *   - one or more batch objects, pretty-printed over several lines;
 *   - a JSON array of batch objects, whose elements are handed out one by one.
 * The shape is told by the first value: `[` is an array; an object that ends on its first line
 * means JSON Lines, whose lines are then cut with indexOf (fast, and a broken line cannot swallow
 * the lines after it); an object spanning lines means a sequence of objects, cut by depth.
 * Only the structure (strings, escapes, nesting) is tracked here; the values are parsed later
 * (losslessly) and their syntax errors are positioned from `line`/`column`.
 */

/** The text of one batch and where it starts (1-based line and column, columns in UTF-16 units). */
export interface RawBatch {
  text: string;
  line: number;
  column: number;
}

/** Malformed input found by the splitter itself (outside any batch's own text). */
export class SplitError extends Error {
  constructor(
    readonly reason: string,
    readonly line: number,
    readonly column: number,
  ) {
    super(`${line}:${column}: ${reason}`);
  }
}

type Mode = "start" | "array" | "objects" | "lines" | "end";

const OPEN_BRACE = 123; // {
const CLOSE_BRACE = 125; // }
const OPEN_BRACKET = 91; // [
const CLOSE_BRACKET = 93; // ]
const QUOTE = 34;
const BACKSLASH = 92;
const COMMA = 44;
const NEWLINE = 10;
const BOM = 0xfeff;

const isSpace = (c: number): boolean => c === 32 || c === 10 || c === 13 || c === 9;
const BLANK = /^\s*$/;
const show = (c: number): string => JSON.stringify(String.fromCharCode(c));

export class BatchSplitter {
  private mode: Mode = "start";
  /** Position of the next character. */
  private line = 1;
  private column = 1;
  /** Nesting depth; in array mode the outer array counts as 1. */
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** The value being read: its text from earlier chunks, where it starts in this chunk, where in the input. */
  private pieces: string[] = [];
  private inValue = false;
  private valueOffset = 0;
  private valueLine = 1;
  private valueColumn = 1;
  private valueSpansLines = false;
  /** Values handed out so far. */
  private count = 0;
  /** Array mode: a ',' was read and no element has started since. */
  private afterComma = false;
  private atStart = true;
  /** JSON Lines: the first batch, held back until the rest of its line is known to be blank. */
  private pendingFirst: RawBatch | null = null;

  /** The line of the next character, for messages about the raw input. */
  get currentLine(): number {
    return this.line;
  }

  /** Feed the next chunk; returns the batches it completed. */
  push(chunk: string): RawBatch[] {
    const out: RawBatch[] = [];
    let i = 0;
    if (this.atStart && chunk.length > 0) {
      this.atStart = false;
      if (chunk.charCodeAt(0) === BOM) i = 1;
    }
    while (i < chunk.length) {
      if (this.mode === "lines") return this.pushLines(chunk, i, out);
      i = this.mode === "start" || this.mode === "end" ? this.between(chunk, i) : this.scan(chunk, i, out);
    }
    if (this.inValue) this.pieces.push(chunk.slice(this.valueOffset));
    this.valueOffset = 0;
    return out;
  }

  /**
   * The input ended: returns the last batch, if any. A batch with `incomplete: true` was cut off
   * by the end of the input; its parse error says where (better than a bare "unexpected end").
   */
  end(): (RawBatch & { incomplete?: boolean })[] {
    const rest = this.pieces.join("");
    this.pieces = [];
    const at = { line: this.valueLine, column: this.valueColumn };
    switch (this.mode) {
      case "lines": {
        if (this.pendingFirst === null) return BLANK.test(rest) ? [] : [{ text: rest, ...at }];
        const out: RawBatch[] = [];
        this.releaseFirst(rest, out);
        return out;
      }
      case "start":
        throw new SplitError("the input is empty: expected a batch object, an array of batches, or JSON Lines", this.line, this.column);
      case "end":
        return [];
      case "objects":
        return this.inValue ? [{ text: rest, ...at, incomplete: true }] : [];
      case "array":
        if (this.inValue && this.depth > 1) return [{ text: rest, ...at, incomplete: true }];
        throw new SplitError("unexpected end of input: the array of batches is not closed with ']'", this.line, this.column);
    }
  }

  private beginValue(i: number): void {
    this.inValue = true;
    this.valueOffset = i;
    this.valueLine = this.line;
    this.valueColumn = this.column;
    this.valueSpansLines = false;
    this.pieces = [];
  }

  private takeValue(chunk: string, endExclusive: number): RawBatch {
    this.pieces.push(chunk.slice(this.valueOffset, endExclusive));
    const text = this.pieces.length === 1 ? (this.pieces[0] as string) : this.pieces.join("");
    this.pieces = [];
    this.inValue = false;
    this.count++;
    return { text, line: this.valueLine, column: this.valueColumn };
  }

  private advance(c: number): void {
    if (c === NEWLINE) {
      this.line++;
      this.column = 1;
      if (this.inValue) this.valueSpansLines = true;
    } else {
      this.column++;
    }
  }

  /** Whitespace before the first value, or after the closing ']'. */
  private between(chunk: string, i: number): number {
    for (; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i);
      if (isSpace(c)) {
        this.advance(c);
        continue;
      }
      if (this.mode === "end")
        throw new SplitError(`unexpected ${show(c)} after the closing ']' of the array of batches`, this.line, this.column);
      if (c === OPEN_BRACKET) {
        this.mode = "array";
        this.depth = 1;
        this.advance(c);
        return i + 1;
      }
      if (c === OPEN_BRACE) {
        this.mode = "objects";
        return i;
      }
      throw new SplitError(
        `unexpected ${show(c)}: expected a batch object '{', an array of batches '[', or JSON Lines`,
        this.line,
        this.column,
      );
    }
    return i;
  }

  /** Array and objects mode: track strings and nesting, cut values at the top level. */
  private scan(chunk: string, i: number, out: RawBatch[]): number {
    const top = this.mode === "array" ? 1 : 0;
    for (; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i);
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === BACKSLASH) this.escaped = true;
        else if (c === QUOTE) this.inString = false;
        this.advance(c);
        continue;
      }
      if (!this.inValue) {
        // Between two values at the top level.
        if (isSpace(c)) {
          this.advance(c);
          continue;
        }
        if (top === 1) {
          if (c === COMMA) {
            if (this.count === 0 || this.afterComma)
              throw new SplitError("unexpected ',': expected a batch object", this.line, this.column);
            this.afterComma = true;
            this.advance(c);
            continue;
          }
          if (c === CLOSE_BRACKET) {
            if (this.afterComma) throw new SplitError("unexpected ']' after ',': expected another batch object", this.line, this.column);
            this.mode = "end";
            this.depth = 0;
            this.advance(c);
            return i + 1;
          }
          if (this.count > 0 && !this.afterComma)
            throw new SplitError(`unexpected ${show(c)}: expected ',' or ']' after a batch in the array`, this.line, this.column);
          this.afterComma = false;
        } else if (c !== OPEN_BRACE) {
          throw new SplitError(
            `unexpected ${show(c)} after the end of a batch object: expected another '{' or the end of the input`,
            this.line,
            this.column,
          );
        }
        this.beginValue(i);
      }
      if (c === QUOTE) {
        this.inString = true;
      } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
        this.depth++;
      } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
        if (this.depth === top) {
          // Only in array mode: a scalar element ends at ']' (the loader then rejects the scalar).
          if (c === CLOSE_BRACE) throw new SplitError("unexpected '}'", this.line, this.column);
          out.push(this.takeValue(chunk, i));
          this.mode = "end";
          this.depth = 0;
          this.advance(c);
          return i + 1;
        }
        this.depth--;
        if (this.depth === top) {
          this.advance(c);
          const spansLines = this.valueSpansLines;
          const batch = this.takeValue(chunk, i + 1);
          if (top === 0 && this.count === 1 && !spansLines) {
            // The first object fits on its line: JSON Lines. It is handed out only once the rest
            // of its line is known to be blank ("{…} xyz" is one malformed line, not two).
            this.pendingFirst = batch;
            this.mode = "lines";
            this.valueLine = this.line;
            this.valueColumn = this.column;
          } else {
            out.push(batch);
          }
          return i + 1;
        }
      } else if (c === COMMA && this.depth === top) {
        // Only in array mode: a scalar element ends at ','.
        out.push(this.takeValue(chunk, i));
        this.afterComma = true;
      }
      this.advance(c);
    }
    return i;
  }

  /** `rest` is what followed the first batch on its line: blank, or the line is malformed. */
  private releaseFirst(rest: string, out: RawBatch[]): void {
    const first = this.pendingFirst as RawBatch;
    this.pendingFirst = null;
    const junk = rest.search(/\S/);
    if (junk !== -1) {
      throw new SplitError(
        `unexpected ${show(rest.charCodeAt(junk))} after the batch object on the same line (JSON Lines hold one batch per line)`,
        this.valueLine,
        this.valueColumn + junk,
      );
    }
    out.push(first);
  }

  /** JSON Lines: every line is one batch; blank lines are skipped. */
  private pushLines(chunk: string, from: number, out: RawBatch[]): RawBatch[] {
    let start = from;
    for (;;) {
      const nl = chunk.indexOf("\n", start);
      if (nl === -1) {
        if (start < chunk.length) this.pieces.push(chunk.slice(start));
        return out;
      }
      this.pieces.push(chunk.slice(start, nl));
      const text = this.pieces.length === 1 ? (this.pieces[0] as string) : this.pieces.join("");
      this.pieces = [];
      if (this.pendingFirst !== null) this.releaseFirst(text, out);
      else if (!BLANK.test(text)) out.push({ text, line: this.valueLine, column: this.valueColumn });
      this.line++;
      this.valueLine = this.line;
      this.valueColumn = 1;
      start = nl + 1;
    }
  }
}
