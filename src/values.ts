/**
 * Turning record values into the text PostgreSQL reads (for COPY and for array parameters),
 * exactly: integers and decimals keep every digit, timestamps keep their instant, strings are
 * never altered. Exact numbers arrive as number (safe), bigint, or lossless-json's LosslessNumber.
 */
import { isLosslessNumber, stringify as losslessStringify } from "lossless-json";
import type { ColumnType } from "./columns.js";
import { INT64_MAX, INT64_MIN } from "./sequence.js";

/** A JSON number in any of the exact forms seqload accepts. */
export function isNumeric(v: unknown): v is number | bigint | { value: string } {
  return typeof v === "number" || typeof v === "bigint" || isLosslessNumber(v);
}

/** The decimal text of a numeric value, every digit kept. */
export function numericText(v: number | bigint | { value: string }): string {
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "number") {
    // Integers beyond 2^53 print in exponent form ("1e+21"); write the double's exact digits instead.
    if (Number.isInteger(v) && !Number.isSafeInteger(v)) return BigInt(v).toString();
    return String(v);
  }
  return v.value;
}

/** Does this integer-valued number fit a bigint column? */
export function fitsInt64(v: number | bigint | { value: string }): boolean {
  if (typeof v === "number") return Number.isSafeInteger(v) || (Number.isInteger(v) && BigInt(v) <= INT64_MAX && BigInt(v) >= INT64_MIN);
  const text = typeof v === "bigint" ? v.toString() : v.value;
  if (!/^[+-]?\d+$/.test(text)) return false;
  const n = BigInt(text);
  return n <= INT64_MAX && n >= INT64_MIN;
}

/** JSON text for a jsonb value, keeping big integers and exact decimals exact. */
export function jsonText(v: unknown): string {
  try {
    const out = JSON.stringify(v);
    // A LosslessNumber serialises as an object with this field; redo those exactly.
    if (!out.includes('"isLosslessNumber":true')) return out;
  } catch (e) {
    if (!(e instanceof TypeError)) throw e; // BigInt: fall through to the lossless serialiser
  }
  return losslessStringify(v) as string;
}

// RFC 3339 / ISO 8601 date-times as senders write them: "T" or space, optional seconds and
// fraction, offset "Z", "+hh:mm", "+hhmm" or "+hh", or none (read as UTC).
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?\s*([Zz]|[+-]\d{2}(?::?\d{2})?)?$/;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

function validYmd(y: number, m: number, d: number): boolean {
  if (y < 1 || m < 1 || m > 12 || d < 1) return false;
  const days = new Date(Date.UTC(2000, m, 0)).getUTCDate(); // days in month (leap year 2000 for Feb)
  if (d > days) return false;
  if (m === 2 && d === 29) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  return true;
}

/** A description of what is wrong with a date-time string, or null. */
export function dateTimeProblem(s: string): string | null {
  const m = DATE_TIME.exec(s);
  if (m === null)
    return `${JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s)} is not an ISO 8601 date-time (e.g. 2019-11-26T22:29:16Z)`;
  const [, y, mo, d, h, mi, sec, , off] = m;
  if (!validYmd(Number(y), Number(mo), Number(d))) return `${JSON.stringify(s)} is not a valid calendar date`;
  if (Number(h) > 24 || Number(mi) > 59 || Number(sec ?? 0) > 60) return `${JSON.stringify(s)} has an invalid time of day`;
  if (off !== undefined && off.length > 1 && Number(off.slice(1, 3)) > 15) return `${JSON.stringify(s)} has an invalid offset`;
  return null;
}

export function dateProblem(s: string): string | null {
  const m = DATE.exec(s);
  if (m === null || !validYmd(Number(m[1]), Number(m[2]), Number(m[3]))) {
    return `${JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s)} is not a date (YYYY-MM-DD)`;
  }
  return null;
}

/** A date-time with no offset is read as UTC, whatever the server's TimeZone. */
function timestampText(s: string): string {
  const m = DATE_TIME.exec(s);
  if (m !== null && m[8] === undefined) return `${s.trimEnd()}Z`;
  return s;
}

/**
 * The text PostgreSQL reads for `value` in a column of `type`, or null for SQL NULL. Assumes the
 * value passed validation against a schema whose type is `type` or narrower.
 */
export function encodeValue(value: unknown, type: ColumnType): string | null {
  if (value === null || value === undefined) return null;
  switch (type) {
    case "jsonb":
      return jsonText(value);
    case "timestamptz":
      return typeof value === "string" ? timestampText(value) : String(value);
    case "boolean":
      return value === true ? "true" : value === false ? "false" : String(value);
    default:
      if (typeof value === "string") return value;
      if (isNumeric(value)) return numericText(value);
      if (typeof value === "boolean") return value ? "true" : "false";
      return jsonText(value);
  }
}

/** Normalise a decimal string so that equal numbers compare equal ("1.50" ≡ "1.5" ≡ "15e-1"). */
export function canonicalDecimal(text: string): string {
  const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(text.trim());
  if (m === null) return text;
  const sign = m[1] === "-" ? "-" : "";
  let digits = (m[2] ?? "") + (m[3] ?? "");
  let exp = Number(m[4] ?? 0) - (m[3] ?? "").length;
  digits = digits.replace(/^0+/, "");
  if (digits === "") return "0";
  while (digits.endsWith("0")) {
    digits = digits.slice(0, -1);
    exp += 1;
  }
  return `${sign}${digits}e${exp}`;
}

/** Normalise a timestamp to its instant so that equal instants compare equal across offsets. */
export function canonicalTimestamp(text: string): string {
  const m = DATE_TIME.exec(text);
  if (m === null) return text;
  const [, y, mo, d, h, mi, sec, frac, off] = m;
  let offsetMinutes = 0;
  if (off !== undefined && off !== "Z" && off !== "z") {
    const sign = off.startsWith("-") ? -1 : 1;
    const digits = off.slice(1).replace(":", "");
    offsetMinutes = sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4) || 0));
  }
  const ms = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(sec ?? 0)) - offsetMinutes * 60000;
  const fraction = (frac ?? "").slice(1).replace(/0+$/, "");
  return `${ms}.${fraction}`;
}

/** The form of a key value used to find duplicates inside a batch, matching PostgreSQL's equality. */
export function canonicalKeyText(text: string, type: ColumnType): string {
  if (type === "numeric") return canonicalDecimal(text);
  if (type === "timestamptz") return canonicalTimestamp(text);
  return text;
}
