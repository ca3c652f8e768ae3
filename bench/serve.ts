/**
 * `seqload serve` under load, loopback only, bounded in time (it stops by itself):
 *
 *   npm run bench:serve [-- --phase memory|mix|all] [--seconds 60] [--server-args "--max-memory-mb 256"]
 *
 * memory: 10 clients each post one 18.4 MiB batch (20,000 messages with 900-byte strings) at
 *   once, retrying on 503/429 after Retry-After; every batch must commit, and the server's peak
 *   RSS (default --max-memory-mb 512) is printed.
 * mix: for --seconds, well-behaved clients of mixed batch sizes (1 to 5,000 messages, upserts and
 *   deletes on overlapping keys), slow clients (trickled bodies, answered 408), clients that abort
 *   mid-body, PostgreSQL connections killed every few seconds (pg_terminate_backend) and one
 *   server restart half-way. Prints p50/p99 latency, status counts, peak RSS and the final tables
 *   checked against a model of what every 201 committed (wrong, missing and extra rows).
 *
 * The server is the built CLI (`node dist/src/cli.js serve`) in its own process; peak RSS is its
 * VmHWM from /proc/<pid>/status (Linux). Database: DATABASE_URL if set (schema
 * seqload_bench_serve, dropped at the end), else a throw-away embedded PostgreSQL.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import pg from "pg";
import { provideDatabase } from "./lib/db.js";

const SCHEMA = "seqload_bench_serve";
const CLI = fileURLToPath(new URL("../src/cli.js", import.meta.url));
const TOKEN = randomBytes(24).toString("hex");
const TABLE_SCHEMA = { properties: { id: { type: "integer" }, name: { type: ["null", "string"] } } };
const MiB = 1024 * 1024;

// ---------------------------------------------------------------- the server process

interface Server {
  url: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

/** Highest VmHWM (kB) seen over every server process of the run. */
let peakRssKb = 0;

async function vmHwmKb(pid: number): Promise<number | null> {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function watchRss(pid: number): void {
  const timer = setInterval(() => {
    void vmHwmKb(pid).then((kb) => {
      if (kb === null) clearInterval(timer);
      else peakRssKb = Math.max(peakRssKb, kb);
    });
  }, 50);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

function startServe(databaseUrl: string, port: number, extra: string[]): Promise<Server> {
  const child = spawn(
    process.execPath,
    [CLI, "serve", "--port", String(port), "--database-url", databaseUrl, "--schema", SCHEMA, "--token", TOKEN, ...extra],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    child.stderr?.setEncoding("utf8").on("data", (s: string) => {
      if (stderr.length < 100_000) stderr += s;
      const m = /serving the Import API at (\S+?),/.exec(stderr);
      if (m?.[1] !== undefined) {
        stderr = "";
        watchRss(child.pid as number);
        resolve({ url: m[1], child, exited });
      }
    });
    void exited.then((code) => reject(new Error(`serve exited with ${code}:\n${stderr}`)));
  });
}

async function stopServe(s: Server): Promise<void> {
  const kb = await vmHwmKb(s.child.pid as number);
  if (kb !== null) peakRssKb = Math.max(peakRssKb, kb);
  s.child.kill("SIGTERM");
  await s.exited;
}

// ---------------------------------------------------------------- clients

interface Attempt {
  status: number | "network";
  ms: number;
  retryAfter: number | null;
}

/** One POST with a complete body. Network errors (refused, reset, cut) are an answer too. */
function postOnce(url: string, body: string): Promise<Attempt> {
  const u = new URL(url);
  const started = performance.now();
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: "/v2/import/batch",
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        res.on("end", () => {
          const ra = Number(res.headers["retry-after"]);
          resolve({ status: res.statusCode ?? 0, ms: performance.now() - started, retryAfter: Number.isFinite(ra) ? ra : null });
        });
        res.on("error", () => resolve({ status: "network", ms: performance.now() - started, retryAfter: null }));
      },
    );
    req.on("error", () => resolve({ status: "network", ms: performance.now() - started, retryAfter: null }));
    req.end(body);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Tally {
  statuses: Map<string, number>;
  /** Latency of every 201, ms. */
  accepted: number[];
  /** Gave up on (a 4xx other than 408/429): a bug in the server or the bench. */
  gaveUp: number;
}

