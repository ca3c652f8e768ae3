// The adversarial corpus (test/fixtures/hostile, issue 6 item 4) through the library, on both staging
// paths: each case decodes strictly as UTF-8, parses with parseJson and loads batch by batch, and
// must end exactly as its manifest entry says — stored exactly, or a clear error with nothing
// written; never a crash, a hang, an injection or a partial write. The CLI runs the same corpus in
// hostile-cli.test.ts.
import path from "node:path";
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { BatchValidationError, type Loader } from "../src/index.js";
import { parseJson } from "../src/json.js";
import { PATHS, useDatabase } from "./helpers/context.js";
import {
  type CaseInput,
  type HostileCase,
  HOSTILE_DIR,
  caseInput,
  caseLabel,
  caseTables,
  clip,
  expectedBatches,
  expectedTables,
  loadCount,
  loadManifest,
  manifestProblems,
  tableState,
  userTables,
} from "./fixtures/hostile/corpus.js";

const manifest = loadManifest();
const ROOT = path.resolve(HOSTILE_DIR, "../../..");
/** Per case; a hang is a failure of the case, not of the whole run. */
const CASE_LIMIT_MS = 10_000;
const GENERATED_LIMIT_MS = 40_000;
/** A worker case only validates a small batch: milliseconds when all is well. */
const WORKER_LIMIT_MS = 3_000;

interface Failure {
  stage: "decode" | "parse" | "load" | "timeout";
  error: { name: string; message: string; validation: boolean };
  loaded: number;
}
type Outcome = { kind: "done"; loaded: number } | ({ kind: "failed" } & Failure);

const describeError = (e: unknown): Failure["error"] => ({
  name: e instanceof Error ? e.name : typeof e,
  message: e instanceof Error ? e.message : String(e),
  validation: e instanceof BatchValidationError,
});

function outcomeText(o: Outcome): string {
  return o.kind === "done"
    ? `loaded ${o.loaded} batch(es)`
    : `${o.stage} failed after ${o.loaded} batch(es): ${o.error.name}: ${clip(o.error.message, 600)}`;
}

/**
 * Decode, parse and load one case, as the CLI would: JSON Lines line by line, an array batch by
 * batch. `states` collects a snapshot taken right before each step that may fail, so that the
 * caller can check that the failing step wrote nothing.
 */
async function runCase(input: CaseInput, loader: Loader, snapshot: () => Promise<string>, states: string[]): Promise<Outcome> {
  let loaded = 0;
  const failed = async (stage: Failure["stage"], e: unknown): Promise<Outcome> => ({
    kind: "failed",
    stage,
    error: describeError(e),
    loaded,
  });
  let text: string;
  states.push(await snapshot());
  try {
    // A BOM is skipped (ignoreBOM: false); any invalid byte throws a TypeError.
    text = new TextDecoder("utf-8", { fatal: true }).decode(input.bytes);
  } catch (e) {
    return failed("decode", e);
  }
  const units = input.format === "jsonl" ? text.split("\n").filter((l) => l.trim() !== "") : [text];
  for (const unit of units) {
    let value: unknown;
    if (loaded > 0) states.push(await snapshot());
    try {
      value = parseJson(unit);
    } catch (e) {
      return failed("parse", e);
    }
    for (const batch of input.format === "json" && Array.isArray(value) ? value : [value]) {
      states.push(await snapshot());
      try {
        await loader.loadBatch(batch);
        loaded++;
      } catch (e) {
        return failed("load", e);
      }
    }
  }
  return { kind: "done", loaded };
}

function runInWorker(input: CaseInput, url: string, schema: string, copyThreshold: number, limitMs: number): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL("./fixtures/hostile/worker.mjs", import.meta.url), {
      workerData: { root: ROOT, bytes: new Uint8Array(input.bytes), format: input.format, url, schema, copyThreshold },
    });
    const timer = setTimeout(() => {
      void worker.terminate();
      resolve({
        kind: "failed",
        stage: "timeout",
        error: { name: "Timeout", message: `no outcome within ${limitMs} ms (terminated)`, validation: false },
        loaded: 0,
      });
    }, limitMs);
    worker.once("message", (o: Outcome) => {
      clearTimeout(timer);
      resolve(o);
      void worker.terminate();
    });
    worker.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

