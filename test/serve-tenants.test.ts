// `seqload serve` for many tenants: tokens from a private file (plain or sha256: entries), reread
// without a restart (added, removed, a bad file refused), 1,000 schema-bound tokens on one pool,
// and no token in any log line or response. The CLI side (SIGHUP, `token new`) is in
// cli-serve-tokens.test.ts.
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLoader } from "../src/loader.js";
import { type RunningServer, type ServeOptions, startServer } from "../src/serve.js";
import { post, transcript, waitFor } from "./fixtures/serve/http.js";
import { type TestDatabase, createTestDatabase, withClient } from "./helpers/db.js";

let db: TestDatabase;
let dir: string;
const logs: string[] = [];
const servers: RunningServer[] = [];
/** Every token this file makes: none may ever show up in a log line or a response. */
const secrets: string[] = [];

const token = (): string => {
  const t = randomBytes(24).toString("hex");
  secrets.push(t);
  return t;
};
const sha = (t: string) => createHash("sha256").update(t).digest("hex");

beforeAll(async () => {
  db = await createTestDatabase("serve_tenants");
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "seqload-tokens-"));
});

afterAll(async () => {
  for (const s of servers) await s.close().catch(() => {});
  await db?.drop();
  fs.rmSync(dir, { recursive: true, force: true });
});

let fileCount = 0;
/** A tokens file with these lines and mode (default 0600). */
function tokensFile(lines: string[], mode = 0o600): string {
  const file = path.join(dir, `tokens-${++fileCount}`);
  fs.writeFileSync(file, `${lines.join("\n")}\n`, { mode });
  fs.chmodSync(file, mode); // the umask may have cut the bits asked for
  return file;
}

/** Replace a tokens file's contents the way an editor or `mv` does: write aside, rename over it. */
function rewrite(file: string, lines: string[]): void {
  const aside = `${file}.new`;
  fs.writeFileSync(aside, `${lines.join("\n")}\n`, { mode: 0o600 });
  fs.renameSync(aside, file);
}

async function serve(overrides: Partial<ServeOptions> = {}): Promise<RunningServer> {
  const s = await startServer({
    loaderOptions: { connectionString: db.url },
    port: 0,
    host: "127.0.0.1",
    tokens: [],
    insecureNoAuth: false,
    watchTokensFile: false,
    log: (line) => logs.push(line),
    ...overrides,
  });
  servers.push(s);
  return s;
}

const q = <R extends pg.QueryResultRow = Record<string, unknown>>(text: string, params: unknown[] = []): Promise<R[]> =>
  withClient(db.url, async (c) => (await c.query<R>(text, params)).rows);

const batch = (table: string, id: number, sequence: number, name = "x") => ({
  table_name: table,
  key_names: ["id"],
  schema: { properties: { id: { type: "integer" }, name: { type: ["null", "string"] } } },
  messages: [{ action: "upsert", sequence, data: { id, name } }],
});

const status = async (url: string, t: string, table = "t", sequence = 1): Promise<number> =>
  (await post(url, "/v2/import/batch", batch(table, 1, sequence), { token: t })).status;

const lastLog = (event: string): Record<string, unknown> | undefined =>
  logs
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.event === event)
    .at(-1);

