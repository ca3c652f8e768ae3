// The optimistic COPY (src/route.ts): a large batch whose sampled keys are all new goes straight
// into the table under a savepoint; a key that exists after all (23505), or a racing loader that
// deadlocks with it (40P01), sends it back to the savepoint and through the staged upsert. Either
// way the rows, the LoadResult and the load-log row are the upsert's. On Citus the optimistic COPY
// is off (test/citus.test.ts says why): there every batch here must take the staged upsert, with
// the same results.
import pg from "pg";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type Batch, type LoadResult, createLoader } from "../src/index.js";
import { optimisticCopy } from "../src/route.js";
import { uniqueTable, useDatabase } from "./helpers/context.js";
import { citusWorkers } from "./helpers/db.js";

const ctx = useDatabase("optimistic");
const schema = { properties: { id: { type: "integer" }, v: { type: ["null", "string"] } } };
const citus = citusWorkers().length > 0;

afterEach(() => {
  optimisticCopy.enabled = true;
  vi.restoreAllMocks();
});

/** Every statement pg clients send from now on, with the client that sent it. */
function recordStatements() {
  const spy = vi.spyOn(pg.Client.prototype, "query");
  const textOf = (q: unknown) => (typeof q === "string" ? q : typeof q === "object" && q !== null && "text" in q ? String(q.text) : "");
  return {
    /** The statements, optionally of one client only. */
    texts(client?: pg.Client): string[] {
      return spy.mock.calls.flatMap((args, i) => (client === undefined || spy.mock.contexts[i] === client ? [textOf(args[0])] : []));
    },
  };
}

/** The way a batch took, read from its statements: "optimistic", "fallback" then "staged", "staged", or "" (no COPY). */
function pathOf(texts: string[]): string {
  const out: string[] = [];
  for (const t of texts) {
    if (t === "RELEASE SAVEPOINT seqload_optimistic" && out.at(-1) !== "fallback") out.push("optimistic");
    else if (t === "ROLLBACK TO SAVEPOINT seqload_optimistic") out.push("fallback");
    else if (t.startsWith("COPY pg_temp.seqload_stage")) out.push("staged");
  }
  return out.join(" ");
}

/** The way a batch takes: on Citus, where the optimistic COPY is off, the staged upsert. */
const expected = (path: string) => (citus ? path.replace(/^(optimistic|fallback staged)$/, "staged") : path);

/** Deterministic content for (key, sequence): every 7th version a delete. */
function message(id: number, sequence: number) {
  return (id * 31 + sequence) % 7 === 0
    ? { action: "delete", sequence, data: { id } }
    : { action: "upsert", sequence, data: { id, v: `${id}@${sequence}` } };
}

const batchOf = (table: string, versions: { id: number; sequence: number }[]): Batch => ({
  table_name: table,
  key_names: ["id"],
  schema,
  messages: versions.map((x) => message(x.id, x.sequence)),
});

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

/** The table as the model sees it: per key the sequence, tombstone or not, and v (live rows). */
async function state(table: string) {
  return ctx.query<{ id: string; seq: string; deleted: boolean; v: string | null }>(
    `select id::text, _sequence::text as seq, _deleted_at is not null as deleted, case when _deleted_at is null then v end as v
       from "${table}" order by id::bigint`,
  );
}

/** The model: per key the highest sequence, with its message's content. */
function model(versions: { id: number; sequence: number }[]) {
  const best = new Map<number, number>();
  for (const x of versions) best.set(x.id, Math.max(best.get(x.id) ?? -Infinity, x.sequence));
  return [...best.entries()]
    .sort(([a], [b]) => a - b)
    .map(([id, seq]) => {
      const deleted = message(id, seq).action === "delete";
      return { id: String(id), seq: String(seq), deleted, v: deleted ? null : `${id}@${seq}` };
    });
}

/** The table's load-log rows, without what differs between two tables (name, id, time). */
async function loads(table: string) {
  return ctx.query(
    `select received, collapsed, inserted, updated, deleted, skipped, min_sequence::text, max_sequence::text, table_version, rejected
       from seqload.loads where table_name = $1 order by loaded_at, id`,
    [table],
  );
}

const withoutTable = (r: LoadResult) => ({ ...r, table: undefined });

/**
 * Load `batches` into two tables with the same history: one as the loader does it, one with the
 * optimistic COPY turned off (the staged upsert). Both must end with the same rows, results and
 * load log; returns the first table and the way each batch took into it.
 */
