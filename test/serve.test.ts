// `seqload serve` end to end: a real HTTP client against a started server on 127.0.0.1, rows
// asserted in PostgreSQL. Stitch's status codes and bodies come from
// reference/stitch-import-api.md §1.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServeOptions, startServer } from "../src/serve.js";
import { post, postWithRetry, request, streamUpload, transcript, waitFor } from "./fixtures/serve/http.js";
import { type TestDatabase, createTestDatabase, withClient } from "./helpers/db.js";

const TOKEN = `tok_${randomBytes(16).toString("hex")}`;
const ALPHA = `a_${randomBytes(12).toString("hex")}`; // bound to schema tenant_alpha
const BETA = `b_${randomBytes(12).toString("hex")}`; // bound to schema tenant_beta
// A byte-for-byte copy of reference/target-stitch-request.json (a body target-stitch 4.0.4 posted).
const TARGET_STITCH_BODY = readFileSync(new URL("./fixtures/serve/target-stitch-request.json", import.meta.url), "utf8");
const VERSION = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;
const MiB = 1024 * 1024;

let db: TestDatabase;
const logs: string[] = [];
const servers: { close(): Promise<void> }[] = [];
const written: string[] = []; // everything the process printed while the suite ran
const realWrite = { out: process.stdout.write.bind(process.stdout), err: process.stderr.write.bind(process.stderr) };

beforeAll(async () => {
  db = await createTestDatabase("serve");
  process.stdout.write = (chunk: string | Uint8Array, ...rest: never[]) => {
    written.push(String(chunk));
    return realWrite.out(chunk, ...rest);
  };
  process.stderr.write = (chunk: string | Uint8Array, ...rest: never[]) => {
    written.push(String(chunk));
    return realWrite.err(chunk, ...rest);
  };
});

afterAll(async () => {
  process.stdout.write = realWrite.out;
  process.stderr.write = realWrite.err;
  for (const s of servers) await s.close().catch(() => {});
  await db?.drop();
});

async function serve(overrides: Partial<ServeOptions> = {}): Promise<{ url: string; close(): Promise<void> }> {
  const s = await startServer({
    loaderOptions: { connectionString: db.url },
    port: 0,
    host: "127.0.0.1",
    tokens: [TOKEN],
    insecureNoAuth: false,
    log: (line) => logs.push(line),
    ...overrides,
  });
  servers.push(s);
  return s;
}

const q = <R extends pg.QueryResultRow = Record<string, unknown>>(text: string, params: unknown[] = []): Promise<R[]> =>
  withClient(db.url, async (c) => (await c.query<R>(text, params)).rows);

const schema = { properties: { id: { type: "integer" }, name: { type: ["null", "string"] } } };
const batch = (table: string, messages: unknown[], extra: Record<string, unknown> = {}) => ({
  table_name: table,
  key_names: ["id"],
  schema,
  messages,
  ...extra,
});
const up = (id: number, sequence: number, name: string) => ({ action: "upsert", sequence, data: { id, name } });
const auth = { token: TOKEN };

/** Hold an ACCESS EXCLUSIVE lock on a table so that a batch into it waits (in flight) until released. */
async function lockTable(table: string): Promise<{ release(): Promise<void> }> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  await c.query("BEGIN");
  await c.query(`LOCK TABLE public.${pg.escapeIdentifier(table)} IN ACCESS EXCLUSIVE MODE`);
  return {
    release: async () => {
      await c.query("COMMIT");
      await c.end();
    },
  };
}

const waitingOnLock = () =>
  waitFor("a batch waiting on the table lock", async () => {
    const r = await q<{ n: number }>(
      "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
    );
    return (r[0]?.n ?? 0) > 0;
  });