const newTally = (): Tally => ({ statuses: new Map(), accepted: [], gaveUp: 0 });
const count = (t: Tally, key: string) => t.statuses.set(key, (t.statuses.get(key) ?? 0) + 1);

/** POST until 201, as target-stitch would: honour Retry-After, retry 5xx and network errors. */
async function postUntilAccepted(base: () => string, body: string, tally: Tally, until: number): Promise<boolean> {
  for (;;) {
    const a = await postOnce(base(), body);
    count(tally, String(a.status));
    if (a.status === 201) {
      tally.accepted.push(a.ms);
      return true;
    }
    if (typeof a.status === "number" && a.status >= 400 && a.status < 500 && a.status !== 408 && a.status !== 429) {
      tally.gaveUp++;
      return false;
    }
    if (performance.now() > until) {
      tally.gaveUp++;
      return false;
    }
    const wait = a.retryAfter !== null ? a.retryAfter * 1000 : 200;
    await sleep(wait * (0.5 + Math.random()));
  }
}

/** Trickle a body the server will time out (408), then start again. */
function slowUpload(base: string): Promise<string> {
  const u = new URL(base);
  return new Promise((resolve) => {
    const req = http.request({
      host: u.hostname,
      port: u.port,
      path: "/v2/import/batch",
      method: "POST",
      agent: false,
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", "content-length": 100_000 },
    });
    let timer: NodeJS.Timeout | undefined;
    const done = (what: string) => {
      clearTimeout(timer);
      req.destroy();
      resolve(what);
    };
    req.on("response", (res) => {
      res.resume();
      done(String(res.statusCode));
    });
    req.on("error", () => done("network"));
    const drip = () => {
      req.write("          ");
      timer = setTimeout(drip, 100);
    };
    req.write("{");
    drip();
  });
}

