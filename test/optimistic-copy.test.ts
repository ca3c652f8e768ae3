// The optimistic COPY (src/route.ts): a large batch whose sampled keys are all new goes straight
// into the table under a savepoint, in key order when its key is an integer; a key that exists
// after all (23505), or a racing loader that deadlocks with it (40P01), sends it back to the
// savepoint and through the staged upsert. Either way the rows, the LoadResult and the load-log
// row are the upsert's. On Citus (test/citus.test.ts says why) there is no savepoint: any failure
// of that COPY rolls the loader's transaction back and the batch runs again on the staged upsert;
// in a caller's transaction, which seqload cannot roll back, every batch takes the staged upsert.
import fc from "fast-check";
import { LosslessNumber } from "lossless-json";
import pg from "pg";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type CollapsedBatch, collapseBatch, keyOrdered } from "../src/collapse.js";
import { type Batch, type LoadResult, createLoader } from "../src/index.js";
import { parseJson } from "../src/json.js";
import { optimisticCopy } from "../src/route.js";
import { checkBatch } from "../src/validate.js";
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
    /** The clients that sent them. */
    clients(): pg.Client[] {
      return [...new Set(spy.mock.contexts as pg.Client[])];
    },
  };
}

/**
 * The way a batch took, read from its statements: "optimistic" (a COPY into the table that
 * stayed), "fallback" then "staged" (one rolled back: to the savepoint, or on Citus the whole
 * transaction, then the staged upsert), "staged", or "" (no COPY).
 */
function pathOf(texts: string[]): string {
  const out: string[] = [];
  for (const t of texts) {
    if (t.startsWith("COPY pg_temp.seqload_stage")) out.push("staged");
    else if (t.startsWith("COPY ")) out.push("optimistic");
    else if ((t === "ROLLBACK TO SAVEPOINT seqload_optimistic" || t === "ROLLBACK") && out.at(-1) === "optimistic")
      out[out.length - 1] = "fallback";
  }
  return out.join(" ");
}

/** Deterministic content for (key, sequence): every 7th version a delete. As text keys: the id's digits. */
function message(id: number, sequence: number, key: "integer" | "text" = "integer") {
  const k = key === "integer" ? id : String(id);
  return (id * 31 + sequence) % 7 === 0
    ? { action: "delete", sequence, data: { id: k } }
    : { action: "upsert", sequence, data: { id: k, v: `${id}@${sequence}` } };
}

const textSchema = { properties: { id: { type: "string" }, v: { type: ["null", "string"] } } };

