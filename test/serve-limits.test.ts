// `seqload serve` under slow, greedy and heavy clients, against a real server and PostgreSQL:
// the body timeout (408), batch slots taken only once a body is complete, the per-token limit
// (429), the memory budget (503 by Content-Length, by streamed bytes, at admission), and what
// GET /metrics says about all of it.
import { randomBytes } from "node:crypto";
import net from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServeOptions, startServer } from "../src/serve.js";
import { MEMORY_PER_BODY_BYTE } from "../src/server/admission.js";
import { post, postWithRetry, request } from "./fixtures/serve/http.js";
import { rawUpload } from "./fixtures/serve/slow.js";
import { type TestDatabase, createTestDatabase, withClient } from "./helpers/db.js";

const TOKEN = `tok_${randomBytes(16).toString("hex")}`;
const OTHER = `oth_${randomBytes(16).toString("hex")}`;
const MiB = 1024 * 1024;

let db: TestDatabase;
const servers: { close(): Promise<void> }[] = [];
const logs: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase("serve_limits");
});

afterAll(async () => {
  for (const s of servers) await s.close().catch(() => {});
  await db?.drop();
});

async function serve(overrides: Partial<ServeOptions> = {}): Promise<{ url: string; close(): Promise<void> }> {
  const s = await startServer({
    loaderOptions: { connectionString: db.url },
    port: 0,
    host: "127.0.0.1",
    tokens: [TOKEN, OTHER],
    insecureNoAuth: false,
    log: (line) => logs.push(line),
    ...overrides,
  });
  servers.push(s);
  return s;
}

const q = <R extends pg.QueryResultRow = Record<string, unknown>>(text: string): Promise<R[]> =>
  withClient(db.url, async (c) => (await c.query<R>(text)).rows);

const schema = { properties: { id: { type: "integer" }, name: { type: ["null", "string"] } } };
const up = (id: number, sequence: number, name: string) => ({ action: "upsert", sequence, data: { id, name } });
const batch = (table: string, messages: unknown[]) => JSON.stringify({ table_name: table, key_names: ["id"], schema, messages });

/** A batch body of about `bytes` bytes (one message per ~100 bytes). */
function sizedBatch(table: string, bytes: number, name = "x"): string {
  const n = Math.max(1, Math.floor(bytes / 100));
  return batch(
    table,
    Array.from({ length: n }, (_, i) => up(i, i + 1, name.padEnd(60, "."))),
  );
}

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

async function waitFor(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const waitingOnLock = (n: number) =>
  waitFor(`${n} batch(es) waiting on a table lock`, async () => {
    const r = await q<{ n: number }>(
      "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
    );
    return (r[0]?.n ?? 0) >= n;
  });

/** Prometheus text → the value of the series `name` whose labels include `labels` (summed over the rest). */
function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  let found = false;
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) {
      sum += Number(m[3]);
      found = true;
    }
  }
  if (!found) throw new Error(`no series ${name}${JSON.stringify(labels)} in /metrics`);
  return sum;
}