describe("--tokens-file", () => {
  it("refuses a file that group or others can read or write, saying how to fix it; 0600 and 0400 are accepted", async () => {
    const t = token();
    for (const mode of [0o644, 0o640, 0o604, 0o620, 0o602, 0o660]) {
      const file = tokensFile([t], mode);
      await expect(serve({ tokensFile: file })).rejects.toThrow(
        `the tokens file ${file} has mode 0${mode.toString(8)}: group or others can read or write it, and it holds secrets; make it private with: chmod 600 ${file}`,
      );
    }
    for (const mode of [0o600, 0o400]) {
      const s = await serve({ tokensFile: tokensFile([t], mode) });
      expect(await status(s.url, t, "perm_ok")).toBe(201);
    }
    await expect(serve({ tokensFile: path.join(dir, "missing") })).rejects.toThrow(
      `cannot read the tokens file ${path.join(dir, "missing")}: no such file`,
    );
    await expect(serve({ tokensFile: tokensFile(["# only a comment", ""]) })).rejects.toThrow("lists none");
  });

  it("reads plain and sha256: entries, bound or not, with # comments and blank lines", async () => {
    const plain = token();
    const hashed = token();
    const hashedBound = token();
    const plainBound = token();
    const file = tokensFile([
      "# tenants of this server",
      "",
      plain,
      `sha256:${sha(hashed)}   # inline comment after a blank`,
      `  sha256:${sha(hashedBound).toUpperCase()}@tenant_hashed  `,
      `${plainBound}@tenant_plain`,
    ]);
    const s = await serve({ tokensFile: file });
    expect(await status(s.url, plain, "entries", 1)).toBe(201);
    expect(await status(s.url, hashed, "entries", 2)).toBe(201);
    expect(await status(s.url, hashedBound, "entries", 3)).toBe(201);
    expect(await status(s.url, plainBound, "entries", 4)).toBe(201);
    expect(await q("select _sequence::int as s from public.entries")).toEqual([{ s: 2 }]);
    expect(await q("select _sequence::int as s from tenant_hashed.entries")).toEqual([{ s: 3 }]);
    expect(await q("select _sequence::int as s from tenant_plain.entries")).toEqual([{ s: 4 }]);
    // The entry is not the token: presenting the file's line, or the digest, is refused.
    expect(await status(s.url, `sha256:${sha(hashed)}`, "entries")).toBe(401);
    expect(await status(s.url, sha(hashed), "entries")).toBe(401);
    expect(await status(s.url, `${plainBound}@tenant_plain`, "entries")).toBe(401);
    expect(lastLog("listening")).toMatchObject({ tokens: 4, tokensFile: file, boundSchemas: 2, maxSchemasCached: 256 });
  });

  it("names a bad line by its number, never by its text", async () => {
    const t = token();
    const cases: [string[], string][] = [
      [[`${t}@`], 'line 1 of FILE ends with "@" but names no schema'],
      [["# c", `sha256:${t.slice(0, 40)}`], 'line 2 of FILE starts with "sha256:" but is not followed by 64 hex digits'],
      [[`${t}@a`, `${t}@b`], "line 2 of FILE repeats an earlier token with a different schema"],
      [[`${t}@${"s".repeat(64)}`], "line 1 of FILE: schema"],
    ];
    for (const [lines, message] of cases) {
      const file = tokensFile(lines);
      const error = await serve({ tokensFile: file }).then(
        () => "started",
        (e: Error) => e.message,
      );
      expect(error).toContain(message.replace("FILE", file));
      expect(error).not.toContain(t);
    }
  });
});

