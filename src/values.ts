/**
 * Turning record values into the text PostgreSQL reads (for COPY and for array parameters),
 * exactly: integers and decimals keep every digit, timestamps keep their instant, strings are
 * never altered. Exact numbers arrive as number (safe), bigint, or lossless-json's LosslessNumber.
 */
import { isLosslessNumber, stringify as losslessStringify } from "lossless-json";
import type { ColumnType } from "./columns.js";
import { shorten } from "./text.js";
import { INT64_MAX, INT64_MIN } from "./sequence.js";

/** A JSON number in any of the exact forms seqload accepts. */
export function isNumeric(v: unknown): v is number | bigint | { value: string } {
  return typeof v === "number" || typeof v === "bigint" || isLosslessNumber(v);
}

/** The decimal text of a numeric value, every digit kept. */
function numericText(v: number | bigint | { value: string }): string {
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "number") {
    // Integers beyond 2^53 print in exponent form ("1e+21"); write the double's exact digits instead.
    if (Number.isInteger(v) && !Number.isSafeInteger(v)) return BigInt(v).toString();
    return String(v);
  }
  return v.value;
}

/**
 * The exact integer a JSON number denotes (e.g. 1E+2 → 100n, 9007199254740993.0 → 9007199254740993n),
 * or null when it is not an integer.
 */
export function exactInteger(v: number | bigint | { value: string }): bigint | null {
  if (typeof v === "bigint") return v;
  if (typeof v === "number") return Number.isInteger(v) ? BigInt(v) : null;
  const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(v.value);
  if (m === null) return null;
  const exp = Number(m[4] ?? 0);
  if (Math.abs(exp) > 100_000) return null;
  let digits = (m[2] ?? "") + (m[3] ?? "");
  let scale = (m[3] ?? "").length - exp; // value = digits × 10^-scale
  while (scale > 0 && digits.endsWith("0")) {
    digits = digits.slice(0, -1);
    scale -= 1;
  }
  if (scale > 0 && /[1-9]/.test(digits)) return null;
  if (scale > 0) return 0n;
  const n = BigInt(`${digits || "0"}${"0".repeat(-scale)}`);
  return m[1] === "-" ? -n : n;
}

/**
 * Why PostgreSQL's numeric cannot hold this number exactly, or null. numeric holds up to 131072
 * digits before the decimal point and 16383 after it.
 */
export function numericRangeProblem(v: number | bigint | { value: string }): string | null {
  if (typeof v !== "object") return null;
  const c = canonicalDecimal(v.value); // digits e exponent
  const m = /^-?(\d+)e(-?\d+)$/.exec(c);
  if (m === null) return null;
  const digits = (m[1] as string).length;
  const exp = Number(m[2]);
  if (digits + exp > 131072)
    return `${abbreviate(v.value)} is too large for PostgreSQL numeric (at most 131072 digits before the decimal point)`;
  if (-exp > 16383)
    return `${abbreviate(v.value)} has more than 16383 digits after the decimal point, which PostgreSQL numeric cannot hold`;
  return null;
}

function abbreviate(s: string): string {
  return shorten(s, 40);
}

/** Does this integer-valued number fit a bigint column? */
export function fitsInt64(v: number | bigint | { value: string }): boolean {
  const n = exactInteger(v);
  return n !== null && n <= INT64_MAX && n >= INT64_MIN;
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

const DAYS_IN_MONTH = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]; // February: leap years checked below

function validYmd(y: number, m: number, d: number): boolean {
  if (y < 1 || m < 1 || m > 12 || d < 1) return false;
  if (d > (DAYS_IN_MONTH[m] as number)) return false;
  if (m === 2 && d === 29) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  return true;
}

const digit = (s: string, i: number): number => {
  const c = s.charCodeAt(i) - 48;
  return c >= 0 && c <= 9 ? c : Number.NaN;
};
const two = (s: string, i: number): number => digit(s, i) * 10 + digit(s, i + 1);

/**
 * True when `s` is a valid date-time in the form nearly every sender writes
 * (YYYY-MM-DDTHH:MM:SS, up to 6 fractional digits, then Z or ±HH:MM), checked without a regex.
 * False means "not decided here", not "invalid": dateTimeProblem then runs the full check.
 */
