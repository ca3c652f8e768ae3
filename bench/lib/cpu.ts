/**
 * CPU seconds spent by PostgreSQL, so each figure can be split into "Node" and "server" work and
 * read even on a busy machine (wall time suffers from other load; CPU time mostly does not).
 * Works when the server runs on this host and /proc is readable (embedded PostgreSQL, or a local
 * DATABASE_URL as the same or a privileged user): the server is the postmaster (the parent of our
 * backend) plus all its children, live ones from their own counters and exited ones (backends of
 * closed connections) from the postmaster's cutime/cstime.
 */
import fs from "node:fs/promises";
import type pg from "pg";

/** Linux reports /proc times in USER_HZ, which is 100 on every mainstream kernel. */
const USER_HZ = 100;

interface ProcStat {
  ppid: number;
  /** utime + stime, in ticks. */
  own: number;
  /** cutime + cstime of waited-for children, in ticks. */
  children: number;
}

async function readStat(pid: number | string): Promise<ProcStat | null> {
  try {
    const text = await fs.readFile(`/proc/${pid}/stat`, "utf8");
    // The command name is in parentheses and may contain spaces: parse after the last ")".
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { ppid: Number(f[1]), own: Number(f[11]) + Number(f[12]), children: Number(f[13]) + Number(f[14]) };
  } catch {
    return null;
  }
}

/** Total CPU seconds of the server so far, or null when it cannot be seen from here. */
export type ServerCpu = () => Promise<number>;

export async function serverCpuMeter(pool: pg.Pool): Promise<ServerCpu | null> {
  const r = await pool.query<{ pid: number }>("SELECT pg_backend_pid() AS pid").catch(() => null);
  const backend = r?.rows[0]?.pid;
  if (backend === undefined) return null;
  const own = await readStat(backend);
  if (own === null) return null; // another host, or no /proc
  const postmaster = own.ppid;
  const pm = await readStat(postmaster);
  if (pm === null) return null;
  return async () => {
    const top = await readStat(postmaster);
    let ticks = top === null ? 0 : top.own + top.children;
    const pids = (await fs.readdir("/proc")).filter((d) => /^\d+$/.test(d));
    const stats = await Promise.all(pids.map((p) => readStat(p)));
    for (const s of stats) if (s !== null && s.ppid === postmaster) ticks += s.own;
    return ticks / USER_HZ;
  };
}

/** CPU seconds (user + system) of this Node process so far. */
export function clientCpu(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/**
 * Linux pressure stall information: total µs during which some runnable task waited for a CPU.
 * The share of the run spent so tells how busy the machine was (this bench's own Node and
 * PostgreSQL processes included). Null where /proc/pressure does not exist.
 */
export async function cpuStallMicros(): Promise<number | null> {
  try {
    const text = await fs.readFile("/proc/pressure/cpu", "utf8");
    const m = /^some .*total=(\d+)/m.exec(text);
    return m === null ? null : Number(m[1]);
  } catch {
    return null;
  }
}