describe("reloading the tokens file", () => {
  it("adds and removes tokens without a restart; a bad file is refused, logged, and the old set stays", async () => {
    const a = token();
    const b = token();
    const c = token();
    const file = tokensFile([a]);
    const s = await serve({ tokensFile: file });
    expect(await status(s.url, a, "reload")).toBe(201);
    expect(await status(s.url, b, "reload")).toBe(401);

    rewrite(file, [a, `${b}@tenant_reload`]);
    expect(s.reloadTokens("test")).toEqual({ ok: true, tokens: 2, added: 1, removed: 0 });
    expect(await status(s.url, b, "reload")).toBe(201);
    expect(await q("select count(*)::int as n from tenant_reload.reload")).toEqual([{ n: 1 }]);
    expect(lastLog("tokens-reloaded")).toMatchObject({ reason: "test", file, tokens: 2, added: 1, removed: 0, boundSchemas: 1 });

    rewrite(file, [`sha256:${sha(b)}@tenant_reload`, c]); // a removed; b now as its digest
    expect(s.reloadTokens()).toMatchObject({ ok: true, tokens: 2, added: 1, removed: 1 });
    expect(await status(s.url, a, "reload")).toBe(401);
    expect(await status(s.url, b, "reload", 2)).toBe(201);
    expect(await status(s.url, c, "reload", 3)).toBe(201);

    // Bad files: a bad line, group-readable, gone, empty. Each is refused and logged; b and c stay.
    const bad: [() => void, string][] = [
      [() => rewrite(file, [c, `${a}@`]), `line 2 of ${file} ends with "@"`],
      [() => fs.chmodSync(file, 0o644), "chmod 600"],
      [() => fs.rmSync(file), "no such file"],
      [() => rewrite(file, ["# nothing"]), `the tokens file ${file} lists no token`],
    ];
    for (const [spoil, message] of bad) {
      spoil();
      const r = s.reloadTokens();
      expect(r).toMatchObject({ ok: false, tokens: 2, added: 0, removed: 0 });
      expect(r.error).toContain(message);
      expect(lastLog("tokens-reload-failed")).toMatchObject({ file, kept: 2 });
      expect(lastLog("tokens-reload-failed")?.error).toContain(message);
      expect(await status(s.url, b, "reload", 10)).toBe(201);
      expect(await status(s.url, c, "reload", 11)).toBe(201);
      expect(await status(s.url, a, "reload", 12)).toBe(401);
    }
  });

  it("rereads the file when it changes on disk, without a signal", async () => {
    const a = token();
    const b = token();
    const file = tokensFile([a]);
    const s = await serve({ tokensFile: file, watchTokensFile: true });
    rewrite(file, [b]);
    await waitFor("the new token to be accepted", async () => (await status(s.url, b, "watched")) === 201);
    expect(await status(s.url, a, "watched")).toBe(401);
    expect(lastLog("tokens-reloaded")).toMatchObject({ reason: "file changed", file, tokens: 1, added: 1, removed: 1 });
  });

  it("a batch in flight when its token is removed still commits; the next request is refused", async () => {
    const a = token();
    const keep = token();
    const file = tokensFile([a, keep]);
    const s = await serve({ tokensFile: file });
    expect(await status(s.url, a, "inflight")).toBe(201);
    const lock = new pg.Client({ connectionString: db.url });
    await lock.connect();
    await lock.query("BEGIN");
    await lock.query("LOCK TABLE public.inflight IN ACCESS EXCLUSIVE MODE");
    const pending = post(s.url, "/v2/import/batch", batch("inflight", 2, 5), { token: a });
    await waitFor("the batch to wait on the lock", async () => {
      const r = await q<{ n: number }>(
        "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
      );
      return (r[0]?.n ?? 0) > 0;
    });
    rewrite(file, [keep]);
    expect(s.reloadTokens()).toMatchObject({ ok: true, removed: 1 });
    await lock.query("COMMIT");
    await lock.end();
    expect((await pending).status).toBe(201);
    expect(await q("select id::int as id from public.inflight order by id")).toEqual([{ id: 1 }, { id: 2 }]);
    expect(await status(s.url, a, "inflight", 6)).toBe(401);
  });

  it("rotation under load: 20 rereads while a client posts; every batch of the kept token is accepted", async () => {
    const keep = token();
    const file = tokensFile([keep]);
    const s = await serve({ tokensFile: file });
    let stop = false;
    const answers: number[] = [];
    const client = (async () => {
      for (let seq = 1; !stop; seq++) answers.push(await status(s.url, keep, "rotation", seq));
    })();
    // At least 20 rereads, and on until the client has had 6 answers: on a slower server (a Citus
    // coordinator distributes the new table first) 20 rereads can be over before the 6th batch.
    for (let i = 0; i < 20 || answers.length <= 5; i++) {
      rewrite(file, [keep, `${token()}@tenant_rot_${i % 3}`, "# rotated"]);
      expect(s.reloadTokens()).toMatchObject({ ok: true, tokens: 2 });
      await new Promise((r) => setTimeout(r, 10));
    }
    stop = true;
    await client;
    expect(answers.length).toBeGreaterThan(5);
    expect(answers.filter((a) => a !== 201)).toEqual([]);
  });
});

describe("one pool, one listener", () => {
  it("20 loaders on one shared pool add a single 'error' listener and no MaxListenersExceededWarning", async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on("warning", onWarning);
    const pool = new pg.Pool({ connectionString: db.url, max: 2 });
    try {
      for (let i = 0; i < 20; i++) await createLoader({ pool, schema: `listener_${i}` });
      await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
      expect(pool.listenerCount("error")).toBe(1);
      expect(warnings).toEqual([]);
    } finally {
      process.off("warning", onWarning);
      await pool.end();
    }
  });
});

