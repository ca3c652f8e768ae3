// The adversarial corpus (test/fixtures/hostile) through `seqload singer` (issue 14): each case's
// batches become a Singer stream, run as a subprocess the way a tap pipes into a target.
//
// Mapping, batch → Singer: one SCHEMA per batch (stream = table_name, key_properties = key_names,
// schema = schema, all as they are, wrong types included); one line per message: an upsert is a
// RECORD of its data, a delete a RECORD with `_sdc_deleted_at`, an activate_version an
// ACTIVATE_VERSION, a message that is not an object the same JSON value as the line; table_version
// → each RECORD's `version`. The corpus depends on exact sequences (`_sequence` is checked, and its
// invalid sequences are cases), so every record carries its message's sequence in `_sdc_sequence`
// and the target runs with `--sequence-property _sdc_sequence`. A STATE follows every batch: each
// corpus batch is then one target batch, and a STATE is printed only once its batch committed.
// A malformed case's bytes that are no batch go to stdin as they are (one line; see itemsOf).
//
// Outcomes: the cases that load run as one process (one stream per case) and must store the rows
// the manifest gives (the same checks the library and `seqload load` runs pass). Every other case
// runs in a process of its own, between a sentinel stream's first record and STATE (before the
// case) and its second record and STATE (after it): an invalid case exits 2 naming the line of the
// first bad message (the SCHEMA of its batch when the problem is the batch's envelope), the
// batches before it stay loaded, nothing after it is loaded, and only the STATEs before it print;
// a malformed one the same, at the line of its bytes, with a position and the manifest's problem.
// The cases no Singer stream can express are listed in EXCLUDED with the reason, and counted.
import { LosslessNumber } from "lossless-json";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseJson } from "../src/json.js";
import { jsonText } from "../src/values.js";
import { type CliResult, assertBuilt, runCli } from "./fixtures/cli/run.js";
import {
  type HostileCase,
  STACK_FRAME,
  caseInput,
  caseLabel,
  caseTables,
  clip,
  expectedBatches,
  loadCount,
  loadManifest,
  queryOn,
  tableState,
} from "./fixtures/hostile/corpus.js";
import { type TestDatabase, createTestDatabase } from "./helpers/db.js";

const manifest = loadManifest();
const SEQ = "_sdc_sequence";
const CASE_LIMIT_MS = 20_000;
const GROUP_LIMIT_MS = 90_000;

const quote = (name: string): string => `"${name.replaceAll('"', '""')}"`;
const id = (c: HostileCase): string => c.file ?? `generated: ${String(c.generate)}`;

const EMPTY_REASON = "an empty (or whitespace-only) input: as a Singer stream it is valid and loads nothing";

/**
 * The cases that cannot become a Singer stream, and why. The test below checks that this list is
 * exactly the cases the converter refuses: nothing is dropped without a line here.
 */
const EXCLUDED: Record<string, string> = {
  "25-proto-top-level-field.json": "a __proto__ field of the batch envelope: a SCHEMA message has its own fields, none carries it",
  "32-messages-object.json": "`messages` is not an array: Singer has no messages list, only one line per record",
  "43-action-null.json": "a message action of null: Singer has no action field (a RECORD is an upsert, or a delete with _sdc_deleted_at)",
  "47-unknown-top-level-field.json": "an unknown batch field (key_name): a SCHEMA message has its own fields, none carries it",
  "48-empty-messages.json": "an empty `messages` list: a SCHEMA with no RECORD after it is a valid Singer stream that loads nothing",
  "83-empty-file.json": EMPTY_REASON,
  "84-whitespace-only.json": EMPTY_REASON,
};

class Unmappable extends Error {}

const BATCH_FIELDS = new Set(["table_name", "key_names", "schema", "messages", "table_version"]);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * A case's batches, parsed without losing a digit (a leading BOM is the file's, not the batch's).
 * In a malformed case, the bytes that are no batch stay bytes (a Buffer): a JSON Lines line as it
 * is; a .json or .bin file as one line, its newline bytes made spaces (JSON whitespace: every
 * committed case has them between tokens only, and a case that would turn valid fails below).
 */
