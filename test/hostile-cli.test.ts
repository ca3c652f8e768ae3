// The adversarial corpus (test/fixtures/hostile, issue 6 item 4) through the CLI, run the way a user
// runs it: `seqload load FILE... --database-url URL [--schema NAME]` as a subprocess. Each case must
// exit 0 (loaded, rows as given) or 2 (invalid or malformed input: the message names the file, the
// batch or the position, and the problem; nothing from the bad batch is written), never hang and
// never print a stack trace. The library runs the same corpus in hostile.test.ts.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, it } from "vitest";
import { type CliResult, assertBuilt, runCli } from "./fixtures/cli/run.js";
import {
  type HostileCase,
  HOSTILE_DIR,
  STACK_FRAME,
  caseInput,
  caseLabel,
  caseTables,
  clip,
  expectedBatches,
  expectedTables,
  loadCount,
  loadManifest,
  queryOn,
  tableState,
  userTables,
} from "./fixtures/hostile/corpus.js";
import { type TestDatabase, createTestDatabase } from "./helpers/db.js";

const manifest = loadManifest();
const CASE_LIMIT_MS = 15_000;
const GENERATED_LIMIT_MS = 45_000;
/** Cases whose failure mode is a hang (runInWorker) are small: waiting them out takes less. */
const HANG_LIMIT_MS = 6_000;
/** A position in an input: file:line:column, "line L, column C" or one byte offset (not a range of bytes). */
const POSITION = /:\d+:\d+|\bline \d+,? col(?:umn)? \d+|\bbyte (?:offset )?\d+\b/;

interface Target {
  db: TestDatabase;
  pool: pg.Pool;
  query: (text: string, params?: unknown[]) => Promise<Record<string, unknown>[]>;
}
let main: Target;
/** The database of the grouped run (see groupedResults). */
let group: Target;
let tmp: string;

async function target(prefix: string): Promise<Target> {
  const db = await createTestDatabase(prefix);
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  pool.on("error", () => {});
  // Migrate once up front: the cases run several CLI processes at a time.
  const r = await runCli(["migrate", "up", "--database-url", db.url]);
  if (r.code !== 0) throw new Error(`seqload migrate up failed (exit ${String(r.code)}): ${r.stderr}`);
  return { db, pool, query: queryOn(pool) };
}

beforeAll(async () => {
  assertBuilt();
  [main, group] = await Promise.all([target("hostile_cli"), target("hostile_cli_group")]);
  tmp = await mkdtemp(path.join(os.tmpdir(), "seqload-hostile-"));
});

