/**
 * `seqload serve` with many tenants: N schema-bound tokens (sha256: entries in a tokens file), one
 * small batch per tenant per round, from a few concurrent clients. Prints startup time, ms per
 * batch for the first round (schema and table created), a round with every tenant's loader cached,
 * a round with every tenant evicted from the LRU, the process's memory, and the prepared
 * statements PostgreSQL keeps per pooled connection.
 *
 *   npm run build && node dist/bench/serve-tenants.js [--tenants N] [--clients N]   (--help)
 *
 * Database: DATABASE_URL if set (tenant schemas bench_t* are dropped afterwards), else a
 * throw-away embedded PostgreSQL in a temp dir.
 */
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import pg from "pg";
import { startEmbeddedPostgres } from "../src/embedded.js";
import { startServer } from "../src/serve.js";

const USAGE = `usage: node dist/bench/serve-tenants.js [--tenants N] [--clients N]
  --tenants N   schema-bound tokens, one schema each (default 1,000)
  --clients N   concurrent HTTP clients (default 4; the pool has 4 connections too)
Uses DATABASE_URL if set, else a throw-away embedded PostgreSQL in a temp dir.`;

const args = process.argv.slice(2);
if (args.includes("--help") || args.includes("-h")) {
  console.log(USAGE);
  process.exit(0);
}
const flag = (name: string, dflt: number): number => {
  const i = args.indexOf(name);
  const v = i === -1 ? dflt : Number(args[i + 1]);
  if (!Number.isSafeInteger(v) || v < 1) {
    console.error(`${name} must be a positive integer\n${USAGE}`);
    process.exit(1);
  }
  return v;
};
const TENANTS = flag("--tenants", 1000);
const CLIENTS = flag("--clients", 4);
const POOL = 4;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "seqload-bench-tenants-"));
const embedded = process.env.DATABASE_URL ? null : await startEmbeddedPostgres({ dataDir: path.join(dir, "pg"), persistent: false });
const url = process.env.DATABASE_URL ?? (embedded as { connectionString: string }).connectionString;
const tenants = Array.from({ length: TENANTS }, (_, i) => ({ token: randomBytes(24).toString("hex"), schema: `bench_t${i}` }));
const file = path.join(dir, "tokens");
const sha = (t: string) => createHash("sha256").update(t).digest("hex");
fs.writeFileSync(file, tenants.map((t) => `sha256:${sha(t.token)}@${t.schema}`).join("\n"), { mode: 0o600 });
const pool = new pg.Pool({ connectionString: url, max: POOL });

/** One batch per tenant from CLIENTS concurrent clients; ms per batch (wall time / batches). */
async function round(base: string, sequence: number): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (next < tenants.length) {
        const i = next++;
        const t = tenants[i] as { token: string };
        const body = {
          table_name: "events",
          key_names: ["id"],
          schema: { properties: { id: { type: "integer" }, v: { type: "string" } } },
          messages: [{ action: "upsert", sequence, data: { id: i, v: "x" } }],
        };
        const r = await fetch(`${base}/v2/import/batch`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${t.token}` },
          body: JSON.stringify(body),
        });
        if (r.status !== 201) throw new Error(`tenant ${i}: ${r.status} ${await r.text()}`);
      }
    }),
  );
  return (performance.now() - t0) / tenants.length;
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
try {
  console.log(`${TENANTS} tenants, ${CLIENTS} clients, pool of ${POOL}`);
  for (const [label, cache] of [
    ["every loader cached", TENANTS],
    ["every tenant evicted", Math.max(1, Math.floor(TENANTS / 10))],
  ] as const) {
    const t0 = performance.now();
    const server = await startServer({
      loaderOptions: { pool },
      port: 0,
      host: "127.0.0.1",
      tokens: [],
      tokensFile: file,
      watchTokensFile: false,
      insecureNoAuth: false,
      maxSchemasCached: cache,
      log: () => {},
    });
    const startup = performance.now() - t0;
    const first = await round(server.url, 1);
    const second = await round(server.url, 2);
    const m = process.memoryUsage();
    console.log(
      `--max-schemas-cached ${cache}: startup ${startup.toFixed(0)} ms; ` +
        `round 1 ${first.toFixed(1)} ms/batch${cache === TENANTS ? " (schemas and tables created)" : ""}; ` +
        `round 2 ${second.toFixed(1)} ms/batch (${label}); loaders created ${server.tenants.created}, cached ${server.tenants.cached}; ` +
        `rss ${mib(m.rss)}, heap ${mib(m.heapUsed)}`,
    );
    await server.close();
  }
  const clients = await Promise.all(Array.from({ length: POOL }, () => pool.connect()));
  const prepared = await Promise.all(
    clients.map(async (c) => (await c.query<{ n: number }>("select count(*)::int as n from pg_prepared_statements")).rows[0]?.n ?? 0),
  );
  for (const c of clients) c.release();
  console.log(`prepared statements per pooled connection (this pool sets no maxUses): ${prepared.join(", ")}`);
} finally {
  if (embedded === null) {
    const c = await pool.connect();
    for (const t of tenants) await c.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(t.schema)} CASCADE`);
    await c.query("DELETE FROM seqload.loads WHERE schema_name LIKE 'bench\\_t%'");
    await c.query("DELETE FROM seqload.tables WHERE schema_name LIKE 'bench\\_t%'");
    c.release();
  }
  await pool.end();
  await embedded?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
