/**
 * Lossless JSON text parsing for the CLI and the HTTP server. JSON.parse turns every number into
 * a double: 19-digit sequences and long decimals would be silently rounded, and it keeps the last
 * of duplicated keys without a word. Numbers that a double
 * holds exactly stay plain numbers; longer integers become bigint and longer decimals become
 * lossless-json LosslessNumbers, which the loader writes digit for digit.
 */
import { LosslessNumber, parse as losslessParse } from "lossless-json";

const INTEGER = /^-?\d+$/;

/**
 * A JSON number token as a value that writes back exactly as it was written: a plain number when
 * JavaScript prints the double exactly so ("19.99", "0.1", "100"), a bigint for longer integers,
 * else a LosslessNumber holding the text ("1.00", "1E+2", "1e-400", "12345678901234567890.5").
 */
function parseNumberToken(token: string): number | bigint | LosslessNumber {
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
 * and on a duplicated key in one object (JSON.parse would silently keep the last one).
 */
export function parseJson(text: string): unknown {
  try {
    return losslessParse(text, undefined, parseNumberToken);
  } catch (e) {
    // The parser is recursive: absurdly deep nesting exhausts the stack. Say so, as a JSON error.
    if (e instanceof RangeError) {
      const at = tooDeepAt(text, 1000);
      throw new SyntaxError(
        `JSON is nested too deeply to parse: more than 1000 levels of arrays or objects${at >= 0 ? ` at position ${at}` : ""}`,
        { cause: e },
      );
    }
    throw e;
  }
}
