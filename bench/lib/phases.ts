/**
 * Where the time goes: `node dist/bench/lib/phases.js [--rows N] [--repeat R] [--only js,a,stage,b,c,d,opt,strm,e]`.
 * Not part of `npm run bench`: an experiment harness for the data path. It times
 *   - the JS phases of loadBatch on its own (validation, collapse + encoding, COPY-text encoding),
 *     through seqload's internal modules, loaded at run time so this file never breaks the build;
 *   - the SQL phases by hand, on the same data: COPY into a new table (text/binary, FREEZE),
 *     COPY into the stage table (TEMP with default or larger temp_buffers, UNLOGGED, binary), and
 *     the apply statement with and without ORDER BY, RETURNING, NOT EXISTS pre-filter, work_mem;
 *   - opt: an optimistic COPY straight into a table holding other keys (under a savepoint) against
 *     the staged path, and what a wrong guess costs (23505 near the end, rollback, staged path);
 *   - strm: validating the whole batch and then COPYing it to the stage, against a COPY to the
 *     stage fed by a generator that validates each slice as it is sent (validation overlaps COPY);
 *   - for small batches, the statement alone with synchronous_commit on and off.
 * The apply statement is written out here in the shape src/apply.ts generates (CASE per column for
 * tombstones, ORDER BY key, RETURNING counted in a CTE); every variant runs in a transaction that
 * is rolled back, then the target is vacuumed and a checkpoint taken before the next one. Each
 * figure is the best of R runs (other load on the machine only adds time) with the CPU seconds of
 * Node and of PostgreSQL (cpu.ts), which a busy machine distorts much less than wall time.
 */
import { performance } from "node:perf_hooks";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { binaryChunks } from "./binary.js";
import { copyChunks, copyLine } from "./copy.js";
import { type BenchMessage, benchSchema, dataSet, permutation, streamMessages } from "./data.js";
import { type ServerCpu, clientCpu, serverCpuMeter } from "./cpu.js";
import { createTableSql, dropSchema, provideDatabase, qualified, resetSchema, serverFacts } from "./db.js";

interface Row {
  phase: string;
  variant: string;
  seconds: number;
  rowsPerSec: number;
  nodeCpuS: number;
  pgCpuS: number | null;
  detail?: string;
}

const rows: Row[] = [];
const fmt = (n: number): string => Math.round(n).toLocaleString("en-US");
const log = (s: string): void => {
  process.stderr.write(`${s}\n`);
};

interface Cost<T> {
  s: number;
  v: T;
  nodeCpuS: number;
  pgCpuS: number | null;
}

let meter: ServerCpu | null = null;

async function time<T>(fn: () => Promise<T> | T): Promise<Cost<T>> {
  const pg0 = meter === null ? null : await meter();
  const cpu0 = clientCpu();
  const t0 = performance.now();
  const v = await fn();
  const s = (performance.now() - t0) / 1000;
  const nodeCpuS = clientCpu() - cpu0;
  const pgCpuS = meter === null || pg0 === null ? null : (await meter()) - pg0;
  return { s, v, nodeCpuS, pgCpuS };
}

/** Run `fn` `repeat` times (after `before` each time) and keep the fastest: other load on the machine only ever adds time. */
async function best<T>(repeat: number, before: () => Promise<void>, fn: () => Promise<Cost<T>>): Promise<{ best: Cost<T>; all: number[] }> {
  let bestCost: Cost<T> | null = null;
  const all: number[] = [];
  for (let i = 0; i < repeat; i++) {
    await before();
    const c = await fn();
    all.push(c.s);
    if (bestCost === null || c.s < bestCost.s) bestCost = c;
  }
  return { best: bestCost as Cost<T>, all };
}

function note(phase: string, variant: string, c: Cost<unknown>, n: number, detail?: string, all?: number[]): void {
  const extra = [all !== undefined && all.length > 1 ? `runs ${all.map((x) => x.toFixed(2)).join("/")} s` : "", detail ?? ""]
    .filter((x) => x !== "")
    .join("; ");
  const r: Row = {
    phase,
    variant,
    seconds: Math.round(c.s * 1000) / 1000,
    rowsPerSec: Math.round(n / c.s),
    nodeCpuS: Math.round(c.nodeCpuS * 100) / 100,
    pgCpuS: c.pgCpuS === null ? null : Math.round(c.pgCpuS * 100) / 100,
    ...(extra === "" ? {} : { detail: extra }),
  };
  rows.push(r);
  const cpu = `node ${r.nodeCpuS.toFixed(2).padStart(5)} pg ${r.pgCpuS === null ? "  n/a" : r.pgCpuS.toFixed(2).padStart(5)}`;
  log(
    `  ${phase.padEnd(5)} ${variant.padEnd(64)} ${c.s.toFixed(2).padStart(6)} s ${fmt(r.rowsPerSec).padStart(10)} rows/s  cpu s: ${cpu}${extra ? `  (${extra})` : ""}`,
  );
}