const scrape = async (base: string): Promise<string> => {
  const a = await request(`${base}/metrics`);
  expect(a.status).toBe(200);
  expect(a.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return a.text;
};

describe("seqload serve: limits", () => {
  it("30 uploads trickling a byte at a time hold no batch slot: a well-behaved client is served at once; they get 408", async () => {
    const s = await serve({ maxInFlight: 4, bodyTimeoutMs: 4_000 });
    const slow = Array.from({ length: 30 }, () =>
      rawUpload(s.url, { token: TOKEN, contentLength: 1_000_000, chunk: 1, everyMs: 200, total: 1_000_000 }),
    );
    await waitFor("30 bodies arriving", async () => metric(await scrape(s.url), "seqload_bodies_receiving") === 30);
    const started = performance.now();
    const a = await post(s.url, "/v2/import/batch", batch("prompt", [up(1, 1, "served")]), { token: TOKEN });
    const ms = performance.now() - started;
    console.log(`well-behaved client answered ${a.status} in ${ms.toFixed(0)} ms while 30 uploads trickled`);
    expect(a.status).toBe(201);
    expect(ms).toBeLessThan(5_000); // generous: the point is "not after the trickles", not a timing
    expect(await q("select name from prompt")).toEqual([{ name: "served" }]);

    const answers = await Promise.all(slow);
    for (const r of answers) {
      expect(r.status).toBe(408);
      expect(JSON.parse(r.body)).toEqual({ error: "The request body did not arrive within 4 seconds" });
      expect(r.sentBeforeAnswer).toBeLessThan(1000);
    }
    const text = await scrape(s.url);
    expect(metric(text, "seqload_refused_total", { reason: "body_timeout" })).toBe(30);
    expect(metric(text, "seqload_batches_total", { outcome: "timeout" })).toBe(30);
    expect(metric(text, "seqload_bodies_receiving")).toBe(0);
    expect(metric(text, "seqload_memory_reserved_bytes")).toBe(0);
    const timedOut = logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.code === "BODY_TIMEOUT");
    expect(timedOut.length).toBeGreaterThanOrEqual(30);
  });

  it("headers that never finish get 408 after --headers-timeout; an idle keep-alive connection closes after --keep-alive-timeout", async () => {
    const s = await serve({ headersTimeoutMs: 1_000, keepAliveTimeoutMs: 500 });
    const u = new URL(s.url);
    /** Open a connection, write `text`, and collect what comes back until the server closes it. */
    const converse = (text: string) =>
      new Promise<{ data: string; ms: number }>((resolve, reject) => {
        const started = performance.now();
        let data = "";
        const socket = net.connect({ host: u.hostname, port: Number(u.port) }, () => socket.write(text));
        socket.setEncoding("utf8").on("data", (d: string) => (data += d));
        socket.on("close", () => resolve({ data, ms: performance.now() - started }));
        socket.on("error", reject);
        setTimeout(() => {
          socket.destroy();
          reject(new Error(`the server kept the connection open: ${data}`));
        }, 8_000);
      });
    const slowHeaders = await converse(`POST /v2/import/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n`);
    expect(slowHeaders.data).toMatch(/^HTTP\/1\.1 408 /);
    expect(slowHeaders.ms).toBeGreaterThanOrEqual(900);
    const idle = await converse("GET /v2/import/status HTTP/1.1\r\nHost: x\r\n\r\n");
    expect(idle.data).toMatch(/^HTTP\/1\.1 200 /);
    // Closed by the server after about 0.5 s of idleness (the default would keep it 72 s).
    expect(idle.ms).toBeGreaterThanOrEqual(400);
    expect(idle.ms).toBeLessThan(5_000);
  });

  it("--shutdown-grace: after it, close() cuts the connection of a batch still loading; the batch still commits", async () => {
    const s = await serve({ shutdownGraceMs: 300 });
    expect((await post(s.url, "/v2/import/batch", batch("grace", [up(1, 1, "a")]), { token: TOKEN })).status).toBe(201);
    const lock = await lockTable("grace");
    const inFlight = post(s.url, "/v2/import/batch", batch("grace", [up(1, 2, "during shutdown")]), { token: TOKEN }).catch(
      (e: Error) => e,
    );
    await waitingOnLock(1);
    const started = performance.now();
    const closed = s.close();
    // The client sees its connection cut once the grace is over, not an answer.
    expect(await inFlight).toBeInstanceOf(Error);
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
    await lock.release();
    await closed;
    expect(await q("select name from grace")).toEqual([{ name: "during shutdown" }]);
  });

  it("per token: beyond --max-in-flight-per-token a token gets 429 + Retry-After while another token is served", async () => {
    const s = await serve({ maxInFlight: 4 }); // two tokens: 2 each by default
    expect((await post(s.url, "/v2/import/batch", batch("greedy", [up(1, 1, "a")]), { token: TOKEN })).status).toBe(201);
    const lock = await lockTable("greedy");
    const held = [2, 3].map((seq) => post(s.url, "/v2/import/batch", batch("greedy", [up(1, seq, `held ${seq}`)]), { token: TOKEN }));
    await waitingOnLock(2);
    const third = await post(s.url, "/v2/import/batch", batch("greedy", [up(1, 4, "third")]), { token: TOKEN });
    expect([third.status, third.headers.get("retry-after")]).toEqual([429, "1"]);
    expect(third.json).toEqual({ status: "ERROR", message: "Too many batches in flight for this token (at most 2); retry after 1 second" });
    const other = await post(s.url, "/v2/import/batch", batch("polite", [up(1, 1, "other tenant")]), { token: OTHER });
    expect(other.status).toBe(201);
    await lock.release();
    expect((await Promise.all(held)).map((a) => a.status)).toEqual([201, 201]);
    expect((await post(s.url, "/v2/import/batch", batch("greedy", [up(1, 4, "third")]), { token: TOKEN })).status).toBe(201);
    expect(await q("select name from greedy")).toEqual([{ name: "third" }]);
    const text = await scrape(s.url);
    expect(metric(text, "seqload_refused_total", { reason: "token" })).toBe(1);
    // Refused before its body was parsed: the table is not known yet.
    expect(metric(text, "seqload_batches_total", { table: "", outcome: "refused" })).toBe(1);
  });

  it("memory budget: 503 + Retry-After by Content-Length before the body, as a chunked body streams, and at admission", async () => {
    const size = 60_000;
    const body = sizedBatch("heavy", size);
    const cost = Buffer.byteLength(body) * MEMORY_PER_BODY_BYTE;
    // Room for one batch being loaded and a bit, not two.
    const s = await serve({ maxMemoryMb: (1.5 * cost) / MiB });
    expect((await post(s.url, "/v2/import/batch", sizedBatch("heavy", 100), { token: TOKEN })).status).toBe(201);
    expect((await post(s.url, "/v2/import/batch", sizedBatch("heavy2", 100), { token: TOKEN })).status).toBe(201);
    const lock = await lockTable("heavy");
    const first = post(s.url, "/v2/import/batch", body, { token: TOKEN });
    await waitingOnLock(1);

    // Its body fits, but not the cost of loading it next to the first.
    const second = await post(s.url, "/v2/import/batch", sizedBatch("heavy2", size), { token: OTHER });
    expect([second.status, second.headers.get("retry-after"), second.json]).toEqual([
      503,
      "1",
      { status: "ERROR", message: "The server's memory budget is taken by batches in flight; retry after 1 second" },
    ]);
    // A declared size over what is left: refused before a byte of the body is read.
    const declared = await rawUpload(s.url, {
      token: OTHER,
      contentLength: Math.floor(0.75 * cost),
      chunk: 1,
      everyMs: 60_000,
      total: 1,
    });
    expect([declared.status, declared.headers["retry-after"], declared.sentBeforeAnswer]).toEqual([503, "1", 1]);
    // A chunked body: refused once what it streamed exceeds what is left.
    const chunked = await rawUpload(s.url, { token: OTHER, chunk: 16_384, everyMs: 5, total: 4 * cost });
    expect([chunked.status, chunked.headers["retry-after"]]).toEqual([503, "1"]);
    expect(chunked.sentBeforeAnswer).toBeLessThan(cost);

    let text = await scrape(s.url);
    expect(metric(text, "seqload_refused_total", { reason: "memory" })).toBe(3);
    expect(metric(text, "seqload_memory_reserved_bytes")).toBeGreaterThanOrEqual(cost);
    expect(metric(text, "seqload_memory_budget_bytes")).toBe(Math.round(1.5 * cost));

    await lock.release();
    expect((await first).status).toBe(201);
    const retried = await postWithRetry(s.url, "/v2/import/batch", sizedBatch("heavy2", size), { token: OTHER });
    expect(retried.status).toBe(201);
    expect(await q("select count(*)::int as n from heavy2")).toEqual([{ n: Math.floor(size / 100) }]);
    text = await scrape(s.url);
    expect(metric(text, "seqload_memory_reserved_bytes")).toBe(0);
  });

  it("GET /metrics (no token) counts batches, messages and rows by outcome and table, latency, in flight and the pool", async () => {
    const s = await serve();
    expect(
      (await post(s.url, "/v2/import/batch", batch("counted", [up(1, 1, "a"), up(2, 1, "b"), up(1, 2, "a2")]), { token: TOKEN })).status,
    ).toBe(201);
    expect(
      (
        await post(
          s.url,
          "/v2/import/batch",
          batch("counted", [up(1, 3, "a3"), up(3, 1, "c"), up(2, 1, "b again"), { action: "delete", sequence: 4, data: { id: 3 } }]),
          { token: TOKEN },
        )
      ).status,
    ).toBe(201);
    expect(
      (await post(s.url, "/v2/import/batch", batch("counted", [{ action: "upsert", sequence: 1, data: { id: "x" } }]), { token: TOKEN }))
        .status,
    ).toBe(400);
    expect((await post(s.url, "/v2/import/batch", batch("counted", [up(9, 9, "z")]), { token: "wrong-token-0123456789" })).status).toBe(
      401,
    );

    const text = await scrape(s.url);
    const at = { schema: "public", table: "counted" };
    expect(metric(text, "seqload_batches_total", { ...at, outcome: "accepted" })).toBe(2);
    expect(metric(text, "seqload_batches_total", { ...at, outcome: "invalid" })).toBe(1);
    expect(metric(text, "seqload_batches_total", { outcome: "unauthorized" })).toBe(1);
    expect(metric(text, "seqload_messages_total", { ...at, outcome: "accepted" })).toBe(7);
    expect(metric(text, "seqload_messages_total", { ...at, outcome: "invalid" })).toBe(1);
    // First batch: ids 1 and 2 inserted (id 1's older message collapsed). Second: id 1 updated,
    // id 3 inserted then deleted in the same batch (collapsed to the delete), id 2 skipped.
    const rows = await q<{ id: number; name: string; deleted: boolean }>(
      "select id::int, name, _deleted_at is not null as deleted from counted order by id",
    );
    expect(rows).toEqual([
      { id: 1, name: "a3", deleted: false },
      { id: 2, name: "b", deleted: false },
      { id: 3, name: null, deleted: true },
    ]);
    expect(metric(text, "seqload_rows_total", { ...at, result: "inserted" })).toBe(2);
    expect(metric(text, "seqload_rows_total", { ...at, result: "updated" })).toBe(1);
    expect(metric(text, "seqload_rows_total", { ...at, result: "deleted" })).toBe(1);
    expect(metric(text, "seqload_rows_total", { ...at, result: "skipped" })).toBe(1);
    expect(metric(text, "seqload_batch_duration_seconds_count", { outcome: "accepted" })).toBe(2);
    expect(metric(text, "seqload_batch_duration_seconds_bucket", { outcome: "accepted", le: "+Inf" })).toBe(2);
    expect(metric(text, "seqload_batch_duration_seconds_sum", { outcome: "accepted" })).toBeGreaterThan(0);
    expect(metric(text, "seqload_batches_in_flight")).toBe(0);
    expect(metric(text, "seqload_pool_connections")).toBeGreaterThanOrEqual(1);
    expect(metric(text, "seqload_pool_idle_connections")).toBeGreaterThanOrEqual(0);
    expect(metric(text, "seqload_pool_waiting_clients")).toBe(0);
    expect(metric(text, "process_resident_memory_bytes")).toBeGreaterThan(0);
    for (const secret of [TOKEN, OTHER, db.url, "wrong-token"]) expect(text).not.toContain(secret);
  });
});