const batchOf = (table: string, versions: { id: number; sequence: number }[], key: "integer" | "text" = "integer"): Batch => ({
  table_name: table,
  key_names: ["id"],
  schema: key === "integer" ? schema : textSchema,
  messages: versions.map((x) => message(x.id, x.sequence, key)),
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
    expect(taken).toEqual(["", "optimistic", "fallback staged"]);
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
      expect(taken).toEqual(["", "fallback staged"]);
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
  // Text keys: a COPY of them keeps the batch's order (JavaScript does not know the column's
  // collation), so two batches in opposite orders can deadlock.
  it("a deadlock between optimistic COPYs in opposite orders (text keys) sends one back to the upsert; a COPY that meets committed keys too", async () => {
    const t = uniqueTable("deadlock");
    const loader = await ctx.loader({ copyThreshold: 1000 });
    await loader.loadBatch(batchOf(t, [{ id: 0, sequence: 1 }], "text"));
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
      const loadA = loader.loadBatch(batchOf(t, versions.a, "text"), { client: a });
      await untilWaiting(1);
      const loadB = loader.loadBatch(batchOf(t, versions.b, "text"), { client: b });
      await untilWaiting(2);
      const loadD = loader.loadBatch(batchOf(t, versions.d, "text"), { client: d });
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
      // load); the deadlock made one of A and B give way. (On Citus, in callers' transactions: no
      // optimistic COPY.)
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

  // On Citus, callers' transactions take no optimistic COPY, and the waits are on the workers
  // (pg_blocking_pids on the coordinator does not see them): there the same race must end in the
  // model's state by the staged upsert.
  it("integer keys are COPYed in key order whatever the batch's order: loaders in opposite orders wait for each other instead of deadlocking", async () => {
    const t = uniqueTable("ordered");
    const loader = await ctx.loader({ copyThreshold: 1000 });
    await loader.loadBatch(batchOf(t, [{ id: 0, sequence: 1 }]));
    const keys = range(1, 4000);
    const mid = 2000;
    const versions = {
      a: keys.map((id) => ({ id, sequence: 10 + (id % 3) })),
      b: keys.map((id) => ({ id, sequence: 10 + (id % 5) })).reverse(),
    };
    // A holder's uncommitted row in the middle stops A, ascending, there. B's batch is descending:
    // in batch order its COPY would insert 4000…2001 and wait for the holder at 2000, and the two
    // would deadlock when the holder goes. In key order it starts at 1, which A holds: it waits for A.
    const holder = await transactionClient("10s");
    const [a, b] = [await transactionClient("10s"), await transactionClient("10s")];
    const pid = async (c: pg.Client) => ((await c.query("select pg_backend_pid() as pid")).rows[0] as { pid: number }).pid;
    const [aPid, bPid] = [await pid(a), await pid(b)];
    const statements = recordStatements();
    try {
      await holder.query(`insert into "${t}" (id, _sequence) values ($1, 1)`, [mid]);
      const loadA = loader.loadBatch(batchOf(t, versions.a), { client: a });
      await untilWaiting(1);
      const loadB = loader.loadBatch(batchOf(t, versions.b), { client: b });
      await untilWaiting(2);
      if (!citus) {
        const [blocking] = (await ctx.query("select pg_blocking_pids($1) as pids", [bPid])) as [{ pids: number[] }];
        expect(blocking.pids).toEqual([aPid]);
      }
      await holder.query("rollback");
      const resultA = await loadA;
      await a.query("commit");
      const resultB = await loadB;
      await b.query("commit");
      // A went straight in; B met A's committed keys (23505) and took the upsert.
      expect([pathOf(statements.texts(a)), pathOf(statements.texts(b))]).toEqual(
        citus ? ["staged", "staged"] : ["optimistic", "fallback staged"],
      );
      for (const r of [resultA, resultB]) expect(r.inserted + r.updated + r.deleted + r.skipped).toBe(keys.length);
      expect(await state(t)).toEqual(model([{ id: 0, sequence: 1 }, ...versions.a, ...versions.b]));
      if (citus) return;
      // A's rows lie in the heap in key order, as its COPY sent them (those B did not update: an
      // update writes a new version elsewhere).
      const heap = await ctx.query<{ id: number }>(
        `select id::int as id from "${t}" where id > 0 and _sequence = 10 + id % 3 order by ctid`,
      );
      const inHeap = heap.map((r) => r.id);
      expect(inHeap.length).toBeGreaterThan(1000);
      expect(inHeap).toEqual([...inHeap].sort((x, y) => x - y));
    } finally {
      for (const c of [holder, a, b]) await c.end().catch(() => {});
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
      // Both ways were taken: COPYs that stayed and COPYs that gave way.
      const texts = statements.texts();
      const savepoints = texts.filter((text) => text.includes("SAVEPOINT seqload_optimistic"));
      if (citus) {
        // No savepoint: a COPY into the table that fails rolls the whole transaction back.
        expect(savepoints).toEqual([]);
        const paths = statements.clients().map((client) => pathOf(statements.texts(client)));
        expect(paths.join(" ")).toMatch(/\boptimistic\b/);
        expect(paths.join(" ")).toMatch(/\bfallback staged\b/);
      } else
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

describe("keyOrdered (the optimistic COPY's row order)", () => {
  const collapsed = (json: string, properties: Record<string, unknown>, keyNames: string[]): CollapsedBatch => {
    const messages = (parseJson(json) as { data: unknown }[]).map((m, i) => ({ action: "upsert", sequence: i + 1, data: m.data }));
    const v = checkBatch({ table_name: "t", key_names: keyNames, schema: { properties }, messages });
    return collapseBatch(
      v,
      new Map(Object.entries(properties).map(([name, p]) => [name, (p as { type: string }).type === "string" ? "text" : "bigint"])),
    );
  };
  const ids = (c: CollapsedBatch, order: CollapsedBatch["winners"] | null) => order?.map((m) => (m.data as Record<string, unknown>).id);

  it("sorts integer keys numerically, beyond 2^53 exactly (lossless numbers), and composite keys column by column", () => {
    const big = "9007199254740993"; // 2^53 + 1: a double would round it to 2^53
    const c = collapsed(
      `[{"data":{"id":${big}}},{"data":{"id":10}},{"data":{"id":-3}},{"data":{"id":9007199254740992}},{"data":{"id":2}}]`,
      { id: { type: "integer" } },
      ["id"],
    );
    expect(ids(c, keyOrdered(c))?.map(String)).toEqual(["-3", "2", "10", "9007199254740992", big]);
    const two = collapsed(
      '[{"data":{"a":2,"b":1}},{"data":{"a":1,"b":5}},{"data":{"a":1,"b":-1}},{"data":{"a":2,"b":0}}]',
      { a: { type: "integer" }, b: { type: "integer" } },
      ["a", "b"],
    );
    expect(keyOrdered(two)?.map((m) => m.data)).toEqual([
      { a: 1, b: -1 },
      { a: 1, b: 5 },
      { a: 2, b: 0 },
      { a: 2, b: 1 },
    ]);
  });

  it("gives the winners sorted by key, each once, for any unique integer keys: dense, sparse, negative, beyond 2^53", () => {
    const asBatch = (keys: bigint[]): CollapsedBatch => ({
      columns: ["id"],
      types: ["bigint"],
      keyNames: ["id"],
      // As the parser gives them: a number when safe, else a LosslessNumber.
      winners: keys.map((k, index) => ({
        index,
        action: "upsert" as const,
        sequence: 1n,
        data: { id: k >= -(2n ** 53n) && k <= 2n ** 53n ? Number(k) : new LosslessNumber(k.toString()) },
      })),
      deletes: 0,
      collapsed: 0,
      minSequence: 1n,
      maxSequence: 1n,
      activations: [],
    });
    // One domain per batch, so that each way keyOrdered sorts is taken, and mixed ones.
    const dense = fc.bigInt({ min: 0n, max: 300n }); // straight into slots
    const sparse = fc.bigInt({ min: -(10n ** 12n), max: 10n ** 12n }); // packed with their positions
    const wide = fc.bigInt({ min: -(2n ** 53n), max: 2n ** 53n }); // too wide to pack: through a Map
    const full = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }); // beyond 2^53: compared as bigints
    const keySets = fc.oneof(
      ...[dense, sparse, wide, full, fc.oneof(dense, sparse, wide, full)].map((key) => fc.uniqueArray(key, { maxLength: 200 })),
    );
    fc.assert(
      fc.property(keySets, (keys) => {
        const c = asBatch(keys);
        const ordered = keyOrdered(c);
        expect(ordered).not.toBeNull();
        expect((ordered ?? []).map((m) => c.winners.indexOf(m)).sort((x, y) => x - y)).toEqual(keys.map((_, i) => i));
        expect((ordered ?? []).map((m) => keys[m.index] as bigint)).toEqual([...keys].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)));
      }),
      { numRuns: 300 },
    );
  });

  it("leaves text keys (and keyless batches) in batch order: null", () => {
    const c = collapsed('[{"data":{"id":"b"}},{"data":{"id":"a"}}]', { id: { type: "string" } }, ["id"]);
    expect(keyOrdered(c)).toBeNull();
    const keyless = collapsed('[{"data":{"id":2}},{"data":{"id":1}}]', { id: { type: "integer" } }, []);
    expect(keyOrdered(keyless)).toBeNull();
    expect(ids(keyless, keyless.winners)).toEqual([2, 1]);
  });
});