function itemsOf(c: HostileCase): unknown[] {
  const input = caseInput(c);
  const parse = (bytes: Buffer, asLine: () => Buffer): unknown => {
    try {
      return parseJson(utf8.decode(bytes).replace(/^\uFEFF/, ""));
    } catch (e) {
      if (c.expect === "malformed") return asLine();
      throw new Unmappable(`not a batch: ${(e as Error).message}`);
    }
  };
  if (input.format === "jsonl") {
    const lines: Buffer[] = [];
    let from = 0;
    while (from < input.bytes.length) {
      const newline = input.bytes.indexOf(10, from);
      const at = newline === -1 ? input.bytes.length : newline;
      const line = input.bytes.subarray(from, at);
      if (line.toString("latin1").trim() !== "") lines.push(line);
      from = at + 1;
    }
    return lines.map((line) => parse(line, () => line));
  }
  if (input.bytes.toString("latin1").trim() === "") throw new Unmappable(EMPTY_REASON);
  const parsed = parse(input.bytes, () => Buffer.from(input.bytes.map((b) => (b === 10 ? 32 : b))));
  return Array.isArray(parsed) ? parsed : [parsed];
}

interface SingerCase {
  /** Singer message lines; a Buffer is a malformed case's bytes, as they are. */
  lines: (string | Buffer)[];
  /** Index (in `lines`) of the first malformed line. */
  rawAt: number | null;
  /** Index (0-based, in `lines`) of each batch's SCHEMA line and of each message's line, per batch. */
  schemaAt: number[];
  messageAt: number[][];
  /** The STATE value printed after each batch. */
  states: unknown[];
}

/** The Singer stream of one case, its lines starting at `offset` of the whole input. */
function toSinger(c: HostileCase, offset = 0): SingerCase {
  const out: SingerCase = { lines: [], rawAt: null, schemaAt: [], messageAt: [], states: [] };
  itemsOf(c).forEach((batch, b) => {
    if (Buffer.isBuffer(batch)) {
      out.rawAt ??= offset + out.lines.length;
      out.lines.push(batch);
      return;
    }
    if (!isObject(batch)) throw new Unmappable("a batch that is not an object");
    const unknown = Object.keys(batch).filter((k) => !BATCH_FIELDS.has(k));
    if (unknown.length > 0) throw new Unmappable(`batch fields Singer cannot carry: ${unknown.join(", ")}`);
    const { table_name: stream, key_names: keys, schema, messages, table_version: version } = batch;
    if (!Array.isArray(messages)) throw new Unmappable("messages is not an array");
    if (messages.length === 0) throw new Unmappable("no messages");
    out.schemaAt.push(offset + out.lines.length);
    out.lines.push(jsonText({ type: "SCHEMA", stream, schema, ...(keys === undefined ? {} : { key_properties: keys }) }));
    const at: number[] = [];
    for (const m of messages) {
      at.push(offset + out.lines.length);
      if (!isObject(m)) {
        out.lines.push(jsonText(m)); // not an object, as in the batch
        continue;
      }
      const sequence = m.sequence === undefined ? {} : { [SEQ]: m.sequence };
      const versioned = version === undefined ? {} : { version };
      if (m.action === "activate_version") {
        out.lines.push(jsonText({ type: "ACTIVATE_VERSION", stream, version }));
      } else if (m.action === "upsert" || m.action === "delete") {
        const deleted = m.action === "delete" ? { _sdc_deleted_at: "2026-01-01T00:00:00Z" } : {};
        // A record that is not an object stays as it is (its sequence has nowhere to go).
        const record = isObject(m.data) ? { ...m.data, ...deleted, ...sequence } : m.data;
        out.lines.push(jsonText({ type: "RECORD", stream, record, ...versioned }));
      } else {
        throw new Unmappable(`action ${JSON.stringify(m.action)}`);
      }
    }
    out.messageAt.push(at);
    const state = { case: id(c), batch: b };
    out.states.push(state);
    out.lines.push(jsonText({ type: "STATE", value: state }));
  });
  return out;
}

/** null when the case maps to Singer, else why not. */
function unmappable(c: HostileCase): string | null {
  try {
    toSinger(c);
    return null;
  } catch (e) {
    if (e instanceof Unmappable) return e.message;
    throw e;
  }
}

const MAPPED = manifest.cases.filter((c) => unmappable(c) === null);
/** The cases that must load, without a target schema or a 50 MB input: one process for all. */
const GROUPED = MAPPED.filter((c) => c.expect === "loaded" && c.schema === undefined && c.onePath !== true);
const SINGLE = MAPPED.filter((c) => !GROUPED.includes(c));

interface Target {
  db: TestDatabase;
  pool: pg.Pool;
  query: (text: string, params?: unknown[]) => Promise<Record<string, unknown>[]>;
}
let single: Target;
let group: Target;

async function target(prefix: string): Promise<Target> {
  const db = await createTestDatabase(prefix);
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  pool.on("error", () => {});
  const r = await runCli(["migrate", "up", "--database-url", db.url]);
  if (r.code !== 0) throw new Error(`seqload migrate up failed (exit ${String(r.code)}): ${r.stderr}`);
  return { db, pool, query: queryOn(pool) };
}

