/**
 * `--tokens-file FILE`: the tokens of `seqload serve` in a file only its owner can read, so that
 * they appear in no argument list (`ps`, /proc/PID/cmdline) and can change without a restart.
 * One entry per line (`TOKEN`, `TOKEN@schema`, `sha256:HEX`, `sha256:HEX@schema`); `#` starts a
 * comment (at the start of a line or after a blank); blank lines are ignored.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { ConfigurationError } from "../errors.js";
import type { TokenEntry } from "./auth.js";

/** Permission bits for group and others; any of them set and the file is refused (like ssh, libpq). */
const SHARED_BITS = 0o077;
/** A tokens file is a list of short lines; anything this big is a wrong path, not a tokens file. */
const MAX_FILE_BYTES = 16 * 1024 * 1024;
/** File events come in bursts (an editor truncates, writes, renames): reread once they settle. */
const SETTLE_MS = 150;

export interface TokensFileRead {
  entries: TokenEntry[];
  /** SHA-256 of the file's bytes: a rereading that finds the same bytes changes nothing. */
  fingerprint: string;
}

/**
 * Read and split the tokens file. Refuses a file that group or others may read or write, with the
 * fix in the message; the mode is checked on the open descriptor, so the file checked is the file
 * read. Entries are parsed by the caller (parseTokenEntries), which names them "line N of FILE".
 */
export function readTokensFile(file: string): TokensFileRead {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : (e as Error).message;
    throw new ConfigurationError(`cannot read the tokens file ${file}: ${why}`);
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new ConfigurationError(`the tokens file ${file} is not a regular file`);
    if (process.platform !== "win32" && (stat.mode & SHARED_BITS) !== 0) {
      const mode = (stat.mode & 0o777).toString(8).padStart(4, "0");
      throw new ConfigurationError(
        `the tokens file ${file} has mode ${mode}: group or others can read or write it, and it holds secrets; ` +
          `make it private with: chmod 600 ${file}`,
      );
    }
    if (stat.size > MAX_FILE_BYTES)
      throw new ConfigurationError(`the tokens file ${file} is ${stat.size} bytes; at most ${MAX_FILE_BYTES} are read`);
    const bytes = fs.readFileSync(fd);
    const text = bytes.toString("utf8");
    const entries: TokenEntry[] = [];
    text.split(/\r?\n/).forEach((line, i) => {
      const entry = line.replace(/(^|\s)#.*$/, "").trim();
      if (entry !== "") entries.push({ text: entry, where: `line ${i + 1} of ${file}` });
    });
    return { entries, fingerprint: createHash("sha256").update(bytes).digest("hex") };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Calls `onChange` (debounced) when the tokens file may have changed: written in place, replaced
 * by a rename (how editors and `mv` write), created, or had its mode changed. The directory is
 * watched, not the file, because a rename would leave a watch on the file looking at the old
 * inode. Returns a function that stops watching; null when the platform cannot watch (SIGHUP
 * still works).
 */
export function watchTokensFile(file: string, onChange: () => void): (() => void) | null {
  const dir = path.dirname(path.resolve(file));
  const base = path.basename(file);
  let timer: NodeJS.Timeout | undefined;
  let watcher: fs.FSWatcher;
  try {
    watcher = fs.watch(dir, { persistent: false }, (_event, name) => {
      if (name !== null && name.toString() !== base) return;
      clearTimeout(timer);
      timer = setTimeout(onChange, SETTLE_MS);
    });
  } catch {
    return null;
  }
  watcher.on("error", () => {}); // e.g. the directory was removed; SIGHUP still rereads
  return () => {
    clearTimeout(timer);
    watcher.close();
  };
}
