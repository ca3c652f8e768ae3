/**
 * Lossless JSON text parsing for the CLI and the HTTP server. JSON.parse turns every number into
 * a double: 19-digit sequences and long decimals would be silently rounded, and it keeps the last
 * of duplicated keys without a word. Numbers that a double
 * holds exactly stay plain numbers; longer integers become bigint and longer decimals become
 * lossless-json LosslessNumbers, which the loader writes digit for digit.
 *
 * The parser is lossless-json's grammar, values, duplicate-key rule and error messages
 * (`... at position N`), rewritten for speed and memory (test/json.test.ts checks it against
 * lossless-json itself; `node dist/bench/parse.js` measures both). lossless-json builds every
 * string one character at a time (`s += c`), so a 20,000-message batch parsed that way held about
 * 3x its final size in string fragments until the strings were flattened, and it makes a token
 * string for every number. Here a string is scanned, then made in one piece: never as a slice of
 * the input, so the input text (a 4 MB JSON Lines line, a 20 MiB HTTP body) is garbage as soon as
 * parsing returns, whatever part of the result is kept (a table name in a cache, say). Common
 * numbers are decided while scanned (see parseNumber).
 */
import { performance } from "node:perf_hooks";
import { LosslessNumber } from "lossless-json";

const INTEGER = /^-?\d+$/;

/**
 * A JSON number token as a value that writes back exactly as it was written: a plain number when
 * JavaScript prints the double exactly so ("19.99", "0.1", "100"), a bigint for longer integers,
 * else a LosslessNumber holding the text ("1.00", "1E+2", "1e-400", "12345678901234567890.5").
 * @internal exported for test/json.test.ts and the parse benchmarks (lossless-json's parser with it)
 */
export function parseNumberToken(token: string): number | bigint | LosslessNumber {
  const n = Number(token);
  if (INTEGER.test(token)) {
    // "1795465705836060200" prints back the same from a double, yet the double is ...160: integers
    // beyond 2^53 are bigints.
    if (Number.isSafeInteger(n)) return String(n) === token ? n : new LosslessNumber(token); // "-0", "007"
    return BigInt(token);
  }
  return String(n) === token ? n : new LosslessNumber(token);
}

/** Where nesting first goes deeper than `limit` (strings skipped), for the error message. */
function tooDeepAt(text: string, limit: number): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92)
        i++; // backslash: skip the escaped character
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 91 || c === 123) {
      if (++depth > limit) return i;
    } else if (c === 93 || c === 125) depth--;
  }
  return -1;
}

/**
 * Parse JSON text without losing a digit. Throws SyntaxError with a position on malformed input,
 * and on a key repeated in one object with a different value (JSON.parse would silently keep the
 * last one); a repeat with an equal value changes nothing.
 */
export function parseJson(input: string): unknown {
  text = input;
  at = 0;
  try {
    const value = parseValue();
    if (value === undefined) throw new SyntaxError(`JSON value expected ${gotAt()}`);
    if (at < text.length) throw new SyntaxError(`Expected end of input ${gotAt()}`);
    return value;
  } catch (e) {
    throw tooDeepError(e, input);
  } finally {
    text = ""; // never keep the input alive
  }
}

/**
 * parseJson (the same values and errors) for a server: gives the event loop a turn every `sliceMs`
 * milliseconds of parsing, between the members and items of the outer two levels (a batch and its
 * messages), so that parsing a 20 MB body does not hold up other requests' database work (their
 * answers from PostgreSQL wait for the event loop) for the whole parse.
 */