beforeAll(async () => {
  assertBuilt();
  [single, group] = await Promise.all([target("hostile_singer"), target("hostile_singer_group")]);
});

afterAll(async () => {
  for (const t of [single, group]) {
    await t?.pool.end();
    await t?.db.drop();
  }
});

/** The lines as stdin bytes, each ended by a newline. */
const stdin = (lines: (string | Buffer)[]): Buffer =>
  Buffer.concat(lines.flatMap((l) => [Buffer.isBuffer(l) ? l : Buffer.from(l, "utf8"), NEWLINE]));
const NEWLINE = Buffer.from("\n");

const singer = (t: Target, input: Buffer, c?: HostileCase, timeoutMs = CASE_LIMIT_MS): Promise<CliResult> =>
  runCli(["singer", "--sequence-property", SEQ, "--database-url", t.db.url, ...(c?.schema === undefined ? [] : ["--schema", c.schema])], {
    input,
    timeoutMs,
  });

/** STATE values printed on stdout. */
const printedStates = (stdout: string): unknown[] =>
  stdout
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as unknown);

let groupRun: Promise<CliResult> | undefined;
function groupResult(): Promise<CliResult> {
  groupRun ??= singer(group, stdin(GROUPED.flatMap((c) => toSinger(c).lines)), undefined, GROUP_LIMIT_MS);
  return groupRun;
}

async function checkRows(t: Target, c: HostileCase, soft: typeof expect.soft): Promise<void> {
  for (const check of caseInput(c).rows) {
    const rows = await t.query(check.sql).catch((e: unknown) => `query failed: ${e instanceof Error ? e.message : String(e)}`);
    soft(rows, `${c.about}: ${clip(check.sql, 300)}`).toEqual(check.equals);
  }
}