async function loadTwins(base: string, batches: ((table: string) => Batch)[]): Promise<{ table: string; taken: string[] }> {
  const loader = await ctx.loader();
  const [table, twin] = [uniqueTable(base), uniqueTable(`${base}_upsert`)];
  const statements = recordStatements();
  const load = async (batch: Batch) => {
    const before = statements.texts().length;
    const result = withoutTable(await loader.loadBatch(batch));
    return { result, path: pathOf(statements.texts().slice(before)) };
  };
  const results: unknown[] = [];
  const twinResults: unknown[] = [];
  const taken: string[] = [];
  for (const batch of batches) {
    optimisticCopy.enabled = true;
    const mine = await load(batch(table));
    optimisticCopy.enabled = false;
    const upsert = await load(batch(twin));
    results.push(mine.result);
    twinResults.push(upsert.result);
    taken.push(mine.path);
    expect(upsert.path).not.toMatch(/optimistic|fallback/);
  }
  expect(results).toEqual(twinResults);
  expect(await state(table)).toEqual(await state(twin));
  expect(await loads(table)).toEqual(await loads(twin));
  // A tombstone COPYed straight in is dated like the upsert's: the transaction's time, which is
  // also its _loaded_at (not on Citus, whose workers fill in the defaults).
  if (!citus) {
    for (const t of [table, twin]) {
      const [{ n }] = (await ctx.query(`select count(*)::int as n from "${t}" where _deleted_at <> _loaded_at`)) as [{ n: number }];
      expect(n).toBe(0);
    }
  }
  return { table, taken };
}

describe("a large batch of new keys into an existing table", () => {
  it("goes straight into the table by COPY when the sample finds no key, and gives what the upsert gives", async () => {
    const versions = [range(100_001, 20_000).map((id) => ({ id, sequence: 5 }))];
    // The second batch: new keys again, plus key 100,002 of the first (not among the sampled keys),
    // with a higher sequence: the COPY meets it, and the upsert takes over.
    versions.push([...range(200_001, 20_000).map((id) => ({ id, sequence: 6 })), { id: 100_002, sequence: 9 }]);
    const { taken } = await loadTwins("fresh", [
      (t) => batchOf(t, [{ id: 1, sequence: 1 }]), // the table exists from here on
      (t) => batchOf(t, versions[0] as { id: number; sequence: number }[]),
      (t) => batchOf(t, versions[1] as { id: number; sequence: number }[]),
    ]);
    expect(taken).toEqual(["", "optimistic", "fallback staged"].map(expected));
  });

  // 20,000 new keys and one stored key, at position 1 of the batch: the sample takes positions
  // 0, 78, 156… of its 20,001 rows, so it finds no stored key and the COPY meets it.
  describe.each([
    { stored: "lower", incoming: "upsert" },
    { stored: "lower", incoming: "delete" },
    { stored: "higher", incoming: "upsert" },
    { stored: "higher", incoming: "delete" },
  ])("and one key the sample misses, stored at a $stored sequence, an $incoming in the batch", ({ stored, incoming }) => {
    it("falls back to the upsert: the higher sequence stays, counts and load log as the upsert's", async () => {
      const storedSequence = stored === "lower" ? 3 : 50;
      const existing = (t: string): Batch => ({
        ...batchOf(t, []),
        messages: [{ action: "upsert", sequence: storedSequence, data: { id: 7, v: "stored" } }],
      });
      const large = (t: string): Batch => {
        const b = batchOf(
          t,
          range(10_000, 20_000).map((id) => ({ id, sequence: 10 })),
        );
        const mine =
          incoming === "delete"
            ? { action: "delete", sequence: 10, data: { id: 7 } }
            : { action: "upsert", sequence: 10, data: { id: 7, v: "new" } };
        b.messages.splice(1, 0, mine);
        return b;
      };
      const { table, taken } = await loadTwins(`miss_${stored}_${incoming}`, [existing, large]);
      expect(taken).toEqual(["", "fallback staged"].map(expected));
      const [kept] = await ctx.query(`select _sequence::int as seq, v, _deleted_at is not null as deleted from "${table}" where id = 7`);
      if (stored === "higher") expect(kept).toEqual({ seq: 50, v: "stored", deleted: false });
      else if (incoming === "upsert") expect(kept).toEqual({ seq: 10, v: "new", deleted: false });
      else expect(kept).toEqual({ seq: 10, v: "stored", deleted: true }); // a tombstone keeps the columns it replaced
    });
  });
});

/** A pg client of its own, in a transaction whose deadlock_timeout is `deadlockTimeout` (on Citus, on the workers too). */
async function transactionClient(deadlockTimeout: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: ctx.url });
  client.on("error", () => {});
  await client.connect();
  await client.query("begin");
  if (citus) await client.query("set local citus.propagate_set_commands = 'local'");
  await client.query("select set_config('deadlock_timeout', $1, true)", [deadlockTimeout]);
  return client;
}

/** Wait until `n` backends of this database wait for a lock (on Citus: `n` distributed waits). */
async function untilWaiting(n: number): Promise<void> {
  const count = citus
    ? "select count(*)::int as n from citus_lock_waits"
    : "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'";
  for (let i = 0; i < 600; i++) {
    const [row] = (await ctx.query(count)) as [{ n: number }];
    if (row.n >= n) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`fewer than ${n} backends waited for a lock within 30 s`);
}