async function walBytes(pool: pg.Pool): Promise<bigint> {
  const r = await pool.query<{ lsn: string }>("SELECT pg_current_wal_insert_lsn()::text AS lsn");
  const [hi, lo] = (r.rows[0]?.lsn ?? "0/0").split("/");
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

const STAGE_COLUMNS = "c0, c1, c2, c3, c4, c5, _sequence, _delete";
const TABLE_COLUMNS = `"id", "name", "qty", "price", "active", "updated_at", "_sequence"`;
const STAGE_DDL = "c0 bigint, c1 text, c2 bigint, c3 numeric, c4 boolean, c5 timestamp with time zone, _sequence bigint, _delete boolean";

async function copy(client: pg.ClientBase, sql: string, chunks: Iterable<string | Buffer>): Promise<void> {
  await pipeline(Readable.from(chunks), client.query(copyFrom(sql)));
}

/** Stage text lines: the 7 columns plus the delete flag. */
function stageText(messages: readonly BenchMessage[]): string[] {
  const out: string[] = [];
  let chunk = "";
  let n = 0;
  for (const m of messages) {
    chunk += `${copyLine(m).slice(0, -1)}\tf\n`;
    if (++n === 2000) {
      out.push(chunk);
      chunk = "";
      n = 0;
    }
  }
  if (chunk !== "") out.push(chunk);
  return out;
}

interface ApplyShape {
  order: boolean;
  returning: boolean;
  notExists: boolean;
}

function applySql(table: string, shape: ApplyShape): string {
  const target = qualified(table);
  const cols = ["name", "qty", "price", "active", "updated_at"];
  const sets = cols.map((c) => `"${c}" = CASE WHEN excluded."_deleted_at" IS NULL THEN excluded."${c}" ELSE t."${c}" END`);
  sets.push(`"_sequence" = excluded."_sequence"`, `"_loaded_at" = excluded."_loaded_at"`, `"_deleted_at" = excluded."_deleted_at"`);
  const where = shape.notExists ? `WHERE NOT EXISTS (SELECT 1 FROM ${target} x WHERE x."id" = s.c0 AND x."_sequence" >= s._sequence)` : "";
  const insert = `INSERT INTO ${target} AS t ("id", "name", "qty", "price", "active", "updated_at", "_sequence", "_deleted_at")
  SELECT s.c0, s.c1, s.c2, s.c3, s.c4, s.c5, s._sequence, CASE WHEN s._delete THEN now() END
  FROM pg_temp.seqload_stage AS s
  ${where}
  ${shape.order ? "ORDER BY s.c0" : ""}
  ON CONFLICT ("id") DO UPDATE SET ${sets.join(", ")}
  WHERE excluded."_sequence" > t."_sequence"`;
  if (!shape.returning) return insert;
  return `WITH w AS (${insert}
  RETURNING t.xmax = 0 AS ins, t."_deleted_at" IS NOT NULL AS del)
SELECT count(*) FILTER (WHERE ins AND NOT del)::int AS inserted, count(*) FILTER (WHERE NOT ins AND NOT del)::int AS updated FROM w`;
}

async function connect(url: string, init: string[] = []): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  for (const s of init) await c.query(s);
  return c;
}

async function settle(pool: pg.Pool, tables: string[]): Promise<void> {
  for (const t of tables) await pool.query(`VACUUM (ANALYZE) ${qualified(t)}`);
  await pool.query("CHECKPOINT").catch(() => {});
}