describe("seqload serve", () => {
  let base: string;
  beforeAll(async () => {
    base = (await serve()).url;
  });

  it("GET /v2/import/status answers like Stitch's pipeline.gate, without a token", async () => {
    const a = await request(`${base}/v2/import/status`);
    expect(a.status).toBe(200);
    expect(a.json).toEqual({ name: "seqload", version: VERSION, revision: null, status: "OK", reason: null });
  });

  it("GET /healthz pings the database (200), and says 503 when it cannot", async () => {
    const a = await request(`${base}/healthz`);
    expect([a.status, a.json]).toEqual([200, { status: "OK", database: "reachable" }]);
    const dead = await serve({ loaderOptions: { connectionString: "postgres://postgres@127.0.0.1:1/nowhere" } });
    const b = await request(`${dead.url}/healthz`);
    expect(b.status).toBe(503);
    expect(b.json).toMatchObject({ status: "ERROR", message: expect.stringMatching(/^database unreachable: /) });
  });

  it("refuses to start without a token unless told --insecure-no-auth", async () => {
    for (const tokens of [[], ["", "  "]]) {
      await expect(serve({ tokens })).rejects.toThrow(
        "refusing to start without a token: pass --token or SEQLOAD_TOKENS, or --insecure-no-auth",
      );
    }
    const open = await serve({ tokens: [], insecureNoAuth: true });
    const a = await post(open.url, "/v2/import/batch", batch("noauth", [up(1, 1, "x")]), { token: null });
    expect([a.status, a.json]).toEqual([201, { status: "OK", message: "Batch Accepted!" }]);
  });

  it("401 Not Authorized without a token, with a wrong one, or another scheme; 201 with the right one", async () => {
    const body = batch("authz", [up(1, 1, "x")]);
    for (const opts of [
      { token: null },
      { token: `${TOKEN}x` },
      { token: TOKEN.slice(0, -1) },
      { token: null, headers: { authorization: `Basic ${TOKEN}` } },
    ]) {
      for (const path of ["/v2/import/batch", "/v2/import/validate"]) {
        const a = await post(base, path, body, opts);
        expect([a.status, a.json]).toEqual([401, { message: "Not Authorized" }]);
      }
    }
    expect(await q("select to_regclass('public.authz') as t")).toEqual([{ t: null }]);
    const ok = await post(base, "/v2/import/batch", body, { headers: { authorization: `bearer ${TOKEN}` } });
    expect([ok.status, ok.json]).toEqual([201, { status: "OK", message: "Batch Accepted!" }]);
  });

  it("loads target-stitch's real request unchanged: ids 1 and 2, id 2 from its higher sequence", async () => {
    const a = await post(base, "/v2/import/batch", TARGET_STITCH_BODY, auth);
    expect([a.status, a.json]).toEqual([201, { status: "OK", message: "Batch Accepted!" }]);
    const rows = await q(
      "select id::text, name, has_magic, updated_at = '2019-11-26T22:30:45Z' as latest, _sequence::text as seq, _deleted_at from public.customers order by id",
    );
    expect(rows).toEqual([
      { id: "1", name: "Finn", has_magic: false, latest: false, seq: "1795465705836066501", _deleted_at: null },
      { id: "2", name: "Jake", has_magic: false, latest: true, seq: "1795465705836145003", _deleted_at: null },
    ]);
    // One structured log line for it, with the LoadResult, the latency and the status.
    const line = logs
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.event === "batch" && l.table === "customers" && l.status === 201);
    expect(line).toMatchObject({ schema: "public", received: 5, inserted: 2, updated: 0, deleted: 0, token: 1, ms: expect.any(Number) });
    expect((line?.received as number) - (line?.collapsed as number) - (line?.inserted as number) - (line?.skipped as number)).toBe(0);
  });

  it("stores 19-digit sequences and long numbers exactly (lossless body parsing)", async () => {
    const body = `{"table_name":"lossless","key_names":["id"],"schema":{"properties":{"id":{"type":"integer"},"big":{"type":"integer"},"dec":{"type":"number"}}},
      "messages":[{"action":"upsert","sequence":9223372036854775806,"data":{"id":1,"big":1795465705836145003,"dec":12345678901234567890.123456789}},
                  {"action":"upsert","sequence":9223372036854775807,"data":{"id":1,"big":1795465705836145005,"dec":0.1000000000000000055511151231257827}},
                  {"action":"upsert","sequence":1795465705836145003,"data":{"id":2,"big":-9223372036854775808,"dec":1e-30}}]}`;
    const a = await post(base, "/v2/import/batch", body, auth);
    expect(a.status).toBe(201);
    expect(await q("select id::text, big::text, dec::text, _sequence::text as seq from lossless order by id")).toEqual([
      { id: "1", big: "1795465705836145005", dec: "0.1000000000000000055511151231257827", seq: "9223372036854775807" },
      { id: "2", big: "-9223372036854775808", dec: "0.000000000000000000000000000001", seq: "1795465705836145003" },
    ]);
  });

  it("400 names every record and field that does not conform, and writes nothing", async () => {
    const a = await post(
      base,
      "/v2/import/batch",
      batch("invalid", [
        up(1, 1, "ok"),
        { action: "upsert", sequence: 2, data: { id: 2, name: 5 } },
        { action: "upsert", sequence: 3.5, data: { name: "x" } },
      ]),
      auth,
    );
    expect(a.status).toBe(400);
    const error = (a.json as { error: string }).error;
    expect(error.split("\n")).toEqual([
      "Record 1 did not conform to schema: #/name: expected type null or string, found integer",
      "Request failed validation:#/messages/2/sequence: sequence must be an integer, got the fraction 3.5",
      "Record 2 is missing key property id",
    ]);
    expect(await q("select to_regclass('public.invalid') as t")).toEqual([{ t: null }]);
  });

  it("400 on malformed JSON, with the position", async () => {
    const a = await post(base, "/v2/import/batch", '{"table_name": "x", "messages": [', auth);
    expect(a.status).toBe(400);
    expect((a.json as { error: string }).error).toMatch(/^Malformed JSON in the body: .*position \d+/);
  });

  it("415 (plain text) for anything but application/json", async () => {
    const body = batch("ct", [up(1, 1, "x")]);
    for (const contentType of ["text/plain", "application/transit+json", "application/x-www-form-urlencoded", null]) {
      const a = await post(base, "/v2/import/batch", body, { ...auth, contentType });
      expect([a.status, a.text]).toEqual([415, "Content-Type must be application/json"]);
      expect(a.headers.get("content-type")).toMatch(/^text\/plain/);
    }
    const empty = await request(`${base}/v2/import/batch`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` } });
    expect(empty.status).toBe(415);
    const charset = await post(base, "/v2/import/batch", body, { ...auth, contentType: "application/json; charset=utf-8" });
    expect(charset.status).toBe(201);
  });

  it("405 for a known endpoint with the wrong method, 404 elsewhere (e.g. the push endpoint)", async () => {
    const a = await request(`${base}/v2/import/batch`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect([a.status, a.headers.get("allow"), a.json]).toEqual([405, "POST", { status: "ERROR", message: "Method not allowed." }]);
    const b = await post(base, "/v2/import/push", [], auth);
    expect(b.status).toBe(404);
    expect((b.json as { message: string }).message).toContain("POST /v2/import/batch");
  });

  it("accepts 20,000 messages and refuses 21,000 with a 400", async () => {
    const messages = (n: number) => Array.from({ length: n }, (_, i) => up(i, i + 1, `n${i}`));
    const ok = await post(base, "/v2/import/batch", batch("count", messages(20_000)), auth);
    expect(ok.status).toBe(201);
    const tooMany = await post(base, "/v2/import/batch", batch("count", messages(21_000)), auth);
    expect([tooMany.status, tooMany.json]).toEqual([
      400,
      { error: "Request failed validation:#/messages: the batch has 21000 messages; at most 20000 are accepted" },
    ]);
  });

  it("413 while a body streams in: a 2 GiB upload is cut early, never buffered", async () => {
    const rss = process.memoryUsage().rss;
    const r = await streamUpload(base, { token: TOKEN, total: 2048 * MiB });
    expect(r.status).toBe(413);
    expect(JSON.parse(r.body)).toEqual({
      status: "ERROR",
      message: "Request rejected: request size (more than 20971520 bytes) exceeds the maximum",
    });
    expect(r.writtenBeforeResponse).toBeLessThan(64 * MiB);
    expect(r.cutEarly).toBe(true); // the server closed the connection instead of reading 2 GiB
    expect(r.written).toBeLessThan(1024 * MiB);
    expect(process.memoryUsage().rss - rss).toBeLessThan(256 * MiB);
    // A declared Content-Length over the limit is refused before the body is read.
    const declared = await streamUpload(base, { token: TOKEN, total: 30 * MiB, contentLength: 30 * MiB + 1 });
    expect(declared.status).toBe(413);
    expect(JSON.parse(declared.body)).toEqual({
      status: "ERROR",
      message: "Request rejected: request size (31457281 bytes) exceeds the maximum",
    });
  });

  it("400 with the library's words when key_names change for an existing table", async () => {
    expect((await post(base, "/v2/import/batch", batch("keys", [up(1, 1, "a")]), auth)).status).toBe(201);
    const a = await post(base, "/v2/import/batch", { ...batch("keys", [up(1, 2, "a")]), key_names: ["name"] }, auth);
    expect(a.status).toBe(400);
    expect((a.json as { error: string }).error).toContain('table "keys" has primary key ["id"] but the batch has key_names ["name"]');
  });

  it("503 with Retry-After when the database is unreachable (retryable), 500 when the failure is not", async () => {
    const dead = await serve({ loaderOptions: { connectionString: "postgres://postgres@127.0.0.1:1/nowhere" } });
    const a = await post(dead.url, "/v2/import/batch", batch("dead", [up(1, 1, "x")]), auth);
    expect(a.status).toBe(503);
    expect(a.headers.get("retry-after")).toBe("5");
    expect(a.json).toMatchObject({ status: "ERROR", message: expect.stringContaining("could not connect to PostgreSQL") });

    expect((await post(base, "/v2/import/batch", batch("trigger", [up(1, 1, "x")]), auth)).status).toBe(201);
    // Two statements, not one string: Citus forwards a DDL's text to the workers, one command at a time.
    await q(`create function boom() returns trigger language plpgsql as $$ begin raise exception 'boom from a trigger'; end $$`);
    await q(`create trigger boom before insert or update on public."trigger" for each row execute function boom()`);
    const b = await post(base, "/v2/import/batch", batch("trigger", [up(1, 2, "y")]), auth);
    expect(b.status).toBe(500);
    expect(b.json).toMatchObject({ status: "ERROR", message: expect.stringContaining("boom from a trigger") });
  });

  it("POST /v2/import/validate checks a batch-shaped body without writing", async () => {
    const ok = await post(base, "/v2/import/validate", batch("validated", [up(1, 1, "x")]), auth);
    expect([ok.status, ok.json]).toEqual([200, { status: "OK", message: "Batch is valid!" }]);
    const bad = await post(base, "/v2/import/validate", batch("validated", [{ action: "upsert", sequence: 1, data: { id: "one" } }]), auth);
    expect([bad.status, bad.json]).toEqual([
      400,
      { error: "Record 0 did not conform to schema: #/id: expected type integer, found string" },
    ]);
    const push = await post(
      base,
      "/v2/import/validate",
      [{ client_id: 1, table_name: "t", sequence: 1, action: "upsert", key_names: ["id"], data: { id: 1 } }],
      auth,
    );
    expect(push.status).toBe(400);
    expect((push.json as { error: string }).error).toContain("not Stitch's push-shaped arrays");
    expect(await q("select to_regclass('public.validated') as t")).toEqual([{ t: null }]);
  });

  it("16 concurrent posts with overlapping keys converge: per key the highest sequence", async () => {
    const s = await serve({ maxInFlight: 16 });
    const keys = 25;
    let seed = 42;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed;
    };
    const best = new Map<number, { seq: bigint; name: string }>();
    const used = new Set<bigint>();
    const bodies = Array.from({ length: 16 }, (_, p) => {
      const messages: string[] = [];
      for (let round = 0; round < 2; round++) {
        for (let k = 0; k < keys; k++) {
          let seq: bigint;
          do seq = 1_795_465_705_836_000_000n + BigInt(rand() % 1_000_000);
          while (used.has(seq)); // unique sequences: no cross-batch ties, so the winner is determined
          used.add(seq);
          const name = `p${p}r${round}`;
          const cur = best.get(k);
          if (cur === undefined || seq > cur.seq) best.set(k, { seq, name });
          messages.push(`{"action":"upsert","sequence":${seq},"data":{"id":${k},"name":"${name}"}}`);
        }
      }
      return `{"table_name":"race","key_names":["id"],"schema":${JSON.stringify(schema)},"messages":[${messages.join(",")}]}`;
    });
    const answers = await Promise.all(bodies.map((b) => postWithRetry(s.url, "/v2/import/batch", b, auth)));
    expect(answers.map((a) => a.status)).toEqual(Array(16).fill(201));
    const rows = await q<{ id: string; name: string; seq: string }>(
      "select id::text, name, _sequence::text as seq from race order by race.id",
    );
    expect(rows).toEqual(
      [...best.entries()].sort((x, y) => x[0] - y[0]).map(([k, v]) => ({ id: String(k), name: v.name, seq: String(v.seq) })),
    );
  });

  it("full-table replication: version 2 activates, id 1 (only in version 1) is deleted, 2–3 live [core]", async () => {
    const v1 = batch(
      "fulltable",
      [
        { action: "activate_version", sequence: 1 },
        up(1, 11, "v1-1"),
        up(2, 12, "v1-2"),
        up(3, 13, "v1-3"),
        { action: "activate_version", sequence: 20 },
      ],
      { table_version: 1 },
    );
    const v2 = batch("fulltable", [up(2, 32, "v2-2"), up(3, 33, "v2-3"), { action: "activate_version", sequence: 40 }], {
      table_version: 2,
    });
    expect((await post(base, "/v2/import/batch", v1, auth)).status).toBe(201);
    expect((await post(base, "/v2/import/batch", v2, auth)).status).toBe(201);
    expect(await q("select id::text, name, _deleted_at is not null as deleted from fulltable order by id")).toEqual([
      { id: "1", name: "v1-1", deleted: true },
      { id: "2", name: "v2-2", deleted: false },
      { id: "3", name: "v2-3", deleted: false },
    ]);
  });

  it("a token bound with TOKEN@schema loads into its own schema only", async () => {
    const alpha = ALPHA;
    const beta = BETA;
    const s = await serve({ tokens: [TOKEN, `${alpha}@tenant_alpha`, `${beta}@tenant_beta`] });
    expect((await post(s.url, "/v2/import/batch", batch("shared", [up(1, 1, "from alpha")]), { token: alpha })).status).toBe(201);
    expect((await post(s.url, "/v2/import/batch", batch("shared", [up(1, 1, "from beta")]), { token: beta })).status).toBe(201);
    expect(await q("select name from tenant_alpha.shared")).toEqual([{ name: "from alpha" }]);
    expect(await q("select name from tenant_beta.shared")).toEqual([{ name: "from beta" }]);
    expect(await q("select to_regclass('public.shared') as t")).toEqual([{ t: null }]);
    // The schema-qualified token string is not itself a token.
    expect((await post(s.url, "/v2/import/batch", batch("shared", [up(1, 2, "x")]), { token: `${alpha}@tenant_alpha` })).status).toBe(401);
  });

  it("backpressure: beyond maxInFlight a batch gets 503 with Retry-After: 1 at once", async () => {
    const s = await serve({ maxInFlight: 1 });
    expect((await post(s.url, "/v2/import/batch", batch("busy", [up(1, 1, "a")]), auth)).status).toBe(201);
    const lock = await lockTable("busy");
    const first = post(s.url, "/v2/import/batch", batch("busy", [up(1, 2, "b")]), auth);
    await waitingOnLock();
    const second = await post(s.url, "/v2/import/batch", batch("busy", [up(1, 3, "c")]), auth);
    expect([second.status, second.headers.get("retry-after")]).toEqual([503, "1"]);
    expect(second.json).toMatchObject({ status: "ERROR" });
    await lock.release();
    expect((await first).status).toBe(201);
    expect((await post(s.url, "/v2/import/batch", batch("busy", [up(1, 3, "c")]), auth)).status).toBe(201);
    expect(await q("select name from busy")).toEqual([{ name: "c" }]);
  });

  it("a client that hangs up mid-load: the batch still commits, is logged with its LoadResult, and frees its slot", async () => {
    const mine: Record<string, unknown>[] = [];
    const s = await serve({
      maxInFlight: 1,
      log: (line) => {
        logs.push(line);
        mine.push(JSON.parse(line) as Record<string, unknown>);
      },
    });
    expect((await post(s.url, "/v2/import/batch", batch("hangup", [up(1, 1, "a")]), auth)).status).toBe(201);
    const lock = await lockTable("hangup");
    const abort = new AbortController();
    const gone = post(s.url, "/v2/import/batch", batch("hangup", [up(1, 2, "b"), up(2, 2, "c")]), { ...auth, signal: abort.signal }).catch(
      (e: Error) => e,
    );
    await waitingOnLock();
    abort.abort();
    expect(await gone).toBeInstanceOf(Error);
    await lock.release();
    await waitFor("the log line of the abandoned batch", async () => mine.some((l) => l.aborted === true));
    expect(mine.find((l) => l.aborted === true)).toMatchObject({ event: "batch", status: null, table: "hangup", inserted: 1, updated: 1 });
    expect(await q("select id::text, name from hangup order by hangup.id")).toEqual([
      { id: "1", name: "b" },
      { id: "2", name: "c" },
    ]);
    expect((await post(s.url, "/v2/import/batch", batch("hangup", [up(1, 3, "d")]), auth)).status).toBe(201); // the slot is free
  });

  it("graceful shutdown: the in-flight batch commits and is answered 201; new requests get 503, then the port closes", async () => {
    const events: string[] = [];
    const s = await serve({
      log: (line) => {
        logs.push(line);
        const l = JSON.parse(line) as { event: string; status?: number; table?: string };
        if (l.event === "batch" || l.event === "closed") events.push(`${l.event} ${l.status ?? ""}`.trim());
      },
    });
    expect((await post(s.url, "/v2/import/batch", batch("drain", [up(1, 1, "a")]), auth)).status).toBe(201);
    const lock = await lockTable("drain");
    const inFlight = post(s.url, "/v2/import/batch", batch("drain", [up(1, 2, "in flight")]), auth);
    await waitingOnLock();
    events.length = 0;
    const closed = s.close();
    const late = await post(s.url, "/v2/import/batch", batch("drain", [up(1, 3, "late")]), auth).catch((e: Error) => e);
    if (late instanceof Error)
      expect(String((late as { cause?: Error }).cause ?? late)).toMatch(/ECONNREFUSED|ECONNRESET|SocketError|other side closed/);
    else expect([late.status, late.json]).toEqual([503, { status: "ERROR", message: "The server is shutting down; retry shortly" }]);
    await lock.release();
    expect((await inFlight).status).toBe(201);
    await closed;
    // The server answered the in-flight batch (its log line is written once the 201 is sent)
    // before it called itself closed.
    expect(events).toEqual(["batch 201", "closed"]);
    expect(await q("select name from drain")).toEqual([{ name: "in flight" }]);
    await expect(fetch(`${s.url}/v2/import/status`)).rejects.toThrow();
  });

  it("never shows a token in a response or a log line (checked over everything above)", () => {
    expect(logs.length).toBeGreaterThan(10);
    for (const line of logs) expect(() => JSON.parse(line)).not.toThrow();
    for (const text of [...logs, ...transcript, ...written]) {
      for (const token of [TOKEN, ALPHA, BETA]) expect(text).not.toContain(token);
    }
  });
});
