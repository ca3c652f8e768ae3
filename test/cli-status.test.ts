// `seqload status` and `seqload sequence`, run as subprocesses the way a user runs them.
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "./helpers/db.js";
import { assertBuilt, EXAMPLES, jsonLines, runCli } from "./fixtures/cli/run.js";

let db: TestDatabase;

beforeAll(async () => {
  assertBuilt();
  db = await createTestDatabase("cli_status");
});

afterAll(async () => {
  await db?.drop();
});

describe("seqload status", () => {
  it("shows a loaded table: rows, live and deleted rows, max sequence, batches, last load; --json with every digit", async () => {
    const none = await runCli(["status", "--database-url", db.url]);
    expect(none.code).toBe(0);
    expect(none.stdout).toContain("(0 rows)");

    const load = await runCli(["load", path.join(EXAMPLES, "orders.jsonl"), "--schema", "shop", "--database-url", db.url]);
    expect(load.code).toBe(0);

    const text = await runCli(["status", "--schema", "shop", "--database-url", db.url]);
    expect(text.stderr).toBe("");
    expect(text.code).toBe(0);
    const lines = text.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ table\s+\| key\s+\| rows \| live \| deleted \| max_sequence +\| batches \| last_loaded_at/);
    expect(lines[2]).toMatch(/^ orders \| order_id \|\s+4 \|\s+3 \|\s+1 \| 1795465705836066521 \|\s+4 \| 20\d\d-\d\d-\d\dT/);
    expect(lines[3]).toBe("(1 row)");

    const json = await runCli(["status", "orders", "--json", "--schema", "shop", "--database-url", db.url]);
    expect(json.code).toBe(0);
    expect(json.stdout).toContain('"max_sequence":1795465705836066521,'); // a bare JSON number, not rounded
    const [row] = jsonLines(json.stdout);
    expect({ ...row, last_loaded_at: null }).toEqual({
      table: "orders",
      key_names: ["order_id"],
      rows: 4,
      live: 3,
      deleted: 1,
      max_sequence: Number("1795465705836066521"), // (JSON.parse rounds it; the text above is exact)
      batches: 4,
      last_loaded_at: null,
    });
    expect(Date.parse(row?.last_loaded_at as string)).toBeGreaterThan(Date.now() - 120_000);

    const missing = await runCli(["status", "nope", "--schema", "shop", "--database-url", db.url]);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toBe("");
    expect(missing.stderr).toContain('table "nope" in schema "shop": seqload has loaded no such table');
  });
});

describe("seqload --help", () => {
  it("lists singer, status and sequence with examples", async () => {
    const r = await runCli(["--help"]);
    expect(r.code).toBe(0);
    for (const cmd of ["singer", "status", "sequence"]) expect(r.stdout).toMatch(new RegExp(`^  ${cmd} `, "m"));
    expect(r.stdout).toContain("$ seqload status");
    const status = await runCli(["status", "--help"]);
    expect(status.stdout).toContain("$ seqload status customers --schema staging");
    const sequence = await runCli(["sequence", "--help"]);
    expect(sequence.stdout).toContain("16 digits of microseconds since 1970-01-01 UTC");
  });
});

describe("seqload sequence", () => {
  it("prints one 19-digit value; --source sets the last three digits; values of successive runs increase", async () => {
    const a = await runCli(["sequence"]);
    const b = await runCli(["sequence", "--source", "7"]);
    expect(a.code).toBe(0);
    expect(a.stderr).toBe("");
    expect(a.stdout).toMatch(/^[1-9]\d{15}000\n$/);
    expect(b.stdout).toMatch(/^[1-9]\d{15}007\n$/);
    expect(BigInt(b.stdout.trim())).toBeGreaterThan(BigInt(a.stdout.trim()));
    const micros = BigInt(a.stdout.trim()) / 1000n;
    expect(Math.abs(Number(micros / 1000n) - Date.now())).toBeLessThan(120_000);
    const bad = await runCli(["sequence", "--source", "1000"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("--source must be an integer from 0 to 999");
  });
});