function withLimit(p: Promise<Outcome>, ms: number): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<Outcome>((resolve) => {
    timer = setTimeout(
      () =>
        resolve({
          kind: "failed",
          stage: "timeout",
          error: { name: "Timeout", message: `no outcome within ${ms} ms`, validation: false },
          loaded: 0,
        }),
      ms,
    );
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

const prototypeKeys = () => Object.getOwnPropertyNames(Object.prototype).sort();
const PROTOTYPE_KEYS = prototypeKeys();

describe("the hostile corpus", () => {
  it("has at least 40 cases, each with a file or a generator, an expected outcome and its own table", () => {
    expect(manifestProblems(manifest)).toEqual([]);
    expect(manifest.cases.length).toBeGreaterThanOrEqual(40);
  });
});

describe.each(PATHS)("the hostile corpus through the library ($path path)", ({ path: stagingPath, copyThreshold }) => {
  const ctx = useDatabase(`hostile_${stagingPath}`);
  const query = (text: string, params?: unknown[]) => ctx.query(text, params);
  const loaders = new Map<string, Loader>();
  const loaderFor = async (schema: string): Promise<Loader> => {
    let l = loaders.get(schema);
    if (l === undefined) {
      l = await ctx.loader({ schema, copyThreshold });
      loaders.set(schema, l);
    }
    return l;
  };
  // Slow cases run on the COPY path only.
  const cases = manifest.cases.filter((c) => !(c.onePath === true && stagingPath !== "copy"));

  /** Everything a failing step could have touched: the tables, seqload's bookkeeping, the case's own tables. */
  const snapshotFor = (c: HostileCase) => async (): Promise<string> => {
    const [migrated] = await query("select to_regclass('seqload.loads') is not null as ok");
    const book =
      migrated?.ok === true
        ? await query("select (select count(*)::int from seqload.loads) as loads, (select count(*)::int from seqload.tables) as tables")
        : [];
    const own = await Promise.all(caseTables(c).map(([s, t]) => tableState(query, s, t)));
    return JSON.stringify({ tables: await userTables(query), book, own });
  };

  for (const c of cases) {
    const limit = c.generate === undefined ? CASE_LIMIT_MS : GENERATED_LIMIT_MS;
    it(caseLabel(c), { timeout: limit + 20_000 }, async () => {
      const input = caseInput(c);
      const schema = c.schema ?? "public";
      const states: string[] = [];
      const snapshot = snapshotFor(c);
      let outcome: Outcome;
      if (c.runInWorker === true) {
        states.push(await snapshot());
        outcome = await runInWorker(input, ctx.url, schema, copyThreshold, WORKER_LIMIT_MS);
      } else {
        outcome = await withLimit(
          loaderFor(schema).then((loader) => runCase(input, loader, snapshot, states)),
          limit,
        );
      }
      const got = outcomeText(outcome);
      const timedOut = outcome.kind === "failed" && outcome.stage === "timeout";

      // Soft assertions: a case reports every way in which it misses the contract.
      expect.soft(timedOut, `${c.about}: no outcome in time (a hang): ${got}`).toBe(false);
      if (c.expect === "loaded") {
        expect.soft(outcome.kind, `${c.about}: expected every batch to load, but ${got}`).toBe("done");
      } else {
        expect.soft(outcome.kind, `${c.about}: expected ${c.expect}, but ${got}`).toBe("failed");
      }
      if (outcome.kind === "failed" && !timedOut) {
        if (c.expect === "invalid") {
          expect
            .soft(outcome.stage === "load" && outcome.error.validation, `${c.about}: expected a BatchValidationError, but ${got}`)
            .toBe(true);
        } else if (c.expect === "malformed") {
          expect
            .soft(["decode", "parse"].includes(outcome.stage), `${c.about}: expected the decode/parse step to refuse it, but ${got}`)
            .toBe(true);
          expect.soft(["SyntaxError", "TypeError", "RangeError"], `${c.about}: not a parse error: ${got}`).toContain(outcome.error.name);
          if (outcome.stage === "parse")
            expect.soft(outcome.error.message, `${c.about}: a parse error must give a position`).toMatch(/position \d+|line \d+/);
        }
        if (c.expect !== "loaded" && c.messageMatches !== undefined) {
          expect.soft(outcome.error.message, `${c.about}: the error must name the problem`).toMatch(new RegExp(c.messageMatches));
        }
        if (c.maxMessageLength !== undefined) {
          expect
            .soft(outcome.error.message.length, `${c.about}: the error message is ${outcome.error.message.length} characters long`)
            .toBeLessThanOrEqual(c.maxMessageLength);
        }
        // Whatever the failure, the failing step wrote nothing: same tables, bookkeeping and content as right before it.
        const before = states.at(-1);
        if (before !== undefined) expect.soft(await snapshot(), `${c.about}: the failing step changed the database (${got})`).toBe(before);
      }
      expect.soft(outcome.loaded, `${c.about}: batches loaded`).toBe(expectedBatches(c));
      for (const r of input.rows) {
        const rows = await query(r.sql).catch((e: unknown) => `query failed: ${e instanceof Error ? e.message : String(e)}`);
        expect.soft(rows, `${c.about}: ${clip(r.sql, 300)}`).toEqual(r.equals);
      }
      if (c.runInWorker !== true && !timedOut) {
        expect.soft(await loadCount(query, caseTables(c)), `${c.about}: load-log rows`).toBe(expectedBatches(c));
      }
      expect(prototypeKeys(), "Object.prototype was modified").toEqual(PROTOTYPE_KEYS);
      expect(({} as Record<string, unknown>).polluted, "Object.prototype was polluted").toBeUndefined();
    });
  }

  it("leaves exactly the tables of the cases that load, and no other (no truncated or stray names)", async () => {
    const got = await userTables(query);
    const want = expectedTables(cases);
    expect({ unexpected: got.filter((t) => !want.includes(t)), missing: want.filter((t) => !got.includes(t)) }).toEqual({
      unexpected: [],
      missing: [],
    });
  });
});