describe("the hostile corpus through seqload singer (a Singer stream on stdin)", () => {
  it("maps every case but the excluded ones, each excluded with its reason", () => {
    const excluded = manifest.cases.filter((c) => unmappable(c) !== null);
    // The explicit list is exactly the non-malformed cases the converter refuses: none dropped silently, none stale.
    expect(excluded.map(id)).toEqual(Object.keys(EXCLUDED));
    const lines = excluded.map((c) => `  - ${id(c)} (${c.expect}): ${EXCLUDED[id(c)]}`);
    console.log(
      `hostile corpus through seqload singer: ${MAPPED.length} of ${manifest.cases.length} cases run ` +
        `(${GROUPED.length} loaded in one process, ${SINGLE.length} in a process each), ${excluded.length} excluded ` +
        `(not expressible as a Singer stream):\n${lines.join("\n")}`,
    );
    expect(MAPPED.length + excluded.length).toBe(manifest.cases.length);
  });

  for (const c of GROUPED) {
    it.concurrent(`${caseLabel(c)} (grouped run)`, { timeout: GROUP_LIMIT_MS + CASE_LIMIT_MS }, async ({ expect }) => {
      const r = await groupResult();
      const shown = `exit ${String(r.code)}${r.signal === null ? "" : ` (killed with ${r.signal})`}; stderr: ${clip(r.stderr, 1500)}`;
      expect.soft(r.code, `${c.about}: the grouped run must load every case; ${shown}`).toBe(0);
      expect.soft(r.stderr, `${c.about}: a stack trace on stderr`).not.toMatch(STACK_FRAME);
      // Every STATE of the run, in input order: this case's among them.
      expect.soft(printedStates(r.stdout)).toEqual(GROUPED.flatMap((g) => toSinger(g).states));
      expect.soft(await loadCount(group.query, caseTables(c)), `${c.about}: batches loaded (load-log rows)`).toBe(expectedBatches(c));
      await checkRows(group, c, expect.soft);
    });
  }

  for (const c of SINGLE) {
    const timeout = c.onePath === true ? 60_000 : CASE_LIMIT_MS;
    it.concurrent(caseLabel(c), { timeout: timeout + CASE_LIMIT_MS * 2 }, async ({ expect }) => {
      const n = manifest.cases.indexOf(c) + 1;
      const sentinel = `hs_sentinel_${String(n).padStart(3, "0")}`;
      const sentinelSchema = { properties: { id: { type: "integer" }, v: { type: "string" } } };
      const record = (idv: number, v: string) => jsonText({ type: "RECORD", stream: sentinel, record: { id: idv, v, [SEQ]: idv } });
      const before = [
        jsonText({ type: "SCHEMA", stream: sentinel, schema: sentinelSchema, key_properties: ["id"] }),
        record(1, "before"),
        jsonText({ type: "STATE", value: { sentinel: "before" } }),
      ];
      const sc = toSinger(c, before.length);
      const after = [record(2, "after"), jsonText({ type: "STATE", value: { sentinel: "after" } })];
      const input = stdin([...before, ...sc.lines, ...after]);

      const tables = caseTables(c);
      const stateBefore = await Promise.all(tables.map(([s, t]) => tableState(single.query, s, t)));
      const r = await singer(single, input, c, timeout);
      const shown = `exit ${String(r.code)}${r.signal === null ? "" : ` (killed with ${r.signal}: no answer within ${timeout} ms)`}; stderr: ${clip(r.stderr, 1500)}`;
      const loaded = expectedBatches(c);

      expect.soft(r.signal, `${c.about}: the target hung; ${shown}`).toBeNull();
      expect.soft(r.code, `${c.about}: expected ${c.expect}; got ${shown}`).toBe(c.expect === "loaded" ? 0 : 2);
      expect.soft(r.stderr, `${c.about}: a stack trace on stderr`).not.toMatch(STACK_FRAME);
      expect.soft(r.stderr, `${c.about}: an unclassified error`).not.toMatch(/unexpected error/);
      if (c.maxMessageLength !== undefined) {
        expect.soft(r.stderr.length, `${c.about}: stderr is ${r.stderr.length} characters long`).toBeLessThanOrEqual(c.maxMessageLength);
      }
      const sentinelTable = `${quote(c.schema ?? "public")}.${quote(sentinel)}`;
      const sentinelRows = await single.query(`select id::int, v from ${sentinelTable} order by id`).catch(() => "no sentinel table");
      if (c.expect === "loaded") {
        expect.soft(printedStates(r.stdout)).toEqual([{ sentinel: "before" }, ...sc.states, { sentinel: "after" }]);
        expect.soft(sentinelRows).toEqual([
          { id: 1, v: "before" },
          { id: 2, v: "after" },
        ]);
      } else {
        // The first bad line: the malformed bytes, a message the manifest's error names, else the SCHEMA of the failing batch.
        const m = /\/messages\/(\d+)/.exec(c.messageMatches ?? "");
        const index = sc.rawAt ?? (m === null ? sc.schemaAt[loaded] : sc.messageAt[loaded]?.[Number(m[1])]);
        const line = (index ?? -1) + 1;
        expect.soft(r.stderr, `${c.about}: the error must name line ${line}; ${shown}`).toContain(`<stdin>:${line}:`);
        if (c.expect === "malformed") {
          // A position in the line (a column or a byte), and the problem the manifest names.
          expect
            .soft(r.stderr, `${c.about}: the error must give a position in line ${line}`)
            .toMatch(new RegExp(`<stdin>:${line}:\\d+|byte \\d+`));
          if (c.messageMatches !== undefined)
            expect.soft(r.stderr, `${c.about}: the error must name the problem`).toMatch(new RegExp(c.messageMatches));
        }
        // The problem the manifest names in a message's data or sequence, as the RECORD's property.
        const named = c.expect === "malformed" ? null : /\/messages\/\d+\/(?:data((?:\/[\w]+)?)|sequence)/.exec(c.messageMatches ?? "");
        if (named !== null) {
          const property = named[1] === undefined ? SEQ : named[1] === "" ? '"record"' : `/record${named[1]}`;
          expect.soft(r.stderr, `${c.about}: the error must name ${property}; ${shown}`).toContain(property);
        }
        expect.soft(r.stderr, `${c.about}: nothing from the bad line on is loaded`).toContain(`Nothing from line ${line} on was loaded`);
        expect
          .soft(printedStates(r.stdout), `${c.about}: only the STATEs before the bad line`)
          .toEqual([{ sentinel: "before" }, ...sc.states.slice(0, loaded)]);
        expect.soft(sentinelRows, `${c.about}: the record after the bad line must not load`).toEqual([{ id: 1, v: "before" }]);
        if (loaded === 0) {
          const stateAfter = await Promise.all(tables.map(([s, t]) => tableState(single.query, s, t)));
          expect.soft(stateAfter, `${c.about}: the refused input changed its table`).toEqual(stateBefore);
        }
      }
      expect.soft(await loadCount(single.query, tables), `${c.about}: batches loaded (load-log rows)`).toBe(loaded);
      await checkRows(single, c, expect.soft);
    });
  }
});

// lossless-json's numbers must survive the round trip through jsonText (the corpus's exact numerics).
it("writes the corpus's exact numbers back digit for digit", () => {
  expect(jsonText({ a: new LosslessNumber("1.10"), b: 12345678901234567890n, s: "\ud800" })).toBe(
    '{"a":1.10,"b":12345678901234567890,"s":"\\ud800"}',
  );
});
