// `seqload serve` as a subprocess: flags and SEQLOAD_TOKENS become startServer's options, the
// server answers, and SIGTERM stops it cleanly. The HTTP API itself is tested in serve.test.ts.
import { type ChildProcess, spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase, withClient } from "./helpers/db.js";
import { assertBuilt, batch, CLI, cleanEnv, ROOT, runCli } from "./fixtures/cli/run.js";

let db: TestDatabase;
// src/serve.ts is built separately from the CLI; until it is part of the build, only the flag checks run.
const TOKEN_FLAG = "flag-token-0123456789abcdef";
const TOKEN_ENV = "env-token-0123456789abcdef";

beforeAll(async () => {
  assertBuilt();
  db = await createTestDatabase("cli_serve");
});

afterAll(async () => {
  await db?.drop();
});

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

const post = (url: string, body: string, token?: string) =>
  fetch(`${url}/v2/import/batch`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
    body,
  });

describe("seqload serve", () => {
  it("refuses to start without a token unless --insecure-no-auth (exit 1)", async () => {
    const r = await runCli(["serve", "--port", "0", "--database-url", db.url]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("no API token configured: pass --token TOKEN (repeatable) or set SEQLOAD_TOKENS");
    const badPort = await runCli(["serve", "--port", "eighty", "--insecure-no-auth", "--database-url", db.url]);
    expect(badPort.code).toBe(1);
    expect(badPort.stderr).toContain("--port must be a number from 0 to 65535");
  });

  it("accepts --token and SEQLOAD_TOKENS, loads into --schema, and stops on SIGTERM with exit 0", async () => {
    const s = await serve(["--token", TOKEN_FLAG, "--schema", "served", "--host", "127.0.0.1"], { SEQLOAD_TOKENS: `${TOKEN_ENV}, ` });
    try {
      expect(s.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect((await fetch(`${s.url}/v2/import/status`)).status).toBe(200);
      expect((await post(s.url, batch("via_http", [{ seq: 1, id: 1, v: "flag" }]), TOKEN_FLAG)).status).toBe(201);
      expect((await post(s.url, batch("via_http", [{ seq: 2, id: 2, v: "env" }]), TOKEN_ENV)).status).toBe(201);
      expect((await post(s.url, batch("via_http", [{ seq: 3, id: 3, v: "nope" }]), "wrong-token-0123456789")).status).toBe(401);
      expect((await post(s.url, batch("via_http", [{ seq: 3, id: 3, v: "nope" }]))).status).toBe(401);
    } finally {
      s.child.kill("SIGTERM");
    }
    expect(await s.exited).toBe(0);
    const rows = await withClient(db.url, async (c) => (await c.query("select id::int, v from served.via_http order by id")).rows);
    expect(rows).toEqual([
      { id: 1, v: "flag" },
      { id: 2, v: "env" },
    ]);
  });

  it("--insecure-no-auth serves without a token", async () => {
    const s = await serve(["--insecure-no-auth"]);
    try {
      expect((await post(s.url, batch("open_http", [{ seq: 1, id: 1, v: "x" }]))).status).toBe(201);
    } finally {
      s.child.kill("SIGINT");
    }
    expect(await s.exited).toBe(0);
  });
});