describe("racing loaders on the same new keys", () => {
  it("a deadlock between optimistic COPYs in opposite orders sends one back to the upsert; a COPY that meets committed keys too", async () => {
    const t = uniqueTable("deadlock");
    const loader = await ctx.loader({ copyThreshold: 1000 });
    await loader.loadBatch(batchOf(t, [{ id: 0, sequence: 1 }]));
    const keys = range(1, 4000);
    const mid = 2000;
    const versions = {
      a: keys.map((id) => ({ id, sequence: 10 + (id % 3) })),
      b: keys.map((id) => ({ id, sequence: 10 + (id % 5) })).reverse(),
      d: keys.map((id) => ({ id, sequence: 10 + (id % 4) })),
    };
    // A holder's uncommitted row in the middle (invisible to the samples) stops A (ascending) and B
    // (descending) halfway. When it goes, each needs a key the other holds: the deadlock. Usually B
    // detects it (its deadlock_timeout is the short one), rolls back to its savepoint, which frees
    // A, and takes the upsert, which waits for A's commit; D, ascending too, waits for A's first key
    // and meets it committed: 23505, the upsert.
    const holder = await transactionClient("10s");
    const [a, b, d] = [await transactionClient("10s"), await transactionClient("200ms"), await transactionClient("10s")];
    const statements = recordStatements();
    try {
      await holder.query(`insert into "${t}" (id, _sequence) values ($1, 1)`, [mid]);
      const loadA = loader.loadBatch(batchOf(t, versions.a), { client: a });
      await untilWaiting(1);
      const loadB = loader.loadBatch(batchOf(t, versions.b), { client: b });
      await untilWaiting(2);
      const loadD = loader.loadBatch(batchOf(t, versions.d), { client: d });
      await untilWaiting(3);
      await holder.query("rollback");
      // Each transaction commits as soon as its batch is loaded: whichever gives way waits for the
      // other's commit in its upsert. Which one that is can vary: PostgreSQL checks a wait for a
      // deadlock once, deadlock_timeout after it began; when the holder goes, A or B takes its key
      // first and the other waits for it, and if that waiter's check runs before the cycle closes
      // (a busy machine), the cycle is found by the other's check, 10 s later.
      const committed = async (load: Promise<LoadResult>, client: pg.Client) => {
        const result = await load;
        await client.query("commit");
        return result;
      };
      const results = await Promise.all([committed(loadA, a), committed(loadB, b), committed(loadD, d)]);
      const paths = [a, b, d].map((c) => pathOf(statements.texts(c)));
      // Each went straight in or gave way once (23505 or 40P01; another error would have failed its
      // load); the deadlock made one of A and B give way.
      if (citus) expect(paths).toEqual(["staged", "staged", "staged"]);
      else {
        for (const path of paths) expect(path).toMatch(/^(optimistic|fallback staged)$/);
        expect([paths[0], paths[1]]).toContain("fallback staged");
      }
      for (const r of results) expect(r.inserted + r.updated + r.deleted + r.skipped).toBe(keys.length);
      expect(await state(t)).toEqual(model([{ id: 0, sequence: 1 }, ...versions.a, ...versions.b, ...versions.d]));
    } finally {
      for (const c of [holder, a, b, d]) await c.end().catch(() => {});
    }
  });

  it("several loaders (separate pools) loading the same new keys in different orders and sequences end in the model's state", async () => {
    const t = uniqueTable("race");
    const orders: ((ids: number[]) => number[])[] = [
      (ids) => ids,
      (ids) => [...ids].reverse(),
      (ids) => ids.filter((id) => id % 2 === 0).concat(ids.filter((id) => id % 2 === 1)),
      (ids) => ids.map((_, i) => ids[(i * 7919) % ids.length] as number), // 7919 is prime: a permutation
    ];
    const loaders = await Promise.all(
      orders.map(async () => {
        // A short deadlock_timeout: the different orders deadlock often, and each wait costs it.
        const pool = new pg.Pool({ connectionString: ctx.url, max: 2, options: "-c deadlock_timeout=100ms" });
        return createLoader({ pool, copyThreshold: 1000 });
      }),
    );
    const statements = recordStatements();
    try {
      await (loaders[0] as (typeof loaders)[number]).loadBatch(batchOf(t, [{ id: 0, sequence: 1 }]));
      const all: { id: number; sequence: number }[] = [{ id: 0, sequence: 1 }];
      for (let round = 0; round < 4; round++) {
        const ids = range(1 + round * 3000, 3000);
        const batches = orders.map((order, i) => order(ids).map((id) => ({ id, sequence: 100 + ((id * (i + 3) + round) % 11) })));
        all.push(...batches.flat());
        await Promise.all(loaders.map((l, i) => l.loadBatch(batchOf(t, batches[i] as { id: number; sequence: number }[]))));
      }
      expect(await state(t)).toEqual(model(all));
      const savepoints = statements.texts().filter((text) => text.includes("SAVEPOINT seqload_optimistic"));
      if (citus) expect(savepoints).toEqual([]);
      else
        expect(savepoints).toEqual(
          expect.arrayContaining(["RELEASE SAVEPOINT seqload_optimistic", "ROLLBACK TO SAVEPOINT seqload_optimistic"]),
        );
    } finally {
      for (const l of loaders) {
        await l.close();
        await l.pool.end();
      }
    }
  });
});
