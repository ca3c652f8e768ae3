/**
 * Lossless JSON text parsing for the CLI and the HTTP server. JSON.parse turns every number into
 * a double: 19-digit sequences and long decimals would be silently rounded, and it keeps the last
 * of duplicated keys without a word. Numbers that a double
 * holds exactly stay plain numbers; longer integers become bigint and longer decimals become
 * lossless-json LosslessNumbers, which the loader writes digit for digit.
 */
import { LosslessNumber, parse as losslessParse } from "lossless-json";

/** Can a double hold this JSON number token exactly (as a decimal value)? */
function fitsDouble(token: string): boolean {
  // 15 significant decimal digits always round-trip through a double.
  let digits = 0;
  let leading = true;
  for (let i = 0; i < token.length; i++) {
    const ch = token.charCodeAt(i);
    if (ch === 101 || ch === 69) break; // e / E
    if (ch < 48 || ch > 57) continue;
    if (leading && ch === 48) continue;
    leading = false;
    digits++;
  }
  return digits <= 15;
}

const INTEGER = /^-?\d+$/;

export function parseNumberToken(token: string): number | bigint | LosslessNumber {
  if (fitsDouble(token)) {
    const n = Number(token);
    if (Number.isFinite(n)) return n;
  }
  if (INTEGER.test(token)) {
    const b = BigInt(token);
    return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
  }
  return new LosslessNumber(token);
}

/**
 * Parse JSON text without losing a digit. Throws SyntaxError with a position on malformed input,
 * and on a duplicated key in one object (JSON.parse would silently keep the last one).
 */
export function parseJson(text: string): unknown {
  return losslessParse(text, undefined, parseNumberToken);
}