export async function parseJsonYielding(input: string, sliceMs = 4): Promise<unknown> {
  const turns: Turns = { count: 0, sliceStart: performance.now(), sliceMs };
  const steps = (function* (): Generator<void, unknown, void> {
    const value = yield* valueSteps(0, turns);
    if (value === undefined) throw new SyntaxError(`JSON value expected ${gotAt()}`);
    if (at < text.length) throw new SyntaxError(`Expected end of input ${gotAt()}`);
    return value;
  })();
  text = input;
  at = 0;
  try {
    for (;;) {
      // Runs until a turn is due: the generators stop only then, not at every message (a stop
      // passes through every level's yield*, which cost about half as much again as the parse).
      const step = steps.next();
      if (step.done === true) return step.value;
      // Another parse may run while this one waits: its state is put back afterwards.
      const position = at;
      text = "";
      await new Promise<void>((resolve) => setImmediate(resolve));
      text = input;
      at = position;
      turns.sliceStart = performance.now();
    }
  } catch (e) {
    throw tooDeepError(e, input);
  } finally {
    text = "";
  }
}

/** When parseJsonYielding's next turn is due. */
interface Turns {
  /** Members and items parsed at the outer two levels. */
  count: number;
  sliceStart: number;
  sliceMs: number;
}

/** True when the slice is used up; the clock is read every 16 members or items, not at each. */
function turnDue(t: Turns): boolean {
  return (++t.count & 15) === 0 && performance.now() - t.sliceStart >= t.sliceMs;
}

/** The parser is recursive: absurdly deep nesting exhausts the stack. Say so, as a JSON error. */
function tooDeepError(e: unknown, input: string): unknown {
  if (!(e instanceof RangeError)) return e;
  const deep = tooDeepAt(input, 1000);
  return new SyntaxError(
    `JSON is nested too deeply to parse: more than 1000 levels of arrays or objects${deep >= 0 ? ` at position ${deep}` : ""}`,
    { cause: e },
  );
}

// The parser's state. A parse runs synchronously (parseJsonYielding's between its turns, setting
// the state again at each), so one set suffices.
let text = "";
let at = 0;

const QUOTE = 34;
const BACKSLASH = 92;
const OPEN_BRACE = 123;
const CLOSE_BRACE = 125;
const OPEN_BRACKET = 91;
const CLOSE_BRACKET = 93;
const COMMA = 44;
const COLON = 58;
const MINUS = 45;
const PLUS = 43;
const DOT = 46;
const ZERO = 48;
const NINE = 57;
/** A SlicedString is made for slices this long or longer: it would keep the whole input alive. */
const SLICE_MIN = 13;
/** Integers with at most this many digits are exact in a double and print back the same. */
const EXACT_DIGITS = 15;

const isDigit = (c: number): boolean => c >= ZERO && c <= NINE;

function skipWhitespace(): void {
  let c = text.charCodeAt(at);
  while (c === 32 || c === 10 || c === 9 || c === 13) c = text.charCodeAt(++at);
}

function got(): string {
  return at < text.length ? `but got '${text[at]}'` : "but reached end of input";
}

function gotAt(): string {
  return `${got()} at position ${at}`;
}

/** A value, with the whitespace around it; undefined when none starts here. */
function parseValue(): unknown {
  skipWhitespace();
  const c = text.charCodeAt(at);
  let value: unknown;
  if (c === QUOTE) value = parseString(false);
  else if (c === OPEN_BRACE) value = parseObject();
  else if (c === OPEN_BRACKET) value = parseArray();
  else if (c === MINUS || isDigit(c)) value = parseNumber();
  else if (c === 116 && text.startsWith("true", at)) {
    at += 4;
    value = true;
  } else if (c === 102 && text.startsWith("false", at)) {
    at += 5;
    value = false;
  } else if (c === 110 && text.startsWith("null", at)) {
    at += 4;
    value = null;
  } else return undefined;
  skipWhitespace();
  return value;
}

function parseObject(): Record<string, unknown> {
  const object = openObject();
  for (let first = true; !atObjectEnd(); first = false) {
    const key = memberKey(first);
    const start = keyStart;
    setMember(object, key, parseValue(), start);
  }
  return closeObject(object);
}

// The pieces of an object and of an array, shared by the plain parser and the yielding one.

const openObject = (): Record<string, unknown> => {
  at++;
  skipWhitespace();
  return {};
};

const atObjectEnd = (): boolean => at >= text.length || text.charCodeAt(at) === CLOSE_BRACE;

/** Where the key memberKey read last begins (its opening quote). */
let keyStart = 0;