async function freshTable(pool: pg.Pool, table: string, prefill: readonly string[] | null): Promise<void> {
  await pool.query(`DROP TABLE IF EXISTS ${qualified(table)}`);
  await pool.query(createTableSql(table));
  if (prefill !== null) {
    const c = await pool.connect();
    try {
      await copy(c, `COPY ${qualified(table)} (${TABLE_COLUMNS}) FROM STDIN`, prefill);
    } finally {
      c.release();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// JS phases through seqload's own modules (loaded at run time; skipped if their shape changed)

type Fn = (...args: unknown[]) => unknown;
async function internal(file: string, name: string): Promise<Fn | null> {
  try {
    const mod: unknown = await import(new URL(`../../src/${file}`, import.meta.url).href);
    const f = (mod as Record<string, unknown>)[name];
    return typeof f === "function" ? (f as Fn) : null;
  } catch {
    return null;
  }
}

async function jsPhases(n: number, base: BenchMessage[]): Promise<void> {
  log(`JS phases, ${fmt(n)} messages (no database)`);
  const text = await time(() => {
    let bytes = 0;
    for (const c of copyChunks(base)) bytes += c.length;
    return bytes;
  });
  note("js", "hand-written COPY text encoder (7 columns)", text, n, `${fmt(text.v)} chars`);
  const bin = await time(() => {
    let bytes = 0;
    for (const c of binaryChunks(base, false)) bytes += c.length;
    return bytes;
  });
  note("js", "hand-written COPY binary encoder (7 columns)", bin, n, `${fmt(bin.v)} bytes`);
  const sortNum = await time(() => [...base].sort((x, y) => x.data.id - y.data.id).length);
  note("js", "sort the messages by a bigint key (numeric compare)", sortNum, n);
  const keyed = base.map((m) => ({ key: String(m.data.id), m }));
  const sortText = await time(() => keyed.sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0)).length);
  note("js", "sort the messages by key text (code-unit compare)", sortText, n);

  const checkBatch = await internal("validate.js", "checkBatch");
  const collapseBatch = await internal("collapse.js", "collapseBatch");
  const copyRows = await internal("stage.js", "copyRows");
  if (checkBatch === null || collapseBatch === null || copyRows === null) {
    log("  (seqload internals checkBatch/collapseBatch/copyRows not found: skipped)");
    return;
  }
  const batch = { table_name: "phases", key_names: ["id"], schema: benchSchema(), messages: base };
  const v = await time(() => checkBatch(batch));
  note("js", "seqload checkBatch (validation, Ajv per message)", v, n);
  const validated = v.v as { columns: Map<string, string> };
  const c = await time(() => collapseBatch(validated, new Map(validated.columns)));
  note("js", "seqload collapseBatch (O(n) collapse on the keys)", c, n);
  const collapsed = c.v as { columns: string[] };
  // A client whose COPY goes nowhere: times seqload's own row encoder (copyChunks in stage.ts).
  const sink = { query: () => new Writable({ write: (_c: unknown, _e: unknown, cb: () => void) => cb() }) };
  const e = await time(() => copyRows(sink, "x", collapsed.columns, collapsed, "flag", null));
  note("js", "seqload stage encoding (copyRows into a null sink)", e, n);
}

// ---------------------------------------------------------------------------------------------

async function newTablePhases(pool: pg.Pool, url: string, n: number, base: BenchMessage[], repeat: number): Promise<void> {
  log(`(a) COPY into a new keyed table, ${fmt(n)} rows, pre-encoded (best of ${repeat})`);
  const sortedBase = [...base].sort((x, y) => x.data.id - y.data.id);
  const text = [...copyChunks(base)];
  const bin = [...binaryChunks(base, false)];
  const sortedText = [...copyChunks(sortedBase)];
  const sortedBin = [...binaryChunks(sortedBase, false)];
  const stage = stageText(base);
  const target = qualified("pa");
  const copyTo = (opt: string, chunks: Iterable<string | Buffer>) => async (c: pg.Client) =>
    copy(c, `COPY ${target} (${TABLE_COLUMNS}) FROM STDIN ${opt}`, chunks);
  const variants: [string, (c: pg.Client) => Promise<void>][] = [
    ["text, shuffled keys (the bench's reference)", copyTo("", text)],
    ["text, keys in order", copyTo("", sortedText)],
    ["binary, shuffled keys", copyTo("(FORMAT binary)", bin)],
    ["binary, keys in order", copyTo("(FORMAT binary)", sortedBin)],
    [
      "text into a TEMP stage, then INSERT … SELECT … ORDER BY key (no ON CONFLICT)",
      async (c) => {
        await c.query("BEGIN");
        await c.query(`CREATE TEMP TABLE seqload_stage (${STAGE_DDL}) ON COMMIT DROP`);
        await copy(c, `COPY pg_temp.seqload_stage (${STAGE_COLUMNS}) FROM STDIN`, stage);
        await c.query("SET LOCAL work_mem = '256MB'");
        await c.query(
          `INSERT INTO ${target} (${TABLE_COLUMNS}) SELECT c0, c1, c2, c3, c4, c5, _sequence FROM pg_temp.seqload_stage ORDER BY c0`,
        );
        await c.query("COMMIT");
      },
    ],
  ];
  for (const [name, run] of variants) {
    const wal0 = await walBytes(pool);
    const r = await best(
      repeat,
      async () => {
        await freshTable(pool, "pa", null);
        await settle(pool, []);
      },
      async () => {
        const c = await connect(url);
        const t = await time(() => run(c));
        await c.end();
        return t;
      },
    );
    note("a", name, r.best, n, `WAL ${fmt(Number((await walBytes(pool)) - wal0) / repeat / 1048576)} MB`, r.all);
  }
  // keyAfter: create the table without its primary key and add it after the COPY (seqload's
  // new-table path): one sort builds the index instead of a million random index inserts.
  for (const [name, opt, chunks, keyAfter] of [
    ["text, shuffled, CREATE + COPY in one transaction", "", text, false],
    ["text, shuffled, CREATE + COPY (FREEZE) in one transaction", "(FREEZE)", text, false],
    ["text, keys in order, CREATE + COPY (FREEZE) in one transaction", "(FREEZE)", sortedText, false],
    ["binary, keys in order, CREATE + COPY (FREEZE) in one transaction", "(FORMAT binary, FREEZE)", sortedBin, false],
    ["text, shuffled, CREATE without key + COPY + ADD PRIMARY KEY in one transaction (seqload's new-table path)", "", text, true],
    ["text, keys in order, CREATE without key + COPY (FREEZE) + ADD PRIMARY KEY in one transaction", "(FREEZE)", sortedText, true],
  ] as const) {
    const r = await best(
      repeat,
      async () => {
        await pool.query(`DROP TABLE IF EXISTS ${target}`);
        await settle(pool, []);
      },
      async () => {
        const c = await connect(url);
        const t = await time(async () => {
          await c.query("BEGIN");
          await c.query(keyAfter ? createTableSql("pa").replace(/,\s*PRIMARY KEY \("id"\)/, "") : createTableSql("pa"));
          await copy(c, `COPY ${target} (${TABLE_COLUMNS}) FROM STDIN ${opt}`, chunks);
          if (keyAfter) {
            await c.query("SET LOCAL maintenance_work_mem = '256MB'");
            await c.query(`ALTER TABLE ${target} ADD PRIMARY KEY ("id")`);
          }
          await c.query("COMMIT");
        });
        await c.end();
        return t;
      },
    );
    note("a", name, r.best, n, undefined, r.all);
  }
  await pool.query(`DROP TABLE IF EXISTS ${target}`);
}

async function stagePhases(pool: pg.Pool, url: string, n: number, base: BenchMessage[], repeat: number): Promise<void> {
  log(`stage: COPY ${fmt(n)} rows into the stage table (pre-encoded), then ROLLBACK (best of ${repeat})`);
  const text = stageText(base);
  const bin = [...binaryChunks(base, true)];
  const variants: [string, string[], string, string, Iterable<string | Buffer>][] = [
    ["TEMP ON COMMIT DROP, text, temp_buffers default (seqload today)", [], "TEMP", "", text],
    ["TEMP ON COMMIT DROP, text, temp_buffers = 256MB", ["SET temp_buffers = '256MB'"], "TEMP", "", text],
    ["UNLOGGED, text", [], "UNLOGGED", "", text],
    ["TEMP ON COMMIT DROP, binary, temp_buffers default", [], "TEMP", "(FORMAT binary)", bin],
    ["TEMP ON COMMIT DROP, binary, temp_buffers = 256MB", ["SET temp_buffers = '256MB'"], "TEMP", "(FORMAT binary)", bin],
  ];
  for (const [name, init, kind, opt, chunks] of variants) {
    const r = await best(
      repeat,
      () => settle(pool, []),
      async () => {
        const c = await connect(url, init);
        const stage = kind === "TEMP" ? "pg_temp.seqload_stage" : qualified("seqload_stage_unlogged");
        const t = await time(async () => {
          await c.query("BEGIN");
          await c.query(
            kind === "TEMP"
              ? `CREATE TEMP TABLE seqload_stage (${STAGE_DDL}) ON COMMIT DROP`
              : `CREATE UNLOGGED TABLE ${stage} (${STAGE_DDL})`,
          );
          await copy(c, `COPY ${stage} (${STAGE_COLUMNS}) FROM STDIN ${opt}`, chunks);
        });
        await c.query("ROLLBACK");
        await c.end();
        return t;
      },
    );
    note("stage", name, r.best, n, undefined, r.all);
  }
}

interface ApplyVariant {
  name: string;
  /** Statements after the stage COPY, run in order in the same transaction; the last one is timed with the others. */
  sql: string[];
  session?: string[];
}

async function applyPhases(
  pool: pg.Pool,
  url: string,
  id: "b" | "c" | "d",
  n: number,
  load: BenchMessage[],
  prefill: string[],
  repeat: number,
): Promise<void> {
  const title = { b: "new keys into a table holding as many other keys", c: "updates with higher sequences", d: "stale replays" }[id];
  log(`(${id}) ${title}: stage (TEMP, text) then apply, ${fmt(n)} rows; each variant rolled back, target vacuumed; best of ${repeat}`);
  const text = stageText(load);
  const table = `p${id}`;
  const target = qualified(table);
  await freshTable(pool, table, prefill);
  const cur: ApplyShape = { order: true, returning: true, notExists: false };
  const wm = "SET LOCAL work_mem = '256MB'";
  const updateFirst = `UPDATE ${target} AS t SET "name" = s.c1, "qty" = s.c2, "price" = s.c3, "active" = s.c4, "updated_at" = s.c5, "_sequence" = s._sequence, "_loaded_at" = now(), "_deleted_at" = NULL
  FROM pg_temp.seqload_stage AS s WHERE t."id" = s.c0 AND s._sequence > t."_sequence"`;
  const variants: ApplyVariant[] = [
    { name: "seqload today: ORDER BY key, RETURNING counted in a CTE", sql: [applySql(table, cur)] },
    { name: "+ work_mem 256MB (in-memory sort)", sql: [wm, applySql(table, cur)] },
    { name: "no ORDER BY", sql: [applySql(table, { ...cur, order: false })] },
    { name: "no RETURNING (counts from the command tag)", sql: [applySql(table, { ...cur, returning: false })] },
    { name: "NOT EXISTS pre-filter of stale rows", sql: [applySql(table, { ...cur, notExists: true })] },
    { name: "NOT EXISTS + work_mem 256MB", sql: [wm, applySql(table, { ...cur, notExists: true })] },
    {
      name: "UPDATE … FROM stage, then INSERT … ON CONFLICT for the rest (+ work_mem)",
      sql: [wm, updateFirst, applySql(table, { ...cur, notExists: true })],
    },
  ];
  for (const v of variants) {
    let stageSeconds = 0;
    let wal = 0n;
    let result = "";
    const r = await best(
      repeat,
      () => settle(pool, [table]),
      async () => {
        const c = await connect(url, v.session ?? []);
        await c.query("BEGIN");
        const st = await time(async () => {
          await c.query(`CREATE TEMP TABLE seqload_stage (${STAGE_DDL}) ON COMMIT DROP`);
          await copy(c, `COPY pg_temp.seqload_stage (${STAGE_COLUMNS}) FROM STDIN`, text);
        });
        stageSeconds = st.s;
        const w0 = await walBytes(pool);
        const a = await time(async () => {
          const results: pg.QueryResult[] = [];
          for (const q of v.sql)
            if (!q.startsWith("SET")) results.push(await c.query(q));
            else await c.query(q);
          return results;
        });
        wal = (await walBytes(pool)) - w0;
        result = a.v
          .map((res) => {
            const row = res.rows[0] as { inserted?: number; updated?: number } | undefined;
            return row?.inserted !== undefined
              ? `inserted ${fmt(row.inserted)}, updated ${fmt(row.updated ?? 0)}`
              : `${res.command} ${fmt(res.rowCount ?? 0)}`;
          })
          .join(", then ");
        await c.query("ROLLBACK");
        await c.end();
        return a;
      },
    );
    note(id, v.name, r.best, n, `stage COPY ${stageSeconds.toFixed(2)} s; WAL ${fmt(Number(wal) / 1048576)} MB; ${result}`, r.all);
  }
  // Where the apply's time goes inside PostgreSQL: the plan's own timings.
  await settle(pool, [table]);
  const c = await connect(url);
  await c.query("BEGIN");
  await c.query(`CREATE TEMP TABLE seqload_stage (${STAGE_DDL}) ON COMMIT DROP`);
  await copy(c, `COPY pg_temp.seqload_stage (${STAGE_COLUMNS}) FROM STDIN`, text);
  const plan = await c.query<{ "QUERY PLAN": string }>(`EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT TEXT) ${applySql(table, cur)}`);
  await c.query("ROLLBACK");
  await c.end();
  log(plan.rows.map((r) => `      ${r["QUERY PLAN"]}`).join("\n"));
  if (id === "b") {
    // No key of this batch exists, so plain COPY into the existing table is possible: a lower bound.
    const chunks = [...copyChunks(load)];
    const sortedChunks = [...copyChunks([...load].sort((x, y) => x.data.id - y.data.id))];
    for (const [name, cs] of [
      ["raw COPY straight into the existing table, shuffled keys", chunks],
      ["raw COPY straight into the existing table, keys in order", sortedChunks],
    ] as const) {
      const r = await best(
        repeat,
        async () => {
          await freshTable(pool, table, prefill);
          await settle(pool, [table]);
        },
        async () => {
          const c2 = await connect(url);
          const t = await time(() => copy(c2, `COPY ${target} (${TABLE_COLUMNS}) FROM STDIN`, cs));
          await c2.end();
          return t;
        },
      );
      note(id, name, r.best, n, undefined, r.all);
    }
  }
  await pool.query(`DROP TABLE ${target}`);
}

// ---------------------------------------------------------------------------------------------
// Issue 15 item 4: two ideas for large batches, through seqload's own validation and COPY encoder

/** The JS steps a large batch goes through before its rows reach PostgreSQL (null if their shape changed). */
interface DataPath {
  checkBatch: Fn;
  collapseBatch: Fn;
  copyRows: Fn;
}

async function dataPath(): Promise<DataPath | null> {
  const checkBatch = await internal("validate.js", "checkBatch");
  const collapseBatch = await internal("collapse.js", "collapseBatch");
  const copyRows = await internal("stage.js", "copyRows");
  if (checkBatch === null || collapseBatch === null || copyRows === null) {
    log("  (seqload internals checkBatch/collapseBatch/copyRows not found: skipped)");
    return null;
  }
  return { checkBatch, collapseBatch, copyRows };
}

/** What collapseBatch returns, as far as these phases use it (src/collapse.ts). */
interface Collapsed {
  columns: string[];
  winners: Iterable<{ data: Record<string, unknown> }>;
}

/** checkBatch + collapseBatch of `messages` (untimed preparation). */
function prepare(path: DataPath, messages: BenchMessage[]): Collapsed {
  const batch = { table_name: "phases", key_names: ["id"], schema: benchSchema(), messages };
  const v = path.checkBatch(batch) as { columns: Map<string, string> };
  return path.collapseBatch(v, new Map(v.columns)) as Collapsed;
}

const STAGE = "pg_temp.seqload_stage";
const stageCols = (c: Collapsed) => c.columns.map((_, i) => `c${i}`);
const tableCols = (c: Collapsed) => c.columns.map((name) => `"${name.replaceAll('"', '""')}"`);

/**
 * Optimistic direct COPY: when the key sample finds no existing key, COPY the batch straight into
 * the table under a savepoint instead of staging it; on 23505 roll back to the savepoint and take
 * the staged path. Measured on (b)'s data: n new keys into a table holding n other keys
 * (interleaved), in the batch's order (shuffled keys); each variant rolled back, target vacuumed.
 */
async function optimisticPhases(
  pool: pg.Pool,
  url: string,
  n: number,
  load: BenchMessage[],
  prefill: string[],
  repeat: number,
): Promise<void> {
  log(`(opt) optimistic direct COPY vs the staged path: ${fmt(n)} new keys into a table holding ${fmt(n)} other keys; best of ${repeat}`);
  const path = await dataPath();
  if (path === null) return;
  const good = prepare(path, load);
  // The wrong guess: one message near the end of the batch (at 99%) carries a key the table holds.
  const failAt = Math.floor(n * 0.99);
  const bad = prepare(
    path,
    load.map((m, i) => (i === failAt ? { ...m, data: { ...m.data, id: 1 } } : m)),
  );
  const table = "popt";
  const target = qualified(table);
  await freshTable(pool, table, prefill);

  interface Outcome {
    rows: number;
    /** Wrong guess: seconds until the failed COPY was rolled back to its savepoint. */
    failedAfter?: number;
  }
  const staged = async (c: pg.Client, batch: Collapsed): Promise<number> => {
    await c.query(`CREATE TEMP TABLE seqload_stage (${STAGE_DDL}) ON COMMIT DROP`);
    await c.query("SET LOCAL work_mem = '256MB'");
    await path.copyRows(c, STAGE, stageCols(batch), batch, "flag", null);
    const r = await c.query(applySql(table, { order: true, returning: false, notExists: false }));
    return r.rowCount ?? 0;
  };
  const direct = async (c: pg.Client, batch: Collapsed): Promise<number> => {
    await c.query("SAVEPOINT seqload_direct");
    await path.copyRows(c, target, tableCols(batch), batch, "timestamp", new Date().toISOString());
    await c.query("RELEASE SAVEPOINT seqload_direct");
    return n;
  };
  const variants: [string, (c: pg.Client) => Promise<Outcome>][] = [
    ["staged (today): COPY to TEMP stage, INSERT … ON CONFLICT … WHERE", async (c) => ({ rows: await staged(c, good) })],
    ["optimistic: SAVEPOINT, COPY into the table (batch order), RELEASE", async (c) => ({ rows: await direct(c, good) })],
    [
      "optimistic, rows sorted by key in JS first (sort timed)",
      async (c) => {
        const winners = [...good.winners].sort((x, y) => Number(x.data.id) - Number(y.data.id));
        return { rows: await direct(c, { ...good, winners }) };
      },
    ],
    [
      "wrong guess: 23505 at 99%, ROLLBACK TO SAVEPOINT, staged path",
      async (c) => {
        const t0 = performance.now();
        try {
          await direct(c, bad);
        } catch (e) {
          if ((e as { code?: string }).code !== "23505") throw e;
          await c.query("ROLLBACK TO SAVEPOINT seqload_direct");
          const failedAfter = (performance.now() - t0) / 1000;
          return { rows: await staged(c, bad), failedAfter };
        }
        throw new Error("the wrong guess's COPY did not fail on its duplicate key");
      },
    ],
  ];
  let stagedSeconds = NaN;
  for (const [i, [name, run]] of variants.entries()) {
    let wal = 0n;
    const r = await best(
      repeat,
      () => settle(pool, [table]),
      async () => {
        const c = await connect(url);
        await c.query("BEGIN");
        const w0 = await walBytes(pool);
        const t = await time(() => run(c));
        wal = (await walBytes(pool)) - w0;
        await c.query("ROLLBACK");
        await c.end();
        return t;
      },
    );
    if (i === 0) stagedSeconds = r.best.s;
    const detail = [`${fmt(r.best.v.rows)} rows written`, `WAL ${fmt(Number(wal) / 1048576)} MB`];
    if (i > 0) detail.push(`${(stagedSeconds / r.best.s).toFixed(2)}× the staged path's speed`);
    const failedAfter = r.best.v.failedAfter;
    if (failedAfter !== undefined)
      detail.push(
        `failed COPY + rollback ${failedAfter.toFixed(2)} s: a wrong guess costs ${(r.best.s - stagedSeconds).toFixed(2)} s more than the staged path alone`,
      );
    note("opt", name, r.best, n, detail.join("; "), r.all);
  }
  await pool.query(`DROP TABLE ${target}`);
}

/**
 * Stream into the stage while validating: the loader today validates the whole batch (checkBatch)
 * and only then COPYs it to the stage; instead, COPY to the stage from a generator that validates
 * each slice of messages as it is about to be sent, so that Node's validation overlaps PostgreSQL's
 * COPY work (nothing is visible before the whole batch is valid: the stage is temporary, and a
 * validation error aborts the COPY and the transaction). Each variant's transaction is rolled back.
 */
async function streamPhases(url: string, n: number, load: BenchMessage[], repeat: number): Promise<void> {
  const SLICE = 2000;
  log(`(strm) validate, then COPY to the stage vs COPY fed by a validating generator: ${fmt(n)} messages; best of ${repeat}`);
  const path = await dataPath();
  if (path === null) return;
  // One schema object for every slice, as one batch carries one (Ajv's compiled validator is found by it).
  const schema = benchSchema();
  const batchOf = (messages: BenchMessage[]) => ({ table_name: "phases", key_names: ["id"], schema, messages });
  const shape = prepare(path, load.slice(0, 1));
  const validated = (v: unknown) => v as { columns: Map<string, string>; messages: Collapsed["winners"] };
  const collapsed = prepare(path, load);
  const slices = (): Generator<{ data: Record<string, unknown> }> =>
    (function* () {
      for (let i = 0; i < n; i += SLICE) yield* validated(path.checkBatch(batchOf(load.slice(i, i + SLICE)))).messages;
    })();

  const jsOnly: [string, () => unknown][] = [
    ["validation alone: checkBatch of the whole batch (no database)", () => path.checkBatch(batchOf(load))],
    [
      `validation alone, in ${fmt(SLICE)}-message slices (no database)`,
      () => {
        let k = 0;
        for (const _ of slices()) k++;
        return k;
      },
    ],
  ];
  for (const [name, fn] of jsOnly) {
    const r = await best(
      repeat,
      async () => {},
      () => time(fn),
    );
    note("strm", name, r.best, n, undefined, r.all);
  }

  const toStage = async (c: pg.Client, batch: Collapsed) => path.copyRows(c, STAGE, stageCols(batch), batch, "flag", null);
  type Step = "alone" | "today" | "plain" | "overlapped";
  const variants: [Step, string, (c: pg.Client) => Promise<unknown>][] = [
    ["alone", "COPY to the stage alone (rows validated and collapsed before)", (c) => toStage(c, collapsed)],
    [
      "today",
      "sequential (the loader today): checkBatch + collapse, then COPY",
      (c) => {
        const v = validated(path.checkBatch(batchOf(load)));
        return toStage(c, path.collapseBatch(v, new Map(v.columns)) as Collapsed);
      },
    ],
    [
      "plain",
      "sequential without collapse: checkBatch, then COPY to the stage",
      (c) => toStage(c, { ...shape, winners: validated(path.checkBatch(batchOf(load))).messages }),
    ],
    [
      "overlapped",
      `overlapped: COPY fed by a generator validating ${fmt(SLICE)}-msg slices`,
      (c) => toStage(c, { ...shape, winners: slices() }),
    ],
  ];
  const seconds = new Map<Step, number>();
  for (const [step, name, run] of variants) {
    const r = await best(
      repeat,
      async () => {},
      async () => {
        const c = await connect(url);
        await c.query("BEGIN");
        await c.query(`CREATE TEMP TABLE seqload_stage (${STAGE_DDL}) ON COMMIT DROP`);
        const t = await time(() => run(c));
        const staged = await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${STAGE}`);
        if (staged.rows[0]?.n !== n) throw new Error(`${name}: ${staged.rows[0]?.n} rows staged, expected ${n}`);
        await c.query("ROLLBACK");
        await c.end();
        return t;
      },
    );
    seconds.set(step, r.best.s);
    let detail: string | undefined;
    if (step === "overlapped") {
      const plain = seconds.get("plain") ?? NaN;
      const today = seconds.get("today") ?? NaN;
      detail = `saves ${(plain - r.best.s).toFixed(2)} s (${Math.round(((plain - r.best.s) / plain) * 100)}%) against sequential without collapse, ${(today - r.best.s).toFixed(2)} s against the loader today`;
    }
    note("strm", name, r.best, n, detail, r.all);
  }
}

async function smallBatchPhases(pool: pg.Pool, url: string, count: number): Promise<void> {
  log(`(e) ${fmt(count)} statements of 100 rows (unnest arrays, the shape seqload sends), by hand`);
  const batches = streamMessages(count, 100, 0);
  const table = "pe";
  await freshTable(pool, table, null);
  const sql = `INSERT INTO ${qualified(table)} AS t ("id", "name", "qty", "price", "active", "updated_at", "_sequence", "_deleted_at")
SELECT s.c0, s.c1, s.c2, s.c3, s.c4, s.c5, s._sequence, NULL FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::numeric[], $5::boolean[], $6::timestamptz[], $7::bigint[]) AS s(c0, c1, c2, c3, c4, c5, _sequence)
ORDER BY s.c0
ON CONFLICT ("id") DO UPDATE SET "name" = excluded."name", "qty" = excluded."qty", "price" = excluded."price", "active" = excluded."active", "updated_at" = excluded."updated_at", "_sequence" = excluded."_sequence", "_loaded_at" = excluded."_loaded_at"
WHERE excluded."_sequence" > t."_sequence"`;
  const params = (b: BenchMessage[]) => [
    b.map((m) => m.data.id),
    b.map((m) => m.data.name),
    b.map((m) => m.data.qty),
    b.map((m) => String(m.data.price)),
    b.map((m) => m.data.active),
    b.map((m) => m.data.updated_at),
    b.map((m) => m.sequence.toString()),
  ];
  for (const [name, init, prepared] of [
    ["synchronous_commit on, unnamed statement", [], false],
    ["synchronous_commit on, named prepared statement", [], true],
    ["synchronous_commit off, named prepared statement", ["SET synchronous_commit = off"], true],
  ] as const) {
    await pool.query(`TRUNCATE ${qualified(table)}`);
    await settle(pool, []);
    const c = await connect(url, [...init]);
    const lat: number[] = [];
    const t = await time(async () => {
      for (const b of batches) {
        const t0 = performance.now();
        await c.query(prepared ? { name: "phases_unnest", text: sql, values: params(b) } : { text: sql, values: params(b) });
        lat.push(performance.now() - t0);
      }
    });
    await c.end();
    lat.sort((x, y) => x - y);
    const p = (q: number) => (lat[Math.min(lat.length - 1, Math.ceil((q / 100) * lat.length) - 1)] ?? 0).toFixed(2);
    note("e", name, t, count * 100, `p50 ${p(50)} ms, p99 ${p(99)} ms`);
  }
  // The JS side of a 100-message loadBatch: validation and collapse alone.
  const checkBatch = await internal("validate.js", "checkBatch");
  const collapseBatch = await internal("collapse.js", "collapseBatch");
  if (checkBatch !== null && collapseBatch !== null) {
    const wrapped = batches.map((messages) => ({ table_name: table, key_names: ["id"], schema: benchSchema(), messages }));
    const t = await time(() => {
      for (const b of wrapped) {
        const v = checkBatch(b) as { columns: Map<string, string> };
        collapseBatch(v, new Map(v.columns));
      }
    });
    note(
      "e",
      "JS only: checkBatch + collapseBatch per 100-message batch",
      t,
      count * 100,
      `${((t.s * 1000) / count).toFixed(3)} ms per batch`,
    );
  }
  await pool.query(`DROP TABLE ${qualified(table)}`);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opt = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const n = Number(opt("--rows") ?? 1_000_000);
  const repeat = Number(opt("--repeat") ?? 1);
  const only = new Set((opt("--only") ?? "js,a,stage,b,c,d,opt,strm,e").split(","));
  const database = await provideDatabase();
  const pool = new pg.Pool({ connectionString: database.connectionString, max: 2 });
  pool.on("error", () => {});
  try {
    const facts = await serverFacts(pool);
    log(
      `phases: ${fmt(n)} rows, ${facts.version.split(" on ")[0]} (${database.source}); times are wall seconds, cpu s = CPU seconds of Node / of PostgreSQL`,
    );
    await resetSchema(pool);
    meter = await serverCpuMeter(pool);
    const base = dataSet(n, { version: 0, parity: 0, order: permutation(n, 1) });
    if (only.has("js")) await jsPhases(n, base);
    if (only.has("a")) await newTablePhases(pool, database.connectionString, n, base, repeat);
    if (only.has("stage")) await stagePhases(pool, database.connectionString, n, base, repeat);
    const baseText = [...copyChunks(base)];
    if (only.has("b")) {
      const others = [...copyChunks(dataSet(n, { version: 0, parity: 1, order: null }))];
      await applyPhases(pool, database.connectionString, "b", n, base, others, repeat);
    }
    if (only.has("c"))
      await applyPhases(
        pool,
        database.connectionString,
        "c",
        n,
        dataSet(n, { version: 1, parity: 0, order: permutation(n, 2) }),
        baseText,
        repeat,
      );
    if (only.has("d")) await applyPhases(pool, database.connectionString, "d", n, base, baseText, repeat);
    if (only.has("opt")) {
      const others = [...copyChunks(dataSet(n, { version: 0, parity: 1, order: null }))];
      await optimisticPhases(pool, database.connectionString, n, base, others, repeat);
    }
    if (only.has("strm")) await streamPhases(database.connectionString, n, base, repeat);
    if (only.has("e")) await smallBatchPhases(pool, database.connectionString, Math.min(5000, Math.max(1000, Math.floor(n / 200))));
    console.log(JSON.stringify({ phases: rows, rows: n, postgres: facts.version }));
  } finally {
    await dropSchema(pool).catch(() => {});
    await pool.end();
    await database.stop();
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exitCode = 1;
});
