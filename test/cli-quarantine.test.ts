// --on-invalid quarantine on `load`, `singer` and `serve`, as subprocesses: the valid messages
// load, the invalid ones land in seqload.rejected exactly as received.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase, withClient } from "./helpers/db.js";
import { assertBuilt, CLI, cleanEnv, jsonLines, ROOT, runCli } from "./fixtures/cli/run.js";

let db: TestDatabase;
let tmp: string;

beforeAll(async () => {
  assertBuilt();
  db = await createTestDatabase("cli_quarantine");
  tmp = await mkdtemp(path.join(os.tmpdir(), "seqload-quarantine-"));
});

afterAll(async () => {
  await db?.drop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function rows<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
  return withClient(db.url, async (c) => (await c.query(sql, params)).rows as T[]);
}

const rejected = (schema: string, table: string) =>
  rows<{ sequence: string | null; message: string; kinds: string[] }>(
    "SELECT sequence, message, (SELECT array_agg(i->>'kind') FROM jsonb_array_elements(issues) i) AS kinds FROM seqload.rejected WHERE schema_name = $1 AND table_name = $2 ORDER BY id",
    [schema, table],
  );

// Written by hand, as a client sends it: a 19-digit sequence and key, 1.00, an escaped NUL.
const BAD_19 = '{"action":"upsert","sequence":1795465705836060201,"data":{"id":"nineteen","v":"x"}}';
const BAD_NUL = '{"action":"upsert","sequence":1795465705836060202,"data":{"id":3,"v":"a\\u0000b","n":1.00}}';
const batchText = (table: string) =>
  `{"table_name":"${table}","key_names":["id"],"schema":{"properties":{"id":{"type":"integer"},"v":{"type":"string"},"n":{"type":["null","number"]}}},` +
  `"messages":[{"action":"upsert","sequence":1795465705836060200,"data":{"id":1,"v":"ok","n":1.00}},${BAD_19},${BAD_NUL},` +
  `{"action":"upsert","sequence":1795465705836060203,"data":{"id":2,"v":"ok too"}}]}`;

describe("seqload load --on-invalid", () => {
  it("quarantine: loads the valid messages, writes the invalid ones exactly as sent, --json counts them", async () => {
    const f = path.join(tmp, "mixed.json");
    await writeFile(f, batchText("mixed"));
    const failing = await runCli(["load", f, "--database-url", db.url, "--schema", "cliq"]);
    expect(failing.code).toBe(2);
    expect(failing.stderr).toContain("Nothing was loaded.");

    const r = await runCli(["load", f, "--on-invalid", "quarantine", "--json", "--database-url", db.url, "--schema", "cliq"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(jsonLines(r.stdout)).toEqual([
      { table: "mixed", received: 4, collapsed: 0, inserted: 2, updated: 0, deleted: 0, skipped: 0, rejected: 2 },
    ]);
    expect(await rows("SELECT id::text, v, n::text FROM cliq.mixed ORDER BY id")).toEqual([
      { id: "1", v: "ok", n: "1.00" },
      { id: "2", v: "ok too", n: null },
    ]);
    expect(await rejected("cliq", "mixed")).toEqual([
      { sequence: "1795465705836060201", message: BAD_19, kinds: ["schema"] },
      { sequence: "1795465705836060202", message: BAD_NUL, kinds: ["data"] },
    ]);

    const text = await runCli(["load", f, "--on-invalid", "quarantine", "--database-url", db.url, "--schema", "cliq"]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(
      /received 4, inserted 0, updated 0, deleted 0, skipped 2, collapsed 0, rejected 2 \(in seqload\.rejected\)/,
    );
  });

  it("refuses an unknown mode (exit 1, usage)", async () => {
    const r = await runCli(["load", "--on-invalid", "ignore", "--database-url", db.url]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("Allowed choices are fail, quarantine");
  });
});

describe("seqload singer --on-invalid", () => {
  const stream = [
    '{"type": "SCHEMA", "stream": "people", "key_properties": ["id"], "schema": {"properties": {"id": {"type": "integer"}, "age": {"type": ["null", "integer"]}}}}',
    '{"type": "RECORD", "stream": "people", "record": {"id": 1, "age": 30}}',
    '{"type": "RECORD", "stream": "people", "record": {"id": 2, "age": "old"}}',
    '{"type": "STATE", "value": {"bookmark": 12345678901234567890}}',
    '{"type": "RECORD", "stream": "people", "record": {"id": 3, "age": 12345678901234567890123}}',
    '{"type": "RECORD", "stream": "people", "record": {"age": 5}}',
    '{"type": "STATE", "value": {"bookmark": 2}}',
  ].join("\n");

  it("fail (default) exits 2 at the invalid RECORD; quarantine loads the rest and prints every STATE", async () => {
    const failing = await runCli(["singer", "--database-url", db.url, "--schema", "singer_fail"], { input: stream });
    expect(failing.code).toBe(2);
    expect(failing.stderr).toContain("<stdin>:3:");

    const r = await runCli(["singer", "--on-invalid", "quarantine", "--database-url", db.url, "--schema", "singerq"], { input: stream });
    expect(r.stderr).toMatch(/rejected 1 \(in seqload\.rejected\)/);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('{"bookmark":12345678901234567890}\n{"bookmark":2}\n');
    expect(await rows("SELECT id::text, age::text FROM singerq.people ORDER BY id")).toEqual([
      { id: "1", age: "30" },
      { id: "3", age: "12345678901234567890123" },
    ]);
    const kept = await rejected("singerq", "people");
    expect(kept.map((x) => x.kinds)).toEqual([["schema"], ["key_missing"]]);
    expect(kept.map((x) => JSON.parse(x.message).data)).toEqual([{ id: 2, age: "old" }, { age: 5 }]);
    expect(kept.every((x) => /^\d{19}$/.test(x.sequence ?? ""))).toBe(true);
  });

  it("a malformed line still exits 2 in quarantine mode", async () => {
    const r = await runCli(["singer", "--on-invalid", "quarantine", "--database-url", db.url, "--schema", "singerq2"], {
      input: `${stream.split("\n")[0]}\n{"type": "RECORD", "stream": "people", "record": {"id": 1}\n`,
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("<stdin>:2");
  });

  it("with --sequence-property, a record without it is quarantined (sequence null)", async () => {
    const input = [
      '{"type": "SCHEMA", "stream": "cdc", "key_properties": ["id"], "schema": {"properties": {"id": {"type": "integer"}, "lsn": {"type": ["null", "integer"]}}}}',
      '{"type": "RECORD", "stream": "cdc", "record": {"id": 1, "lsn": 9000000000000000001}}',
      '{"type": "RECORD", "stream": "cdc", "record": {"id": 2}}',
    ].join("\n");
    const r = await runCli(
      ["singer", "--on-invalid", "quarantine", "--sequence-property", "lsn", "--database-url", db.url, "--schema", "singerq3"],
      { input },
    );
    expect(r.stderr).toContain("rejected 1");
    expect(r.code).toBe(0);
    expect(await rows("SELECT id::text, _sequence::text FROM singerq3.cdc")).toEqual([{ id: "1", _sequence: "9000000000000000001" }]);
    expect((await rejected("singerq3", "cdc")).map((x) => [x.sequence, x.kinds])).toEqual([[null, ["message"]]]);
  });
});

describe("seqload serve --on-invalid quarantine", () => {
  it("answers 201 to a batch with invalid messages, stores them, and logs the count", async () => {
    const child: ChildProcess = spawn(
      process.execPath,
      [CLI, "serve", "--port", "0", "--insecure-no-auth", "--on-invalid", "quarantine", "--schema", "served_q", "--database-url", db.url],
      { cwd: ROOT, env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`serve did not start:\n${stderr}`)), 30_000);
        child.stderr?.setEncoding("utf8").on("data", (s: string) => {
          stderr += s;
          const m = /serving the Import API at (\S+?),/.exec(stderr);
          if (m?.[1]) {
            clearTimeout(timer);
            resolve(m[1]);
          }
        });
        void exited.then((code) => reject(new Error(`serve exited with ${code}:\n${stderr}`)));
      });
      const res = await fetch(`${url}/v2/import/batch`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: batchText("posted"),
      });
      expect(res.status).toBe(201);
      expect(await rows("SELECT id::text FROM served_q.posted ORDER BY id")).toEqual([{ id: "1" }, { id: "2" }]);
      expect((await rejected("served_q", "posted")).map((x) => x.message)).toEqual([BAD_19, BAD_NUL]);
      // The batch's log line is written once the exchange is over.
      for (let i = 0; i < 50 && !stderr.includes('"event":"batch"'); i++) await new Promise((r) => setTimeout(r, 100));
      const line = stderr.split("\n").find((l) => l.includes('"event":"batch"'));
      expect(JSON.parse(line ?? "{}")).toMatchObject({ status: 201, table: "posted", received: 4, inserted: 2, rejected: 2 });
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toMatch(/^seqload_rows_total\{[^}]*table="posted"[^}]*result="rejected"[^}]*\} 2$/m);
    } finally {
      child.kill("SIGTERM");
      await exited;
    }
  });
});
