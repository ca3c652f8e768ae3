/**
 * The one place where identifiers are checked and quoted. `table` is a raw name, `quotedTable` the
 * quoted form. PostgreSQL silently truncates identifiers longer than 63 bytes, so two long names
 * could land on the same object: seqload refuses them instead (see README "Identifiers").
 */

import { shorten } from "./text.js";

const MAX_IDENTIFIER_BYTES = 63;

/** PostgreSQL's own hidden columns on every table; a column cannot take these names. */
export const POSTGRES_SYSTEM_COLUMNS = ["tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"] as const;

/** A name as shown in messages: quoted, and cut short if huge. */
export function showName(name: string): string {
  return JSON.stringify(shorten(name, 80));
}

/** Returns a problem description, or null when `name` can be used as an identifier as is. */
export function identifierProblem(name: unknown, what: string): string | null {
  if (typeof name !== "string") return `${what} must be a string`;
  if (name.length === 0) return `${what} must not be empty`;
  if (name.includes("\0")) return `${what} ${showName(name)} contains a NUL character, which PostgreSQL cannot store`;
  if (!name.isWellFormed()) return `${what} ${showName(name)} is not well-formed Unicode (lone surrogate)`;
  const bytes = Buffer.byteLength(name, "utf8");
  if (bytes > MAX_IDENTIFIER_BYTES) {
    return `${what} ${showName(name)} is ${bytes} bytes long; PostgreSQL identifiers hold at most ${MAX_IDENTIFIER_BYTES} bytes and longer ones are silently truncated (two names could collide), so seqload refuses it`;
  }
  return null;
}

/** Quote an identifier that has passed `identifierProblem`. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** `"schema"."table"` */
export function quoteQualified(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}