function commonDateTimeOk(s: string): boolean {
  const n = s.length;
  if (n < 20 || n > 32) return false;
  if (s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45 || s.charCodeAt(13) !== 58 || s.charCodeAt(16) !== 58) return false;
  const t = s.charCodeAt(10);
  if (t !== 84 && t !== 116 && t !== 32) return false; // T, t or space
  const y = two(s, 0) * 100 + two(s, 2);
  const mo = two(s, 5);
  const d = two(s, 8);
  if (Number.isNaN(y) || Number.isNaN(mo) || Number.isNaN(d) || !validYmd(y, mo, d)) return false;
  // NaN (a non-digit) fails every comparison below.
  if (!(two(s, 11) <= 23 && two(s, 14) <= 59 && two(s, 17) <= 59)) return false;
  let i = 19;
  if (s.charCodeAt(i) === 46) {
    const start = ++i;
    while (i < n && digit(s, i) >= 0) i++;
    if (i === start || i - start > 6) return false;
  }
  const z = s.charCodeAt(i);
  if ((z === 90 || z === 122) && i === n - 1) return true; // Z or z
  if ((z === 43 || z === 45) && i === n - 6 && s.charCodeAt(i + 3) === 58) return two(s, i + 1) <= 15 && two(s, i + 4) <= 59;
  return false;
}

/** A description of what is wrong with a date-time string, or null. */
export function dateTimeProblem(s: string): string | null {
  return commonDateTimeOk(s) ? null : dateTimeProblemInFull(s);
}

/** dateTimeProblem without the fast path for the common form (exported for the test that compares the two). @internal */
export function dateTimeProblemInFull(s: string): string | null {
  const m = DATE_TIME.exec(s);
  if (m === null) return `${JSON.stringify(shorten(s, 60))} is not an ISO 8601 date-time (e.g. 2019-11-26T22:29:16Z)`;
  const [, y, mo, d, h, mi, sec, frac, off] = m;
  if (!validYmd(Number(y), Number(mo), Number(d))) return `${JSON.stringify(s)} is not a valid calendar date`;
  if (
    Number(h) > 24 ||
    Number(mi) > 59 ||
    Number(sec ?? 0) > 60 ||
    (Number(h) === 24 && (Number(mi) > 0 || Number(sec ?? 0) > 0 || /[1-9]/.test(frac ?? "")))
  )
    return `${JSON.stringify(s)} has an invalid time of day`;
  if (off !== undefined && off.length > 1) {
    const digits = off.slice(1).replace(":", "");
    if (Number(digits.slice(0, 2)) > 15 || Number(digits.slice(2, 4) || 0) > 59) return `${JSON.stringify(s)} has an invalid offset`;
  }
  // PostgreSQL keeps microseconds; more digits would be rounded, i.e. silently altered.
  if (frac !== undefined && frac.length - 1 > 6 && /[1-9]/.test(frac.slice(7)))
    return `${JSON.stringify(s)} has more than 6 fractional second digits; PostgreSQL stores microseconds`;
  return null;
}

export function dateProblem(s: string): string | null {
  const m = DATE.exec(s);
  if (m === null || !validYmd(Number(m[1]), Number(m[2]), Number(m[3]))) {
    return `${JSON.stringify(shorten(s, 60))} is not a date (YYYY-MM-DD)`;
  }
  return null;
}

/** A date-time with no offset is read as UTC, whatever the server's TimeZone. */
function timestampText(s: string): string {
  const last = s.charCodeAt(s.length - 1);
  if (last === 90 || last === 122) return s; // ends in Z: has its offset
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
      // eslint-disable-next-line @typescript-eslint/no-base-to-string -- unreachable after validation (a string, boolean or number)
      return typeof value === "string" ? timestampText(value) : String(value);
    case "boolean":
      // eslint-disable-next-line @typescript-eslint/no-base-to-string -- unreachable after validation (a string, boolean or number)
      return value === true ? "true" : value === false ? "false" : String(value);
    case "bigint":
      if (typeof value === "number" && Number.isSafeInteger(value)) return String(value);
      // 1E+2 or 9007199254740993.0 are integers, but not in the syntax bigint input accepts.
      if (isNumeric(value)) return (exactInteger(value) ?? numericText(value)).toString();
      // eslint-disable-next-line @typescript-eslint/no-base-to-string -- unreachable after validation (a string, boolean or number)
      return String(value);
    default:
      if (typeof value === "string") return value;
      if (isNumeric(value)) return numericText(value);
      if (typeof value === "boolean") return value ? "true" : "false";
      return jsonText(value);
  }
}

/** Normalise a decimal string so that equal numbers compare equal ("1.50" ≡ "1.5" ≡ "15e-1"). @internal exported for the tests */
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

/** Normalise a timestamp to its instant so that equal instants compare equal across offsets. @internal exported for the tests */
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
