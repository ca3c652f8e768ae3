// `seqload serve --tls-cert FILE --tls-key FILE` as a subprocess: a real HTTPS client that checks
// the certificate (made in the test, self-signed for 127.0.0.1) loads a batch; the limit flags are
// checked at startup.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { generate } from "selfsigned";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase, withClient } from "./helpers/db.js";
import { assertBuilt, batch, CLI, cleanEnv, ROOT, runCli } from "./fixtures/cli/run.js";

const TOKEN = "tls-token-0123456789abcdef0123";
let db: TestDatabase;
let dir: string;
let cert: string;

beforeAll(async () => {
  assertBuilt();
  db = await createTestDatabase("cli_serve_tls");
  dir = await mkdtemp(path.join(os.tmpdir(), "seqload-tls-"));
  const pems = await generate([{ name: "commonName", value: "127.0.0.1" }], {
    keySize: 2048,
    algorithm: "sha256",
    extensions: [{ name: "subjectAltName", altNames: [{ type: 7, ip: "127.0.0.1" }] }],
  });
  cert = pems.cert;
  await writeFile(path.join(dir, "cert.pem"), pems.cert);
  await writeFile(path.join(dir, "key.pem"), pems.private, { mode: 0o600 });
});

afterAll(async () => {
  await db?.drop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

function serve(args: string[]): Promise<{ child: ChildProcess; url: string; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [CLI, "serve", "--port", "0", "--database-url", db.url, "--token", TOKEN, ...args], {
    cwd: ROOT,
    env: cleanEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    child.stderr?.setEncoding("utf8").on("data", (s: string) => {
      stderr += s;
      const m = /serving the Import API at (\S+?),/.exec(stderr);
      if (m?.[1]) resolve({ child, url: m[1], exited });
    });
    void exited.then((code) => reject(new Error(`serve exited with ${code}:\n${stderr}`)));
  });
}

/** An HTTPS request that trusts only `ca` (so the certificate and its name are really checked). */
function httpsRequest(url: string, opts: { method: string; body?: string; ca?: string }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: opts.method,
        ...(opts.ca === undefined ? {} : { ca: opts.ca }),
        headers: opts.body === undefined ? {} : { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (d: string) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}

describe("seqload serve over TLS", () => {
  it("--tls-cert/--tls-key: an HTTPS client that verifies the self-signed certificate loads a batch", async () => {
    const s = await serve(["--tls-cert", path.join(dir, "cert.pem"), "--tls-key", path.join(dir, "key.pem")]);
    try {
      expect(s.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const status = await httpsRequest(`${s.url}/v2/import/status`, { method: "GET", ca: cert });
      expect(status.status).toBe(200);
      const a = await httpsRequest(`${s.url}/v2/import/batch`, {
        method: "POST",
        body: batch("over_tls", [{ seq: 1, id: 1, v: "secure" }]),
        ca: cert,
      });
      expect([a.status, JSON.parse(a.body)]).toEqual([201, { status: "OK", message: "Batch Accepted!" }]);
      // Without the certificate as a trust anchor the client refuses it: it is really TLS, really checked.
      await expect(httpsRequest(`${s.url}/v2/import/status`, { method: "GET" })).rejects.toThrow(/self[- ]signed/i);
      // Plain HTTP on the TLS port gets no Import API answer.
      const plain = await fetch(s.url.replace("https:", "http:") + "/v2/import/status").then(
        (r) => r.status,
        () => "refused",
      );
      expect(plain).not.toBe(200);
    } finally {
      s.child.kill("SIGTERM");
    }
    expect(await s.exited).toBe(0);
    const rows = await withClient(db.url, async (c) => (await c.query("select id::int, v from over_tls")).rows);
    expect(rows).toEqual([{ id: 1, v: "secure" }]);
  });

  it("refuses bad limit and TLS flags at startup (exit 1), naming the flag", async () => {
    const base = ["serve", "--port", "0", "--database-url", db.url, "--token", TOKEN];
    const cases: [string[], string][] = [
      [["--body-timeout", "0"], '--body-timeout must be a positive number, got "0"'],
      [["--max-in-flight", "2.5"], '--max-in-flight must be a positive integer, got "2.5"'],
      [["--max-memory-mb", "lots"], '--max-memory-mb must be a positive number, got "lots"'],
      [["--tls-cert", path.join(dir, "cert.pem")], "--tls-cert and --tls-key go together: pass both"],
      [["--tls-cert", path.join(dir, "nope.pem"), "--tls-key", path.join(dir, "key.pem")], "cannot read --tls-cert"],
      [["--tls-cert", path.join(dir, "key.pem"), "--tls-key", path.join(dir, "cert.pem")], "the TLS certificate and key cannot be used"],
    ];
    for (const [flags, message] of cases) {
      const r = await runCli([...base, ...flags]);
      expect([r.code, r.stderr]).toEqual([1, expect.stringContaining(message)]);
    }
  });
});
