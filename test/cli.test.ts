// The seqload CLI, run as a subprocess against a real PostgreSQL (a fresh database per file).
// Embedded-server runs are in cli-embedded.test.ts, `serve` in cli-serve.test.ts.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase, withClient } from "./helpers/db.js";
import { assertBuilt, batch, EXAMPLES, jsonLines, runCli } from "./fixtures/cli/run.js";

let db: TestDatabase;
let tmp: string;
const LOAD_RESULT_KEYS = ["table", "received", "collapsed", "inserted", "updated", "deleted", "skipped", "rejected"];

beforeAll(async () => {
  assertBuilt();
  db = await createTestDatabase("cli");
  tmp = await mkdtemp(path.join(os.tmpdir(), "seqload-cli-test-"));
});

afterAll(async () => {
  await db?.drop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function file(name: string, text: string | Buffer): Promise<string> {
  const p = path.join(tmp, name);
  await writeFile(p, text);
  return p;
}

async function rows<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
  return withClient(db.url, async (c) => (await c.query(sql, params)).rows as T[]);
}

const load = (args: string[], input?: string) => runCli(["load", ...args, "--database-url", db.url], input === undefined ? {} : { input });
const noStack = (stderr: string) => expect(stderr).not.toMatch(/\n\s+at .+:\d+:\d+\)?\n/);

