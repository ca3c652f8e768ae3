/**
 * Sequences are signed 64-bit integers that real clients send as 19-digit values, far above
 * Number.MAX_SAFE_INTEGER: they are carried as bigint end to end and never pass through a number.
 */
import { isLosslessNumber } from "lossless-json";

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;

const DECIMAL_INTEGER = /^[+-]?[0-9]+$/;

/** Parse a sequence; returns the bigint or a description of what is wrong. */
export function parseSequence(value: unknown): bigint | string {
  let n: bigint;
  if (typeof value === "bigint") {
    n = value;
  } else if (typeof value === "number") {
    if (!Number.isFinite(value)) return `must be a finite integer, got ${String(value)}`;
    if (!Number.isInteger(value)) return `must be an integer, got the fraction ${value}`;
    if (!Number.isSafeInteger(value)) {
      return `${value} is above 2^53 and was already rounded by JavaScript; pass it as a bigint or a decimal string`;
    }
    n = BigInt(value);
  } else if (typeof value === "string" || isLosslessNumber(value)) {
    const text = typeof value === "string" ? value : value.value;
    if (!DECIMAL_INTEGER.test(text))
      return `must be a decimal integer, got ${JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text)}`;
    n = BigInt(text);
  } else if (value === undefined) {
    return "is missing";
  } else {
    return `must be an integer (number, bigint or decimal string), got ${value === null ? "null" : typeof value}`;
  }
  if (n > INT64_MAX) return `${n} is above the signed 64-bit maximum 9223372036854775807`;
  if (n < INT64_MIN) return `${n} is below the signed 64-bit minimum -9223372036854775808`;
  return n;
}