/** Send all of a body but its last bytes, then cut the connection. */
function abortMidBody(base: string, body: string): Promise<void> {
  const u = new URL(base);
  return new Promise((resolve) => {
    const socket = net.connect({ host: u.hostname, port: Number(u.port) }, () => {
      const head =
        `POST /v2/import/batch HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${TOKEN}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
      socket.write(head + body.slice(0, Math.floor(body.length * (0.5 + Math.random() * 0.49))), () => {
        setTimeout(() => {
          socket.destroy();
          resolve();
        }, 20);
      });
    });
    socket.on("error", () => resolve());
  });
}

// ---------------------------------------------------------------- batches and the model

let sequence = 1_795_465_705_836_000_000n;

interface Version {
  seq: bigint;
  name: string | null;
  deleted: boolean;
}

type Model = Map<string, Map<number, Version>>;

function makeBatch(table: string, size: number, keys: number): { body: string; versions: [number, Version][] } {
  const parts: string[] = [];
  const versions: [number, Version][] = [];
  for (let i = 0; i < size; i++) {
    const id = Math.floor(Math.random() * keys);
    sequence += 1n;
    if (Math.random() < 0.1) {
      parts.push(`{"action":"delete","sequence":${sequence},"data":{"id":${id}}}`);
      versions.push([id, { seq: sequence, name: null, deleted: true }]);
    } else {
      const name = `v${sequence % 100000n}`;
      parts.push(`{"action":"upsert","sequence":${sequence},"data":{"id":${id},"name":"${name}"}}`);
      versions.push([id, { seq: sequence, name, deleted: false }]);
    }
  }
  const body = `{"table_name":"${table}","key_names":["id"],"schema":${JSON.stringify(TABLE_SCHEMA)},"messages":[${parts.join(",")}]}`;
  return { body, versions };
}

/** Client c's batch for the memory phase: 20,000 upserts of keys of its own, 900-byte names. */
function memoryBatch(c: number): { body: string; versions: [number, Version][] } {
  const parts: string[] = [];
  const versions: [number, Version][] = [];
  for (let i = 0; i < 20_000; i++) {
    const id = c * 20_000 + i;
    sequence += 1n;
    const name = `${id}:`.padEnd(900, "x");
    parts.push(`{"action":"upsert","sequence":${sequence},"data":{"id":${id},"name":"${name}"}}`);
    versions.push([id, { seq: sequence, name, deleted: false }]);
  }
  const body = `{"table_name":"memory","key_names":["id"],"schema":${JSON.stringify(TABLE_SCHEMA)},"messages":[${parts.join(",")}]}`;
  return { body, versions };
}

function apply(model: Model, table: string, versions: [number, Version][]): void {
  let t = model.get(table);
  if (t === undefined) model.set(table, (t = new Map<number, Version>()));
  for (const [id, v] of versions) {
    const cur = t.get(id);
    if (cur === undefined || v.seq > cur.seq) t.set(id, v);
  }
}

async function check(pool: pg.Pool, model: Model): Promise<{ rows: number; wrong: number; missing: number; extra: number }> {
  let rows = 0;
  let wrong = 0;
  let missing = 0;
  let extra = 0;
  for (const [table, expected] of model) {
    const r = await pool.query<{ id: string; name: string | null; seq: string; deleted: boolean }>(
      `select id::text, name, _sequence::text as seq, _deleted_at is not null as deleted from "${SCHEMA}"."${table}"`,
    );
    const seen = new Set<number>();
    for (const row of r.rows) {
      rows++;
      const id = Number(row.id);
      seen.add(id);
      const want = expected.get(id);
      if (want === undefined) extra++;
      else if (BigInt(row.seq) !== want.seq || row.deleted !== want.deleted || (!want.deleted && row.name !== want.name)) wrong++;
    }
    for (const id of expected.keys()) if (!seen.has(id)) missing++;
  }
  return { rows, wrong, missing, extra };
}

// ---------------------------------------------------------------- phases

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
}

const fmtStatuses = (t: Tally) =>
  [...t.statuses.entries()]
    .sort()
    .map(([k, v]) => `${k}: ${v}`)
    .join(", ");

async function memoryPhase(databaseUrl: string, pool: pg.Pool, serverArgs: string[]): Promise<boolean> {
  const clients = 10;
  peakRssKb = 0;
  const server = await startServe(databaseUrl, 0, serverArgs);
  const model: Model = new Map();
  const batches = Array.from({ length: clients }, (_, c) => memoryBatch(c));
  const mib = Buffer.byteLength(batches[0]?.body ?? "") / MiB;
  console.log(
    `memory: ${clients} clients at once, each one batch of 20,000 messages (${mib.toFixed(1)} MiB), server flags: ${serverArgs.join(" ") || "(defaults)"}`,
  );
  const tally = newTally();
  const started = performance.now();
  const ok = await Promise.all(
    batches.map(async (b) => {
      const accepted = await postUntilAccepted(() => server.url, b.body, tally, performance.now() + 300_000);
      if (accepted) apply(model, "memory", b.versions);
      return accepted;
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await stopServe(server);
  const result = await check(pool, model);
  const committed = ok.filter(Boolean).length;
  console.log(`  committed ${committed}/${clients} batches in ${seconds.toFixed(1)} s; attempts by status: ${fmtStatuses(tally)}`);
  const peakMb = peakRssKb / 1024;
  console.log(`  server peak RSS: ${peakMb.toFixed(0)} MB (target ≤ 600 MB: ${peakMb <= 600 ? "met" : "NOT met"})`);
  console.log(`  table: ${result.rows} rows, ${result.wrong} wrong, ${result.missing} missing, ${result.extra} extra`);
  return committed === clients && result.wrong + result.missing + result.extra === 0 && peakMb <= 600;
}

async function mixPhase(databaseUrl: string, pool: pg.Pool, seconds: number): Promise<boolean> {
  peakRssKb = 0;
  const port = await freePort();
  const flags = ["--body-timeout", "3", "--shutdown-grace", "5", "--max-in-flight", "8"];
  let server = await startServe(databaseUrl, port, flags);
  const base = () => server.url;
  const model: Model = new Map();
  const good = newTally();
  const slow = newTally();
  const deadline = performance.now() + seconds * 1000;
  const hardStop = deadline + 60_000; // a batch in retry at the deadline gets a minute more
  const sizes = [1, 10, 100, 1000, 5000];
  let aborted = 0;
  let kills = 0;
  let restarts = 0;
  let running = true;

  const wellBehaved = async (w: number) => {
    while (performance.now() < deadline) {
      const table = w % 2 === 0 ? "mix_a" : "mix_b";
      const b = makeBatch(table, sizes[Math.floor(Math.random() * sizes.length)] as number, 5000);
      if (await postUntilAccepted(base, b.body, good, hardStop)) apply(model, table, b.versions);
    }
  };
  const slowClient = async () => {
    while (performance.now() < deadline) {
      const status = await slowUpload(base());
      count(slow, status);
      if (status === "network") await sleep(200); // e.g. while the server restarts
    }
  };
  const aborter = async () => {
    while (performance.now() < deadline) {
      // Sequences above any real one: were such a batch ever loaded, the check would see it.
      const saved = sequence;
      sequence = 9_000_000_000_000_000_000n + BigInt(aborted) * 10_000n;
      const b = makeBatch(Math.random() < 0.5 ? "mix_a" : "mix_b", 1000, 5000);
      sequence = saved;
      await abortMidBody(base(), b.body);
      aborted++;
      await sleep(100);
    }
  };
  const killer = async () => {
    while (running && performance.now() < deadline) {
      await sleep(3000);
      const r = await pool
        .query(
          "select count(pg_terminate_backend(pid))::int as n from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend' and application_name <> 'seqload-bench-killer'",
        )
        .catch(() => ({ rows: [{ n: 0 }] }));
      kills += (r.rows[0] as { n: number }).n;
    }
  };
  const restarter = async () => {
    await sleep((seconds * 1000) / 2);
    const old = server;
    await stopServe(old);
    server = await startServe(databaseUrl, port, flags);
    restarts++;
  };

  console.log(
    `mix: ${seconds} s: 6 well-behaved clients (1–5,000 messages, upserts and deletes), 5 slow clients, 2 clients aborting mid-body, connections killed every 3 s, one restart`,
  );
  const started = performance.now();
  await Promise.all([
    ...Array.from({ length: 6 }, (_, w) => wellBehaved(w)),
    ...Array.from({ length: 5 }, slowClient),
    aborter(),
    aborter(),
    killer(),
    restarter(),
  ]);
  running = false;
  const elapsed = (performance.now() - started) / 1000;
  await stopServe(server);
  const result = await check(pool, model);
  const messages = [...model.values()].reduce((n, t) => n + t.size, 0);
  console.log(`  ran ${elapsed.toFixed(1)} s; ${good.accepted.length} batches committed (${messages} keys in the model)`);
  console.log(`  latency of 201s: p50 ${percentile(good.accepted, 50).toFixed(0)} ms, p99 ${percentile(good.accepted, 99).toFixed(0)} ms`);
  console.log(`  well-behaved attempts by status: ${fmtStatuses(good)}; gave up: ${good.gaveUp}`);
  console.log(`  slow clients: ${fmtStatuses(slow)}; aborted mid-body: ${aborted}`);
  console.log(`  connections killed: ${kills}; server restarts: ${restarts}`);
  console.log(`  server peak RSS: ${(peakRssKb / 1024).toFixed(0)} MB`);
  console.log(`  final tables: ${result.rows} rows, ${result.wrong} wrong, ${result.missing} missing, ${result.extra} extra`);
  return good.gaveUp === 0 && result.wrong + result.missing + result.extra === 0;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      phase: { type: "string", default: "all" },
      seconds: { type: "string", default: "60" },
      "server-args": { type: "string", default: "" },
    },
  });
  const phase = values.phase;
  if (!["memory", "mix", "all"].includes(phase)) throw new Error(`--phase must be memory, mix or all, got ${phase}`);
  const seconds = Number(values.seconds);
  if (!(seconds > 0 && seconds <= 600)) throw new Error(`--seconds must be from 1 to 600, got ${values.seconds}`);
  const db = await provideDatabase();
  const pool = new pg.Pool({ connectionString: db.connectionString, max: 2, application_name: "seqload-bench-killer" });
  pool.on("error", () => {});
  let ok = true;
  try {
    await pool.query(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`);
    console.log(`bench:serve against ${db.source}`);
    if (phase !== "mix")
      ok =
        (await memoryPhase(
          db.connectionString,
          pool,
          values["server-args"].split(" ").filter((a) => a !== ""),
        )) && ok;
    if (phase !== "memory") ok = (await mixPhase(db.connectionString, pool, seconds)) && ok;
  } finally {
    await pool.query(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`).catch(() => {});
    await pool.end();
    await db.stop();
  }
  console.log(ok ? "bench:serve: OK" : "bench:serve: FAILED (see above)");
  process.exitCode = ok ? 0 : 1;
}

await main();