afterAll(async () => {
  for (const t of [main, group]) {
    await t?.pool.end();
    await t?.db.drop();
  }
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

const fileOf = (c: HostileCase) => path.join(HOSTILE_DIR, c.file ?? "");

/**
 * Node's start-up is most of a CLI run, so the committed cases that must load run as one
 * `seqload load F1 F2 … FN` on a database of their own. The CLI stops at the first file that fails:
 * that file gets the run's exit code and stderr as its own result (nothing before it failed), and
 * the files after it run again in the next call. A case with no result here (the run hung, or the
 * failing file could not be told) runs on its own.
 */
const GROUPED = manifest.cases.filter(
  (c) => c.expect === "loaded" && c.file !== undefined && c.schema === undefined && c.runInWorker !== true,
);
let grouped: Promise<Map<HostileCase, CliResult>> | undefined;
function groupedResults(): Promise<Map<HostileCase, CliResult>> {
  grouped ??= (async () => {
    const results = new Map<HostileCase, CliResult>();
    let rest = GROUPED;
    while (rest.length > 0) {
      const r = await runCli(["load", ...rest.map(fileOf), "--database-url", group.db.url], { timeoutMs: CASE_LIMIT_MS * 2 });
      if (r.signal !== null) break;
      if (r.code === 0) {
        for (const c of rest) results.set(c, r);
        break;
      }
      const firstLine = r.stderr.split("\n")[0] ?? "";
      const failed = rest.findIndex((c) => firstLine.includes(`${fileOf(c)}:`));
      if (failed < 0) break;
      for (const c of rest.slice(0, failed)) results.set(c, { ...r, code: 0, stderr: "" });
      results.set(rest[failed] as HostileCase, r);
      rest = rest.slice(failed + 1);
    }
    return results;
  })();
  return grouped;
}
/** Where each case ran, for the final check of the tables left behind. */
const ranOn = new Map<HostileCase, Target>();

describe("the hostile corpus through the CLI (seqload load FILE)", () => {
  for (const c of manifest.cases) {
    const limit = c.runInWorker === true ? HANG_LIMIT_MS : c.generate === undefined ? CASE_LIMIT_MS : GENERATED_LIMIT_MS;
    // Every case has its own tables, so cases run several at a time.
    it.concurrent(caseLabel(c), { timeout: limit + CASE_LIMIT_MS * 4 }, async ({ expect }) => {
      const input = caseInput(c);
      const file = c.file !== undefined ? fileOf(c) : path.join(tmp, input.name);
      if (c.file === undefined) await writeFile(file, input.bytes);
      const tables = caseTables(c);

      let t = main;
      let stateBefore: (string | null)[] = tables.map(() => null);
      let loadsBefore = 0;
      let r = GROUPED.includes(c) ? (await groupedResults()).get(c) : undefined;
      if (r !== undefined) {
        t = group; // a fresh database: the case's tables did not exist before the run
      } else {
        stateBefore = await Promise.all(tables.map(([s, n]) => tableState(t.query, s, n)));
        loadsBefore = await loadCount(t.query, tables);
        r = await runCli(["load", file, "--database-url", t.db.url, ...(c.schema === undefined ? [] : ["--schema", c.schema])], {
          timeoutMs: limit,
        });
      }
      ranOn.set(c, t);
      const shown = `exit ${String(r.code)}${r.signal === null ? "" : ` (killed with ${r.signal}: no answer within ${limit} ms)`}; stderr: ${clip(r.stderr, 1500)}`;

      // Soft assertions: a case reports every way in which it misses the contract.
      expect.soft(r.signal, `${c.about}: the CLI hung; ${shown}`).toBeNull();
      expect
        .soft(r.code, `${c.about}: expected ${c.expect} (exit ${c.expect === "loaded" ? 0 : 2}); got ${shown}`)
        .toBe(c.expect === "loaded" ? 0 : 2);
      expect.soft(r.stderr, `${c.about}: a stack trace on stderr`).not.toMatch(STACK_FRAME);
      expect.soft(r.stderr, `${c.about}: an unclassified error`).not.toMatch(/unexpected error/);
      if (c.expect !== "loaded" && r.signal === null) {
        // The file's own name is left out of the matching ("nested-100000-levels.json" would match /nest/).
        const message = r.stderr.replaceAll(file, "<file>");
        expect.soft(r.stderr, `${c.about}: the message must name the file`).toContain(path.basename(file));
        if (c.expect === "invalid") expect.soft(message, `${c.about}: the message must name the batch`).toMatch(/batch \d+/);
        else expect.soft(message, `${c.about}: the message must give a position (line:column or byte offset)`).toMatch(POSITION);
        if (c.messageMatches !== undefined)
          expect.soft(message, `${c.about}: the message must name the problem`).toMatch(new RegExp(c.messageMatches));
        if (c.cliMatches !== undefined) expect.soft(message, c.about).toMatch(new RegExp(c.cliMatches));
        if (c.maxMessageLength !== undefined) {
          expect.soft(r.stderr.length, `${c.about}: stderr is ${r.stderr.length} characters long`).toBeLessThanOrEqual(c.maxMessageLength);
        }
      }
      if (r.code !== 0 && expectedBatches(c) === 0) {
        const stateAfter = await Promise.all(tables.map(([s, n]) => tableState(t.query, s, n)));
        expect.soft(stateAfter, `${c.about}: the refused input changed its table (${shown})`).toEqual(stateBefore);
      }
      expect.soft((await loadCount(t.query, tables)) - loadsBefore, `${c.about}: batches loaded (load-log rows)`).toBe(expectedBatches(c));
      for (const check of input.rows) {
        const rows = await t.query(check.sql).catch((e: unknown) => `query failed: ${e instanceof Error ? e.message : String(e)}`);
        expect.soft(rows, `${c.about}: ${clip(check.sql, 300)}`).toEqual(check.equals);
      }
    });
  }

  it("leaves exactly the tables of the cases that load, and no other (no truncated or stray names)", async ({ expect }) => {
    for (const t of [main, group]) {
      const got = await userTables(t.query);
      const want = expectedTables(manifest.cases.filter((c) => ranOn.get(c) === t));
      expect
        .soft({ unexpected: got.filter((n) => !want.includes(n)), missing: want.filter((n) => !got.includes(n)) }, t.db.name)
        .toEqual({ unexpected: [], missing: [] });
    }
  });
});