describe("seqload load", () => {
  it("loads the Stitch example: one row per key, the highest sequence wins, a summary per batch on stdout", async () => {
    const r = await load([path.join(EXAMPLES, "customers.json"), "--schema", "stitch_example"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /customers\.json:1 \(batch 1\): table customers: received 3, inserted 2, updated 0, deleted 0, skipped 0, collapsed 1 \(\d+ ms\)\n$/,
    );
    const got = await rows("select id::text, name, has_magic, _sequence::text as seq from stitch_example.customers order by id");
    expect(got).toEqual([
      { id: "1", name: "Finn", has_magic: false, seq: "1574807356000" },
      { id: "2", name: "Jake", has_magic: false, seq: "1574807445000" },
    ]);
  });

  it("--json prints exactly one LoadResult object per batch on stdout and nothing else", async () => {
    const first = await load([path.join(EXAMPLES, "orders.jsonl"), "--json", "--schema", "json_flag"]);
    expect(first.code).toBe(0);
    expect(first.stderr).toBe("");
    const results = jsonLines(first.stdout);
    expect(results.map((o) => Object.keys(o))).toEqual(Array(4).fill(LOAD_RESULT_KEYS));
    expect(results).toEqual([
      { table: "orders", received: 3, collapsed: 0, inserted: 3, updated: 0, deleted: 0, skipped: 0, rejected: 0 },
      { table: "orders", received: 4, collapsed: 1, inserted: 0, updated: 2, deleted: 0, skipped: 1, rejected: 0 },
      { table: "orders", received: 2, collapsed: 0, inserted: 1, updated: 0, deleted: 1, skipped: 0, rejected: 0 },
      { table: "orders", received: 1, collapsed: 0, inserted: 0, updated: 0, deleted: 0, skipped: 1, rejected: 0 },
    ]);
    // Replaying changes nothing.
    const again = await load([path.join(EXAMPLES, "orders.jsonl"), "--json", "--schema", "json_flag"]);
    expect(jsonLines(again.stdout).map((o) => o.skipped)).toEqual([3, 3, 2, 1]);
    const got = await rows(
      "select order_id::text, status, _sequence::text as seq, _deleted_at is not null as deleted, coupon from json_flag.orders order by order_id",
    );
    expect(got).toEqual([
      { order_id: "1001", status: "shipped", seq: "1795465705836066510", deleted: false, coupon: null },
      { order_id: "1002", status: "created", seq: "1795465705836066502", deleted: false, coupon: null },
      { order_id: "1003", status: "packed", seq: "1795465705836066520", deleted: true, coupon: null },
      { order_id: "1004", status: "created", seq: "1795465705836066521", deleted: false, coupon: "WINTER10" },
    ]);
  });

  it("a 19-digit sequence written in a file reaches the table exactly and picks the right winner", async () => {
    // The two versions differ by 1 in the 19th digit: as doubles they are equal (and the later,
    // "older", one would win the tie). Read exactly, the first one is the newer.
    const f1 = await file(
      "nineteen-1.json",
      batch("seq19", [
        { seq: "1795465705836066501", id: 1, v: "newer" },
        { seq: "1795465705836066500", id: 1, v: "older" },
      ]),
    );
    const r1 = await load([f1, "--json"]);
    expect(r1.code).toBe(0);
    expect(jsonLines(r1.stdout)).toEqual([
      { table: "seq19", received: 2, collapsed: 1, inserted: 1, updated: 0, deleted: 0, skipped: 0, rejected: 0 },
    ]);
    expect(await rows("select v, _sequence::text as seq from seq19")).toEqual([{ v: "newer", seq: "1795465705836066501" }]);

    // Across batches: +1 replaces, an equal one does not.
    const f2 = await file(
      "nineteen-2.jsonl",
      `${batch("seq19", [{ seq: "1795465705836066501", id: 1, v: "same sequence" }])}\n${batch("seq19", [{ seq: "1795465705836066502", id: 1, v: "plus one" }])}\n`,
    );
    const r2 = await load([f2, "--json"]);
    expect(jsonLines(r2.stdout).map((o) => [o.skipped, o.updated])).toEqual([
      [1, 0],
      [0, 1],
    ]);
    expect(await rows("select v, _sequence::text as seq from seq19")).toEqual([{ v: "plus one", seq: "1795465705836066502" }]);
  });

  it("JSON Lines whose third batch is invalid: batches 1-2 loaded, batch 3 wrote nothing, exit 2 pointing at line 3", async () => {
    const f = await file(
      "third-invalid.jsonl",
      [
        batch("third", [{ seq: 1, id: 1, v: "a" }]),
        batch("third", [{ seq: 2, id: 2, v: "b" }]),
        batch("third", [
          { seq: 3, id: 3, v: "c" },
          { seq: 1.5, id: null, v: "d" },
        ]),
        batch("third", [{ seq: 4, id: 4, v: "e" }]),
      ].join("\n"),
    );
    const r = await load([f, "--json"]);
    expect(r.code).toBe(2);
    expect(jsonLines(r.stdout)).toHaveLength(2);
    expect(r.stderr).toContain(`${f}:3 (batch 3): invalid batch for table "third", 3 problems; nothing from it was written`);
    expect(r.stderr).toContain("message 1 at /messages/1/sequence:");
    expect(r.stderr).toContain("message 1 at /messages/1/data/id:");
    expect(r.stderr).toContain("The 2 batches before it were loaded");
    noStack(r.stderr);
    expect(await rows("select id::int, v from third order by id")).toEqual([
      { id: 1, v: "a" },
      { id: 2, v: "b" },
    ]);

    const human = await load([f]);
    expect(human.code).toBe(2);
    expect(human.stdout.match(/^.*\(batch \d\): table third: /gm)).toHaveLength(2);
  });

  it("malformed JSON: exit 2 with file:line:column, never a stack trace; earlier batches stay loaded", async () => {
    const pretty = await file("malformed.json", '{\n  "table_name": "m",\n  "key_names": ["id"]\n  "schema": {}\n}\n');
    const r = await load([pretty]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${pretty}:4:3: malformed JSON in batch 1:`);
    expect(r.stderr).toContain("Nothing was loaded.");
    noStack(r.stderr);

    const lines = await file(
      "malformed.jsonl",
      `${batch("malformed_lines", [{ seq: 1, id: 1, v: "ok" }])}\n{"table_name": "x", "messages": [1, 2}\n`,
    );
    const r2 = await load([lines]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(new RegExp(`${lines.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:2:\\d+: malformed JSON in batch 2:`));
    expect(r2.stderr).toContain("The 1 batch before it was loaded");
    expect(await rows("select v from malformed_lines")).toEqual([{ v: "ok" }]);

    // Latin-1 bytes are not silently turned into U+FFFD.
    const latin1 = await file("latin1.json", Buffer.from(batch("latin1", [{ seq: 1, id: 1, v: "caf\u00e9" }]), "latin1"));
    const r3 = await load([latin1]);
    expect(r3.code).toBe(2);
    expect(r3.stderr).toMatch(new RegExp(`${latin1.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:1:\\d+: invalid UTF-8 \\(byte offset \\d+\\)`));

    const notJson = await load([await file("not-json.txt", "hello\n")]);
    expect(notJson.code).toBe(2);
    expect(notJson.stderr).toMatch(/not-json\.txt:1:1: malformed JSON: unexpected "h"/);
  });

  it('reads stdin given as "-" and when no FILE is named', async () => {
    const text = batch("from_stdin", [{ seq: 1, id: 1, v: "dash" }]);
    const dash = await load(["-", "--json"], text);
    expect(dash.code).toBe(0);
    expect(jsonLines(dash.stdout)).toEqual([
      { table: "from_stdin", received: 1, collapsed: 0, inserted: 1, updated: 0, deleted: 0, skipped: 0, rejected: 0 },
    ]);
    const none = await runCli(["load", "--database-url", db.url], { input: batch("from_stdin", [{ seq: 2, id: 2, v: "none" }]) });
    expect(none.code).toBe(0);
    expect(none.stdout).toContain("<stdin>:1 (batch 1): table from_stdin: received 1, inserted 1");
    expect(await rows("select id::int, v from from_stdin order by id")).toEqual([
      { id: 1, v: "dash" },
      { id: 2, v: "none" },
    ]);
  });

  it("reads a JSON array of batches and several files in order, with a total", async () => {
    const arr = await file(
      "array.json",
      `[\n${batch("arr", [{ seq: 1, id: 1, v: "one" }])},\n${batch("arr", [{ seq: 2, id: 1, v: "two" }])}\n]\n`,
    );
    const r = await load([arr, path.join(EXAMPLES, "page-views.json")]);
    expect(r.code).toBe(0);
    const summaries = r.stdout.split("\n").filter((l) => l.includes("(batch"));
    expect(
      summaries.map((l) =>
        l
          .replace(/ \(\d+ ms\)$/, "")
          .replace(`${tmp}/`, "")
          .replace(`${EXAMPLES}/`, ""),
      ),
    ).toEqual([
      "array.json:2 (batch 1): table arr: received 1, inserted 1, updated 0, deleted 0, skipped 0, collapsed 0",
      "array.json:3 (batch 2): table arr: received 1, inserted 0, updated 1, deleted 0, skipped 0, collapsed 0",
      "page-views.json:2 (batch 1): table page_views: received 2, inserted 2, updated 0, deleted 0, skipped 0, collapsed 0",
      "page-views.json:47 (batch 2): table page_views: received 2, inserted 2, updated 0, deleted 0, skipped 0, collapsed 0",
    ]);
    expect(r.stdout).toMatch(/\nloaded 4 batches: received 6, inserted 5, updated 1, deleted 0, skipped 0, collapsed 0 \(/);
    expect(await rows("select v from arr")).toEqual([{ v: "two" }]);
    // page_views has no key_names: append-only, the repeated view is kept.
    expect(await rows("select count(*)::int as n from page_views")).toEqual([{ n: 4 }]);
  });

  it("loads target-stitch's request (activate_version, table_version, time_extracted)", async () => {
    const r = await load([path.join(EXAMPLES, "target-stitch-request.json"), "--json", "--schema", "target_stitch"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(jsonLines(r.stdout)).toHaveLength(1);
    expect(await rows("select id::int, has_magic, _sequence::text as seq from target_stitch.customers order by id")).toEqual([
      { id: 1, has_magic: false, seq: "1795465705836066501" },
      { id: 2, has_magic: false, seq: "1795465705836145003" },
    ]);
  });

  it("key_names that conflict with the existing table: exit 2, nothing written", async () => {
    await load([await file("keys-a.json", batch("keyed", [{ seq: 1, id: 1, v: "a" }]))]);
    const other =
      '{"table_name":"keyed","key_names":["v"],"schema":{"properties":{"id":{"type":"integer"},"v":{"type":"string"}}},"messages":[{"action":"upsert","sequence":2,"data":{"id":2,"v":"b"}}]}';
    const r = await load([await file("keys-b.json", other)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/keys-b\.json:1 \(batch 1\): table "keyed" has primary key \["id"\] but the batch has key_names \["v"\]/);
    expect(await rows("select count(*)::int as n from keyed")).toEqual([{ n: 1 }]);
  });

  it("exit 1 when the database cannot be reached, naming the URL with the password hidden", async () => {
    const f = path.join(EXAMPLES, "customers.json");
    const r = await runCli(["load", f, "--database-url", "postgres://alice:s3cret@127.0.0.1:1/warehouse"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("cannot connect to PostgreSQL at postgres://alice:***@127.0.0.1:1/warehouse (from --database-url)");
    expect(r.stderr).toContain("Check: nothing accepts connections there");
    expect(r.stderr).not.toContain("s3cret");
    noStack(r.stderr);
    const notUrl = await runCli(["load", f, "--database-url", "localhost"]);
    expect(notUrl.code).toBe(1);
    expect(notUrl.stderr).toContain("--database-url must be a URL like postgres://USER:PASSWORD@HOST:PORT/DATABASE");
    // DATABASE_URL is used when there is no flag.
    const env = await runCli(["load", f], { env: { DATABASE_URL: "postgres://alice:s3cret@127.0.0.1:1/warehouse" } });
    expect(env.code).toBe(1);
    expect(env.stderr).toContain("postgres://alice:***@127.0.0.1:1/warehouse (from DATABASE_URL)");
  });

  it("exit 1 for a missing file, before anything is loaded", async () => {
    const r = await load([path.join(EXAMPLES, "customers.json"), path.join(tmp, "nope.json")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("nope.json: no such file");
    expect(r.stdout).toBe("");
  });

  it("prints no progress display when stderr is not a terminal", async () => {
    const big = Array.from({ length: 30 }, (_, i) => batch("quiet", [{ seq: i + 1, id: i % 5, v: `v${i}` }])).join("\n");
    const r = await load(["-"], big);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
  });
});

describe("seqload validate", () => {
  it("checks without a database: exit 0 when valid, 2 listing every problem otherwise", async () => {
    // No --database-url, no DATABASE_URL, run in an empty folder: no embedded server may start.
    const cwd = await mkdtemp(path.join(tmp, "validate-"));
    const ok = await runCli(["validate", path.join(EXAMPLES, "customers.json"), path.join(EXAMPLES, "orders.jsonl")], { cwd });
    expect(ok.code).toBe(0);
    expect(ok.stderr).toBe("");
    expect(ok.stdout).toContain("customers.json:1 (batch 1): valid: table customers, 3 messages, key id");
    expect(ok.stdout).toContain("5 batches checked: 5 valid, 0 invalid");

    const bad = await file(
      "validate-bad.jsonl",
      `${batch("t", [{ seq: 1, id: 1, v: "a" }])}\n${batch("t", [{ seq: `"x"`, id: 1, v: 2 }])}\n`,
    );
    const r = await runCli(["validate", bad], { cwd });
    expect(r.code).toBe(2);
    expect(r.stdout).toContain("validate-bad.jsonl:1 (batch 1): valid");
    expect(r.stderr).toContain('validate-bad.jsonl:2 (batch 2): invalid batch for table "t", 2 problems');
    expect(r.stderr).toContain("message 0 at /messages/0/sequence:");
    expect(r.stderr).toContain("message 0 at /messages/0/data/v:");
    expect(r.stderr).toContain("2 batches checked: 1 valid, 1 invalid");

    const stdin = await runCli(["validate", "-"], { cwd, input: '{"table_name": 1' });
    expect(stdin.code).toBe(2);
    expect(stdin.stderr).toMatch(/<stdin>:1:\d+: malformed JSON/);
    const { readdir } = await import("node:fs/promises");
    expect(await readdir(cwd)).toEqual([]);
  });
});

describe("seqload migrate", () => {
  it("up, status, down and down --all on a fresh database", async () => {
    const fresh = await createTestDatabase("cli_migrate");
    try {
      const migrate = (...args: string[]) => runCli(["migrate", ...args, "--database-url", fresh.url]);
      const before = await migrate("status", "--json");
      expect(before.code).toBe(0);
      expect(JSON.parse(before.stdout)).toEqual({
        executed: [],
        pending: ["0001_init", "0002_loads_max_sequence", "0003_distribution", "0004_rejected"],
      });

      const up = await migrate("up");
      expect(up.code).toBe(0);
      expect(up.stdout).toMatch(/^migrated 0001_init /m);
      expect(up.stdout).toMatch(/^migrated 0002_loads_max_sequence /m);
      expect(up.stdout).toMatch(/^migrated 0003_distribution /m);
      expect(up.stdout).toMatch(/^migrated 0004_rejected /m);
      expect(up.stdout).toContain("applied: 0001_init, 0002_loads_max_sequence, 0003_distribution, 0004_rejected\npending: none");
      expect((await migrate("up")).stdout).toContain("nothing to migrate");

      const status = await migrate("status");
      expect(status.stdout).toBe("applied: 0001_init, 0002_loads_max_sequence, 0003_distribution, 0004_rejected\npending: none\n");

      // down reverts the last one: 0003's down drops the distribution columns again.
      const down = await migrate("down");
      expect(down.code).toBe(0);
      expect(down.stdout).toContain("reverted 0004_rejected");
      expect(down.stdout).toContain("applied: 0001_init, 0002_loads_max_sequence, 0003_distribution\npending: 0004_rejected");
      // The down really undoes it: no seqload.rejected, no loads.rejected column.
      const undone = await withClient(fresh.url, (c) =>
        c.query(
          "SELECT to_regclass('seqload.rejected') AS t, (SELECT count(*)::int FROM information_schema.columns WHERE table_schema = 'seqload' AND table_name = 'loads' AND column_name = 'rejected') AS c",
        ),
      );
      expect(undone.rows).toEqual([{ t: null, c: 0 }]);

      await migrate("up");
      const all = await migrate("down", "--all");
      expect(all.stdout).toContain("reverted 0004_rejected");
      expect(all.stdout).toContain("reverted 0003_distribution");
      expect(all.stdout).toContain("reverted 0002_loads_max_sequence");
      expect(all.stdout).toContain("reverted 0001_init");
      expect((await migrate("down")).stdout).toContain("nothing to revert");

      const wrong = await migrate("sideways");
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toContain("value 'sideways' is invalid");
    } finally {
      await fresh.drop();
    }
  });
});

describe("seqload query", () => {
  beforeAll(async () => {
    await load([path.join(EXAMPLES, "customers.json"), "--schema", "q"]);
  });

  it("prints rows as a table, --json as one object per row with exact numbers", async () => {
    const r = await runCli([
      "query",
      "select id, name, has_magic, _sequence from customers order by id",
      "--schema",
      "q",
      "--database-url",
      db.url,
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      [
        " id | name | has_magic | _sequence",
        "----+------+-----------+---------------",
        "  1 | Finn | f         | 1574807356000",
        "  2 | Jake | f         | 1574807445000",
        "(2 rows)",
        "",
      ].join("\n"),
    );
    const j = await runCli([
      "query",
      "select 1795465705836066501::bigint as seq, null::text as n, '{\"a\": 1}'::jsonb as doc, true as t",
      "--json",
      "--database-url",
      db.url,
    ]);
    expect(j.code).toBe(0);
    expect(j.stdout).toBe('{"seq":1795465705836066501,"n":null,"doc":{"a": 1},"t":true}\n');
  });

  it("statements without rows print their command tag; SQL errors exit 1 with the position", async () => {
    const r = await runCli([
      "query",
      "create table q.scratch (x int); insert into q.scratch values (1), (2); select count(*) from q.scratch",
      "--database-url",
      db.url,
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("CREATE\nINSERT 2\n count\n-------\n     2\n(1 row)\n");
    const bad = await runCli(["query", "select * from\n  no_such_table", "--database-url", db.url]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('query failed: relation "no_such_table" does not exist (SQLSTATE 42P01)');
    expect(bad.stderr).toContain("at line 2, column 3 of the query");
  });
});

describe("help and usage", () => {
  it.each(["load", "validate", "migrate", "query", "serve"])("`%s --help` shows usage and examples", async (cmd) => {
    const r = await runCli([cmd, "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Usage: seqload ${cmd}`);
    expect(r.stdout).toContain("Examples:");
    expect(r.stdout).toContain(`$ seqload ${cmd}`);
  });

  it("`--help` lists the commands; `--version` prints the version; unknown input exits 1", async () => {
    const r = await runCli(["--help"]);
    expect(r.code).toBe(0);
    for (const cmd of ["load", "validate", "migrate", "query", "serve"]) expect(r.stdout).toMatch(new RegExp(`^  ${cmd} `, "m"));
    expect(r.stdout).toContain(".seqload/pgdata");
    const help = await runCli(["help", "load"]);
    expect(help.stdout).toContain("--database-url <url>");
    expect(help.stdout).toContain("--schema <name>");
    expect(help.stdout).toContain("--json");
    const v = await runCli(["--version"]);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/^\d+\.\d+\.\d+/);
    const unknown = await runCli(["frobnicate"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
    const flag = await runCli(["load", "--no-such-flag"]);
    expect(flag.code).toBe(1);
    expect(flag.stderr).toContain("unknown option '--no-such-flag'");
  });
});
