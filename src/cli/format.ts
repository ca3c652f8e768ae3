/** Text the CLI prints: load summaries, result tables, JSON rows. */
import type { LoadResult } from "../index.js";

function formatDuration(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

const COUNTS = ["received", "inserted", "updated", "deleted", "skipped", "collapsed"] as const;

/** `x.jsonl:3 (batch 3): table customers: received 3, inserted 2, … (12 ms)` */
export function summaryLine(place: string, r: LoadResult, ms: number): string {
  return `${place}: table ${r.table}: ${COUNTS.map((k) => `${k} ${r[k]}`).join(", ")}${rejectedPart(r.rejected)} (${formatDuration(ms)})`;
}

/** ", rejected N (in seqload.rejected)" when quarantine set messages aside; nothing otherwise. */
const rejectedPart = (n: number): string => (n > 0 ? `, rejected ${n} (in seqload.rejected)` : "");

export interface Totals {
  batches: number;
  received: number;
  inserted: number;
  updated: number;
  deleted: number;
  skipped: number;
  collapsed: number;
  rejected: number;
}

export const emptyTotals = (): Totals => ({
  batches: 0,
  received: 0,
  inserted: 0,
  updated: 0,
  deleted: 0,
  skipped: 0,
  collapsed: 0,
  rejected: 0,
});

export function addToTotals(t: Totals, r: LoadResult): void {
  t.batches++;
  for (const k of COUNTS) t[k] += r[k];
  t.rejected += r.rejected;
}

export function totalsLine(t: Totals, ms: number): string {
  // A rate over a short load mostly measures start-up; show it for loads of a second or more.
  const rate = ms >= 1000 ? `, ${Math.round((t.received / ms) * 1000).toLocaleString("en-US")} messages/s` : "";
  return `loaded ${t.batches} batch${t.batches === 1 ? "" : "es"}: ${COUNTS.map((k) => `${k} ${t[k]}`).join(", ")}${rejectedPart(t.rejected)} (${formatDuration(ms)}${rate})`;
}

/** A result column: its name and whether PostgreSQL's type is numeric (right-aligned, bare in JSON). */
export interface Column {
  name: string;
  typeOid: number;
}

// pg_type OIDs.
const BOOL = 16;
const NUMERIC_OIDS = new Set([20, 21, 23, 26, 700, 701, 1700]); // int8 int2 int4 oid float4 float8 numeric
const JSON_OIDS = new Set([114, 3802]); // json jsonb
const JSON_NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;

const escapeCell = (s: string): string => s.replace(/[\n\r\t]/g, (c) => (c === "\n" ? "\\n" : c === "\r" ? "\\r" : "\\t"));

/** Rows as an aligned text table in psql's style, with a `(N rows)` footer. Values are PostgreSQL's text. */
export function formatTable(columns: Column[], rows: (string | null)[][]): string[] {
  const cells = rows.map((row) => row.map((v) => (v === null ? "" : escapeCell(v))));
  const widths = columns.map((c) => c.name.length);
  for (const row of cells) row.forEach((v, i) => (widths[i] = Math.max(widths[i] ?? 0, v.length)));
  const right = columns.map((c) => NUMERIC_OIDS.has(c.typeOid));
  const line = (values: string[], align: boolean): string =>
    ` ${values.map((v, i) => (align && right[i] ? v.padStart(widths[i] ?? 0) : v.padEnd(widths[i] ?? 0))).join(" | ")}`.trimEnd();
  const out = [
    line(
      columns.map((c) => c.name),
      false,
    ),
    `-${widths.map((w) => "-".repeat(w)).join("-+-")}-`,
  ];
  for (const row of cells) out.push(line(row, true));
  out.push(`(${rows.length} row${rows.length === 1 ? "" : "s"})`);
  return out;
}

/**
 * One row as a JSON object. Numbers keep every digit (a 19-digit bigint is written as is, as
 * PostgreSQL's to_json does), json/jsonb is embedded as is, everything else is a string.
 */
export function jsonRow(columns: Column[], row: (string | null)[]): string {
  const parts = columns.map((c, i) => {
    const v = row[i] ?? null;
    let json: string;
    if (v === null) json = "null";
    else if (c.typeOid === BOOL) json = v === "t" ? "true" : "false";
    else if (NUMERIC_OIDS.has(c.typeOid) && JSON_NUMBER.test(v)) json = v;
    // Raw line breaks in json text can only be whitespace (inside strings they are escaped).
    else if (JSON_OIDS.has(c.typeOid)) json = v.replace(/[\r\n]+/g, " ");
    else json = JSON.stringify(v);
    return `${JSON.stringify(c.name)}:${json}`;
  });
  return `{${parts.join(",")}}`;
}