/** A member's key, up to and past its colon (and the comma before it, but for the first member). */
function memberKey(first: boolean): string {
  if (!first) {
    if (text.charCodeAt(at) !== COMMA) throw new SyntaxError(`Comma ',' expected after value ${gotAt()}`);
    at++;
    skipWhitespace();
  }
  keyStart = at;
  if (text.charCodeAt(at) !== QUOTE) throw new SyntaxError(`Quoted object key expected ${gotAt()}`);
  const key = parseKey();
  skipWhitespace();
  if (text.charCodeAt(at) !== COLON) throw new SyntaxError(`Colon ':' expected after property name ${gotAt()}`);
  at++;
  return key;
}

function closeObject(object: Record<string, unknown>): Record<string, unknown> {
  if (text.charCodeAt(at) !== CLOSE_BRACE) throw new SyntaxError(`Quoted object key or end of object '}' expected ${gotAt()}`);
  at++;
  return object;
}

const openArray = (): unknown[] => {
  at++;
  skipWhitespace();
  return [];
};

const atArrayEnd = (): boolean => at >= text.length || text.charCodeAt(at) === CLOSE_BRACKET;

/** The comma before an item (but the first). */
function itemSeparator(first: boolean): void {
  if (first) return;
  if (text.charCodeAt(at) !== COMMA) throw new SyntaxError(`Comma ',' expected after value ${gotAt()}`);
  at++;
}

/** An item as parsed: there must be one. */
function item(value: unknown): unknown {
  if (value === undefined) throw new SyntaxError(`Array item expected ${gotAt()}`);
  return value;
}

function closeArray(array: unknown[]): unknown[] {
  if (text.charCodeAt(at) !== CLOSE_BRACKET) throw new SyntaxError(`Array item or end of array ']' expected ${gotAt()}`);
  at++;
  return array;
}

/** Store a member read from `start` (its key's opening quote), with lossless-json's duplicate-key rule. */
function setMember(object: Record<string, unknown>, key: string, value: unknown, start: number): void {
  if (value === undefined) throw new SyntaxError(`Object value expected after ':' at position ${at}`);
  // Values are never undefined: a cheap look-up settles the common case, a new key.
  const old = object[key];
  if (old !== undefined && !isDeepEqual(value, old) && Object.hasOwn(object, key)) {
    throw new SyntaxError(`Duplicate key '${key}' encountered at position ${start + 1}`);
  }
  // An equal repeat replaces the value, as in lossless-json (equal, yet `[]` may replace `{}`).
  if (key === "__proto__") {
    // Plain assignment would set the prototype; JSON.parse makes an ordinary own property.
    Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
  } else {
    object[key] = value;
  }
}

function parseArray(): unknown[] {
  const array = openArray();
  for (let first = true; !atArrayEnd(); first = false) {
    itemSeparator(first);
    array.push(item(parseValue()));
  }
  return closeArray(array);
}

// The same grammar as steps that pause between the members and items of the outer two levels (a
// batch and its messages), for parseJsonYielding. Deeper values (depth 2: each message) are parsed
// by the functions above, without a generator each.

function* valueSteps(depth: number, turns: Turns): Generator<void, unknown, void> {
  skipWhitespace();
  const c = text.charCodeAt(at);
  if (c !== OPEN_BRACE && c !== OPEN_BRACKET) return parseValue();
  const value = c === OPEN_BRACE ? yield* objectSteps(depth, turns) : yield* arraySteps(depth, turns);
  skipWhitespace();
  return value;
}

function* objectSteps(depth: number, turns: Turns): Generator<void, Record<string, unknown>, void> {
  const object = openObject();
  for (let first = true; !atObjectEnd(); first = false) {
    const key = memberKey(first);
    const start = keyStart;
    setMember(object, key, depth >= 1 ? parseValue() : yield* valueSteps(depth + 1, turns), start);
    if (turnDue(turns)) yield;
  }
  return closeObject(object);
}

