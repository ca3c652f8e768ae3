/** Loading the static SQL under sql/ and migrations/, relative to the package root. */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function findPackageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "package.json")) && existsSync(join(dir, "sql"))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error("seqload: cannot find its package root (sql/ folder missing)");
    dir = parent;
  }
}

const PACKAGE_ROOT = findPackageRoot();
export const MIGRATIONS_DIR = join(PACKAGE_ROOT, "migrations");

const cache = new Map<string, string>();

/** The text of sql/<name>.sql. */
export function loadSql(name: string): string {
  let text = cache.get(name);
  if (text === undefined) {
    text = readFileSync(join(PACKAGE_ROOT, "sql", `${name}.sql`), "utf8");
    cache.set(name, text);
  }
  return text;
}
