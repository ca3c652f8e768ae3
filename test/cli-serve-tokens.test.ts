// The secure way to run `seqload serve`, as a user runs it: tokens made by `seqload token new`,
// kept in a private --tokens-file (so no token is in the argument list), rotated with SIGHUP; and
// the database password from PGPASSWORD / PGPASSFILE instead of the URL.
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase } from "../src/cli/database.js";
import { type TestDatabase, createTestDatabase, withClient } from "./helpers/db.js";
import { CLI, ROOT, assertBuilt, batch, cleanEnv, runCli } from "./fixtures/cli/run.js";

let db: TestDatabase;
let dir: string;

beforeAll(async () => {
  assertBuilt();
  db = await createTestDatabase("cli_tokens");
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "seqload-cli-tokens-"));
});

afterAll(async () => {
  await db?.drop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const sha = (t: string) => createHash("sha256").update(t).digest("hex");

interface Served {
  child: ChildProcess;
  url: string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Starts `seqload serve …` and resolves with its URL once it says it is serving. */
function serve(args: string[], env: Record<string, string | undefined> = {}): Promise<Served> {
  const child = spawn(process.execPath, [CLI, "serve", "--port", "0", "--database-url", db.url, ...args], {
    cwd: ROOT,
    env: cleanEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`serve did not start:\n${stderr}`));
    }, 30_000);
    child.stderr?.setEncoding("utf8").on("data", (s: string) => {
      stderr += s;
      const m = /serving the Import API at (\S+?),/.exec(stderr);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve({ child, url: m[1], stderr: () => stderr, exited });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code}:\n${stderr}`));
    });
  });
}

const post = async (url: string, body: string, token: string): Promise<number> =>
  (
    await fetch(`${url}/v2/import/batch`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body,
    })
  ).status;

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function newToken(schema?: string): Promise<{ token: string; entry: string }> {
  const r = await runCli(["token", "new", ...(schema === undefined ? [] : ["--schema", schema])]);
  expect(r.code).toBe(0);
  const [token, entry, ...rest] = r.stdout.split("\n");
  expect(rest).toEqual([""]);
  return { token: token as string, entry: entry as string };
}

function privateFile(name: string, text: string, mode = 0o600): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  fs.chmodSync(file, mode);
  return file;
}

describe("seqload token", () => {
  it("new prints a random token and its sha256: entry; hash reads a token from stdin", async () => {
    const a = await newToken("acme");
    const b = await newToken();
    expect(a.token).toMatch(/^[0-9a-f]{48}$/);
    expect(a.entry).toBe(`sha256:${sha(a.token)}@acme`);
    expect(b.entry).toBe(`sha256:${sha(b.token)}`);
    expect(b.token).not.toBe(a.token);
    const hashed = await runCli(["token", "hash", "--schema", "acme"], { input: `${a.token}\n` });
    expect([hashed.code, hashed.stdout]).toEqual([0, `${a.entry}\n`]);
    const bad = await runCli(["token", "new", "--schema", "s".repeat(64)]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("is 64 bytes long");
  });
});

describe("seqload serve --tokens-file", () => {
  it("refuses a file others can read, with the chmod that fixes it (exit 1)", async () => {
    const { entry } = await newToken();
    const file = privateFile("open-tokens", `${entry}\n`, 0o644);
    const r = await runCli(["serve", "--port", "0", "--database-url", db.url, "--tokens-file", file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`make it private with: chmod 600 ${file}`);
  });

  it("serves tokens that are in no argument list; SIGHUP adds and removes tokens without a restart", async () => {
    const a = await newToken("tenant_a");
    const b = await newToken("tenant_b");
    const file = privateFile("tokens", `# seqload tokens\n${a.entry}\n`);
    const s = await serve(["--tokens-file", file, "--max-schemas-cached", "1"]);
    try {
      const cmdline = fs.readFileSync(`/proc/${s.child.pid}/cmdline`, "utf8");
      expect(cmdline).toContain("--tokens-file");
      expect(cmdline).not.toContain(a.token);
      expect(await post(s.url, batch("t", [{ seq: 1, id: 1, v: "a" }]), a.token)).toBe(201);
      expect(await post(s.url, batch("t", [{ seq: 1, id: 1, v: "b" }]), b.token)).toBe(401);

      fs.writeFileSync(file, `${b.entry}\n`); // a removed, b added
      s.child.kill("SIGHUP");
      await until("b accepted", async () => (await post(s.url, batch("t", [{ seq: 2, id: 1, v: "b" }]), b.token)) === 201);
      expect(await post(s.url, batch("t", [{ seq: 3, id: 1, v: "a" }]), a.token)).toBe(401);
      await until("the reload logged", () => /"event":"tokens-reloaded"/.test(s.stderr()));
      const reloads = s
        .stderr()
        .split("\n")
        .filter((l) => l.includes('"tokens-reloaded"'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(reloads[0]).toMatchObject({ file, tokens: 1, added: 1, removed: 1 });

      // A bad file: refused, logged, b still in force, and the server still up.
      fs.writeFileSync(file, `${b.entry}\nsha256:nothex\n`);
      s.child.kill("SIGHUP");
      await until("the refusal logged", () => /"event":"tokens-reload-failed"/.test(s.stderr()));
      expect(s.stderr()).toContain(`line 2 of ${file} starts with \\"sha256:\\" but is not followed by 64 hex digits`);
      expect(await post(s.url, batch("t", [{ seq: 4, id: 1, v: "b" }]), b.token)).toBe(201);
    } finally {
      s.child.kill("SIGTERM");
    }
    expect(await s.exited).toBe(0);
    expect(s.stderr()).not.toContain("warning: --token");
    expect(s.stderr()).toContain('"maxSchemasCached":1');
    expect(s.stderr()).not.toContain(a.token);
    expect(s.stderr()).not.toContain(b.token);
    const rows = await withClient(db.url, async (c) => ({
      a: (await c.query("select v from tenant_a.t")).rows,
      b: (await c.query("select v, _sequence::int as s from tenant_b.t")).rows,
    }));
    expect(rows).toEqual({ a: [{ v: "a" }], b: [{ v: "b", s: 4 }] });
  });

  it("--token still works, with a warning that other local users can read it", async () => {
    const { token } = await newToken();
    const s = await serve(["--token", token]);
    try {
      expect(await post(s.url, batch("flag", [{ seq: 1, id: 1, v: "x" }]), token)).toBe(201);
    } finally {
      s.child.kill("SIGTERM");
    }
    expect(await s.exited).toBe(0);
    expect(s.stderr()).toContain("warning: --token puts the token in the argument list, which other local users can read");
    // db.url holds the test server's password.
    expect(s.stderr()).toContain("warning: --database-url holds a password, which other local users can read");
  });
});

describe("the database password outside the argument list", () => {
  const parts = () => new URL(db.url);
  const noPassword = () => {
    const u = parts();
    u.password = "";
    return u.toString();
  };
  const select = (args: string[], env: Record<string, string | undefined>) =>
    runCli(["query", "select current_database() as db", "--json", ...args], {
      env: { PGPASSWORD: undefined, PGPASSFILE: path.join(dir, "no-pgpass"), ...env },
    });

  it("a URL without a password takes PGPASSWORD, else the password file (PGPASSFILE)", async () => {
    const u = parts();
    expect(u.password).not.toBe(""); // the test server asks for a password (scram-sha-256)
    const withEnv = await select(["--database-url", noPassword()], { PGPASSWORD: decodeURIComponent(u.password) });
    expect([withEnv.code, withEnv.stdout]).toEqual([0, `{"db":"${db.name}"}\n`]);

    const without = await select(["--database-url", noPassword()], {});
    expect(without.code).toBe(1);
    expect(without.stderr).toContain("Check: the server wants a password and none was found: put it in the URL, or (keeping it out");

    const pgpass = privateFile(
      "pgpass",
      `${u.hostname}:${u.port || "5432"}:*:${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}\n`,
    );
    const withFile = await select(["--database-url", noPassword()], { PGPASSFILE: pgpass });
    expect([withFile.code, withFile.stdout]).toEqual([0, `{"db":"${db.name}"}\n`]);
    expect(withFile.stderr).not.toContain("deprecat");
  });

  it("a URL without a host takes PGHOST, PGPORT, PGUSER too (postgres:///DB), with the password file", async () => {
    const u = parts();
    const pgpass = privateFile(
      "pgpass-env",
      `${u.hostname}:${u.port || "5432"}:${db.name}:${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}\n`,
    );
    const env = { PGHOST: u.hostname, PGPORT: u.port || "5432", PGUSER: decodeURIComponent(u.username), PGPASSFILE: pgpass };
    const r = await select(["--database-url", `postgres:///${db.name}`], env);
    expect([r.code, r.stdout, r.stderr]).toEqual([0, `{"db":"${db.name}"}\n`, ""]);
    const fromEnv = await select([], { ...env, DATABASE_URL: `postgres:///${db.name}` });
    expect([fromEnv.code, fromEnv.stdout, fromEnv.stderr]).toEqual([0, `{"db":"${db.name}"}\n`, ""]);
  });
});

describe("serve's pool", () => {
  it("replaces a connection after maxUses checkouts (what bounds the prepared statements each connection keeps)", async () => {
    const db1 = await openDatabase({ databaseUrl: db.url, log: () => {}, poolSize: 1, maxUses: 3 });
    try {
      const pids: number[] = [];
      for (let i = 0; i < 9; i++) pids.push((await db1.pool.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0]?.pid ?? 0);
      // The first use is openDatabase's own ping: connections serve uses 1–3, 4–6, 7–9, 10.
      expect(new Set(pids).size).toBe(4);
    } finally {
      await db1.close();
    }
  });
});