function* arraySteps(depth: number, turns: Turns): Generator<void, unknown[], void> {
  const array = openArray();
  if (depth >= 1) {
    // The messages: parsed in a plain loop (faster than one in a generator) until a turn is due.
    while (!itemsUntilTurn(array, turns)) yield;
  } else {
    for (let first = true; !atArrayEnd(); first = false) {
      itemSeparator(first);
      array.push(item(yield* valueSteps(depth + 1, turns)));
      if (turnDue(turns)) yield;
    }
  }
  return closeArray(array);
}

/** Adds the next items of the array to `array`: true at its end (or where it breaks), false when a turn is due first. */
function itemsUntilTurn(array: unknown[], turns: Turns): boolean {
  while (!atArrayEnd()) {
    itemSeparator(array.length === 0);
    array.push(item(parseValue()));
    if (turnDue(turns)) return false;
  }
  return true;
}

/**
 * lossless-json's equality for a repeated key's values, to accept exactly the repeats it accepts:
 * arrays item by item, other objects (LosslessNumbers too) by the union of their own keys, else ===.
 */
function isDeepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((item, i) => isDeepEqual(item, b[i]));
  if (typeof a === "object" && a !== null && typeof b === "object" && b !== null) {
    const x = a as Record<string, unknown>;
    const y = b as Record<string, unknown>;
    return [...new Set([...Object.keys(x), ...Object.keys(y)])].every((k) => isDeepEqual(x[k], y[k]));
  }
  return false;
}

/** Recently seen short keys, by a hash of their text: a batch repeats the same few keys. */
const keyCache: string[] = new Array<string>(256).fill("");

/**
 * An object key, `at` on its opening quote. A short key without escapes that was seen recently is
 * the same string as before, with no new string made: a string already used as a property name,
 * which V8 has interned, so storing the property does not look the name up again.
 */
function parseKey(): string {
  const start = at + 1;
  let i = start;
  let h = 0;
  for (;;) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) break;
    // An escape, a control character or the end of the input (NaN): the general path.
    if (c === BACKSLASH || !(c >= 32)) return parseString(true);
    h = (h * 31 + c) | 0;
    i++;
  }
  const length = i - start;
  if (length >= SLICE_MIN) return parseString(true); // never kept here: a slice would keep the input alive
  at = i + 1;
  const slot = (h ^ length) & 255;
  const cached = keyCache[slot] as string;
  if (cached.length === length && text.startsWith(cached, start)) return cached;
  const key = text.slice(start, i);
  keyCache[slot] = key;
  return key;
}

/**
 * A string token, `at` on its opening quote. Scanned here; made by JSON.parse of the token, which
 * copies it into a new flat string (one byte per character when it can, even from a two-byte
 * input) and decodes escapes. Short unescaped strings are copies already; a key may be a slice:
 * used as a property name, it is replaced by the interned copy.
 */
function parseString(key: boolean): string {
  const start = ++at;
  let escaped = false;
  for (;;) {
    const c = text.charCodeAt(at);
    if (c === QUOTE) break;
    if (c === BACKSLASH) {
      escaped = true;
      at += 2;
    } else if (c >= 32) at++;
    else return stringError(start); // a control character, or the end of the input (NaN)
  }
  const end = at++;
  if (!escaped && (key || end - start < SLICE_MIN)) return text.slice(start, end);
  try {
    return JSON.parse(text.slice(start - 1, end + 1)) as string;
  } catch {
    return stringError(start); // an invalid escape
  }
}

const ESCAPES: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
const isHex = (c: number): boolean => (c >= ZERO && c <= NINE) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);