describe("1,000 tenants", () => {
  it("1,000 schema-bound tokens, one batch each, on one pool: no listener warning, per-schema loaders bounded by the LRU", async () => {
    const TENANTS = 1000;
    const CACHED = 100;
    const tenants = Array.from({ length: TENANTS }, (_, i) => ({ token: token(), schema: `tenant_${String(i).padStart(4, "0")}` }));
    const file = tokensFile(tenants.map((t) => `sha256:${sha(t.token)}@${t.schema}`));
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on("warning", onWarning);
    const pool = new pg.Pool({ connectionString: db.url, max: 4 });
    try {
      const t0 = performance.now();
      const s = await serve({ tokensFile: file, loaderOptions: { pool }, maxSchemasCached: CACHED });
      const startupMs = performance.now() - t0;
      const t1 = performance.now();
      const statuses: number[] = [];
      let next = 0;
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          while (next < TENANTS) {
            const t = tenants[next++] as { token: string; schema: string };
            statuses.push((await post(s.url, "/v2/import/batch", batch("events", 1, 1, t.schema), { token: t.token })).status);
          }
        }),
      );
      const loadMs = performance.now() - t1;
      // Every tenant's rows are in its own schema, and its own rows in seqload.loads name it.
      expect(statuses.filter((x) => x !== 201)).toEqual([]);
      const perSchema = await q<{ n: number }>(
        "select count(distinct schema_name)::int as n from seqload.loads where schema_name like 'tenant\\_____' and table_name = 'events'",
      );
      expect(perSchema).toEqual([{ n: TENANTS }]);
      const last = tenants[TENANTS - 1] as { schema: string };
      expect(await q(`select name from ${pg.escapeIdentifier(last.schema)}.events`)).toEqual([{ name: last.schema }]);
      expect(s.tenants).toEqual({ cached: CACHED, created: TENANTS });
      expect(pool.listenerCount("error")).toBe(1);
      expect(warnings).toEqual([]);
      // Evicted tenants load again, through a fresh loader.
      const first = tenants[0] as { token: string; schema: string };
      expect((await post(s.url, "/v2/import/batch", batch("events", 1, 2, "again"), { token: first.token })).status).toBe(201);
      expect(await q(`select name from ${pg.escapeIdentifier(first.schema)}.events`)).toEqual([{ name: "again" }]);
      // Prepared statements of the small-batch path, per pooled connection (a server-side cost per tenant table).
      const prepared = await Promise.all(
        Array.from({ length: 4 }, async () => {
          const c = await pool.connect();
          return c;
        }),
      ).then(async (clients) => {
        const counts = await Promise.all(
          clients.map(async (c) => {
            const r = await c.query<{ n: number; mib: string }>(
              "select (select count(*)::int from pg_prepared_statements) as n, (select round(sum(total_bytes) / 1048576.0, 1)::text from pg_backend_memory_contexts) as mib",
            );
            return `${r.rows[0]?.n} (backend ${r.rows[0]?.mib} MiB)`;
          }),
        );
        for (const c of clients) c.release();
        return counts;
      });
      const heapMiB = process.memoryUsage().heapUsed / 2 ** 20;
      console.log(
        `1,000 tenants: startup with a 1,000-entry tokens file ${startupMs.toFixed(0)} ms; ` +
          `1,000 first batches (schema and table created) ${loadMs.toFixed(0)} ms with 4 clients; ` +
          `heap ${heapMiB.toFixed(0)} MiB, rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB; ` +
          `${s.tenants.cached} loaders cached (--max-schemas-cached ${CACHED}); ` +
          `prepared statements per pooled connection: ${prepared.join(", ")}`,
      );
    } finally {
      process.off("warning", onWarning);
      await pool.end();
    }
  }, 180_000);
});

describe("secrets", () => {
  it("never shows a token in a log line or a response (checked over everything above)", () => {
    expect(logs.length).toBeGreaterThan(1000);
    for (const line of logs) expect(() => JSON.parse(line)).not.toThrow();
    const texts = [...logs, ...transcript];
    for (const secret of secrets) {
      for (const text of texts) if (text.includes(secret)) throw new Error(`a token appears in: ${text.slice(0, 200)}`);
    }
  });
});