/** Reads the string starting at `start` character by character, as lossless-json does, to throw its error. */
function stringError(start: number): string {
  at = start;
  let result = "";
  while (at < text.length && text.charCodeAt(at) !== QUOTE) {
    const c = text.charCodeAt(at);
    if (c === BACKSLASH) {
      const char = text[at + 1] as string;
      const escape = ESCAPES[char];
      if (escape !== undefined) {
        result += escape;
        at++;
      } else if (char === "u") {
        if (!(
          isHex(text.charCodeAt(at + 2)) &&
          isHex(text.charCodeAt(at + 3)) &&
          isHex(text.charCodeAt(at + 4)) &&
          isHex(text.charCodeAt(at + 5))
        ))
          throw new SyntaxError(`Invalid unicode character '${text.slice(at, at + 6)}' at position ${at}`);
        result += String.fromCharCode(Number.parseInt(text.slice(at + 2, at + 6), 16));
        at += 5;
      } else {
        throw new SyntaxError(`Invalid escape character '${text.slice(at, at + 2)}' at position ${at}`);
      }
    } else if (c >= 32) {
      result += text[at];
    } else {
      throw new SyntaxError(`Invalid character '${text[at]}' at position ${at}`);
    }
    at++;
  }
  if (text.charCodeAt(at) !== QUOTE) throw new SyntaxError(`End of string '"' expected ${gotAt()}`);
  at++;
  return result; // not reached for a string the fast path refused; kept for safety
}

/** 10^k for k = 0…15, exact as doubles. */
const POWERS_OF_TEN = Array.from({ length: EXACT_DIGITS + 1 }, (_, k) => 10 ** k);

/**
 * A number token, `at` on its first character ('-' or a digit). The common tokens are decided
 * while they are scanned, with exactly parseNumberToken's outcome:
 * - an integer of at most 15 digits is the number its digits sum to;
 * - an integer of 17 digits or more is beyond 2^53, so a bigint;
 * - a decimal without exponent, of at most 15 digits in all and not ending in 0, is the double
 *   nearest to it (its digits as an exact integer divided by an exact power of ten: one correctly
 *   rounded division), and that double prints back as the token, when it is at least 1e-6
 *   (JavaScript prints smaller ones with an exponent): so no token string, no Number(), no String().
 * Anything else ("-0", "1.50", "1e5", 16 digits, 0.0000001) goes to parseNumberToken.
 */
function parseNumber(): number | bigint | LosslessNumber {
  const start = at;
  const negative = text.charCodeAt(at) === MINUS;
  if (negative) {
    at++;
    expectDigit(start);
  }
  let c = text.charCodeAt(at);
  // Digits are summed as they are read (exact while there are at most 15 of them).
  let n = 0;
  const intStart = at;
  if (c === ZERO) {
    c = text.charCodeAt(++at);
  } else {
    do {
      n = n * 10 + (c - ZERO);
      c = text.charCodeAt(++at);
    } while (isDigit(c));
  }
  const intDigits = at - intStart;
  let fracDigits = 0;
  let lastDigit = 0;
  if (c === DOT) {
    at++;
    expectDigit(start);
    const fracStart = at;
    while (isDigit((c = text.charCodeAt(at)))) {
      n = n * 10 + (c - ZERO);
      at++;
    }
    fracDigits = at - fracStart;
    lastDigit = text.charCodeAt(at - 1);
  }
  if (c === 101 || c === 69) {
    c = text.charCodeAt(++at);
    if (c === MINUS || c === PLUS) at++;
    expectDigit(start);
    while (isDigit(text.charCodeAt(at))) at++;
    return parseNumberToken(text.slice(start, at));
  }
  if (fracDigits === 0) {
    // "-0" is not the number 0 as written (String(-0) is "0"): the token decides.
    if (intDigits <= EXACT_DIGITS && !(negative && n === 0)) return negative ? -n : n;
    if (intDigits > EXACT_DIGITS + 1) return BigInt(text.slice(start, at));
  } else if (
    intDigits + fracDigits <= EXACT_DIGITS &&
    lastDigit !== ZERO && // so n >= 1
    (fracDigits <= 6 || n >= (POWERS_OF_TEN[fracDigits - 6] as number)) // n / 10^fracDigits >= 1e-6
  ) {
    const value = n / (POWERS_OF_TEN[fracDigits] as number);
    return negative ? -value : value;
  }
  return parseNumberToken(text.slice(start, at));
}

function expectDigit(start: number): void {
  if (!isDigit(text.charCodeAt(at))) throw new SyntaxError(`Invalid number '${text.slice(start, at)}', expecting a digit ${gotAt()}`);
}
