// Concurrency: loaders racing on overlapping keys end where one sequential loader would; DDL races
// succeed; a seeded stress run with killed connections converges.
import fc from "fast-check";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { type Batch, type Loader, type LoadResult, SeqloadError, createLoader } from "../src/index.js";
import { uniqueTable, useDatabase } from "./helpers/context.js";
import { citusWorkers } from "./helpers/db.js";

const ctx = useDatabase("conc");
const schema = { properties: { id: { type: "integer" }, v: { type: ["null", "string"] } } };

/** Deterministic version content: the same (key, sequence) always carries the same action and value. */
function message(id: number, seq: bigint) {
  const h = Number((BigInt(id) * 2654435761n + seq * 40503n) % 97n);
  return h % 5 === 0
    ? { action: "delete", sequence: seq.toString(), data: { id } }
    : { action: "upsert", sequence: seq.toString(), data: { id, v: `${id}@${seq}` } };
}

/** Expected final state: per key the highest sequence; its content is deterministic (see message()). */
function expectedState(all: { id: number; seq: bigint }[]) {
  const best = new Map<number, bigint>();
  for (const m of all) if (!best.has(m.id) || m.seq > (best.get(m.id) as bigint)) best.set(m.id, m.seq);
  return [...best.entries()]
    .sort(([a], [b]) => a - b)
    .map(([id, seq]) => {
      const m = message(id, seq);
      return { id: String(id), seq: seq.toString(), deleted: m.action === "delete", v: m.action === "delete" ? undefined : `${id}@${seq}` };
    });
}

async function readState(table: string) {
  const rows = await ctx.query<{ id: string; seq: string; deleted: boolean; v: string | null }>(
    `select id, _sequence::text as seq, _deleted_at is not null as deleted, v from "${table}" order by id`,
  );
  // A tombstone keeps the columns of whichever version it replaced; which one depends on commit order.
  return rows.map((r) => ({ ...r, v: r.deleted ? undefined : r.v }));
}

async function loadWithCallerRetry(loader: Loader, batch: Batch): Promise<{ result: LoadResult; callerRetries: number }> {
  for (let callerRetries = 0; ; callerRetries++) {
    try {
      return { result: await loader.loadBatch(batch), callerRetries };
    } catch (e) {
      // What a caller does with a typed retryable error: load the same batch again.
      if (e instanceof SeqloadError && e.retryable && callerRetries < 20) continue;
      throw e;
    }
  }
}

describe("property: 1–4 concurrent loaders end in the model's state", () => {
  it("random batches (keys, ties, sequences near ±2^63, deletes, keyless tables) split over concurrent loaders", async () => {
    const loaders = await Promise.all(Array.from({ length: 4 }, () => createLoader({ connectionString: ctx.url, poolSize: 2 })));
    const copyLoaders = await Promise.all(
      Array.from({ length: 2 }, () => createLoader({ connectionString: ctx.url, poolSize: 2, copyThreshold: 0 })),
    );
    const all = [...loaders, ...copyLoaders];
    const seq = fc.oneof(
      fc.bigInt({ min: 0n, max: 8n }),
      fc.bigInt({ min: 2n ** 63n - 6n, max: 2n ** 63n - 1n }),
      fc.bigInt({ min: -(2n ** 63n), max: -(2n ** 63n) + 5n }),
    );
    const batchArb = fc.array(fc.record({ id: fc.integer({ min: 1, max: 8 }), seq }), { minLength: 1, maxLength: 12 });
    let run = 0;
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 1, max: 4 }),
          fc.array(batchArb, { minLength: 1, maxLength: 10 }),
          fc.boolean(),
          async (nLoaders, batches, keyless) => {
            run += 1;
            const t = `model_${run}`;
            const chosen = Array.from({ length: nLoaders }, (_, i) => all[(run + i) % all.length] as Loader);
            // Loader i takes batches i, i+n, i+2n… in order; the loaders run at the same time.
            await Promise.all(
              chosen.map(async (loader, i) => {
                for (let b = i; b < batches.length; b += nLoaders) {
                  const msgs = (batches[b] ?? []).map((m) =>
                    keyless
                      ? { action: "upsert", sequence: m.seq.toString(), data: { id: m.id, v: `${m.id}@${m.seq}` } }
                      : message(m.id, m.seq),
                  );
                  await loadWithCallerRetry(loader, { table_name: t, key_names: keyless ? [] : ["id"], schema, messages: msgs });
                }
              }),
            );
            const flat = batches.flat();
            if (keyless) {
              const rows = await ctx.query<{ v: string }>(`select v from "${t}" order by v`);
              expect(rows.map((r) => r.v)).toEqual(flat.map((m) => `${m.id}@${m.seq}`).sort());
            } else {
              expect(await readState(t)).toEqual(expectedState(flat));
            }
          },
        ),
        { numRuns: 30, seed: 777 },
      );
    } finally {
      await Promise.all(all.map((l) => l.close()));
    }
  });
});

describe("concurrent DDL", () => {
  it("loaders creating one table, adding the same and different columns and widening one column at once all succeed", async () => {
    const t = uniqueTable("ddl");
    const loaders = await Promise.all(Array.from({ length: 8 }, () => createLoader({ connectionString: ctx.url, poolSize: 1 })));
    try {
      for (let round = 0; round < 3; round++) {
        await Promise.all(
          loaders.map((l, i) => {
            const properties: Record<string, object> = { id: { type: "integer" }, same: { type: "string" } };
            properties[`own_${round}_${i}`] = { type: "boolean" }; // a different column per loader
            // bigint → numeric by half of the loaders at once, from round 1 on
            const fraction = i % 2 === 1 && round > 0;
            properties.widen = { type: fraction ? "number" : "integer" };
            return l.loadBatch({
              table_name: t,
              key_names: ["id"],
              schema: { properties },
              messages: [
                {
                  action: "upsert",
                  sequence: round * 10 + i,
                  data: { id: i, same: `r${round}`, [`own_${round}_${i}`]: true, widen: fraction ? i + 0.5 : i },
                },
              ],
            });
          }),
        );
      }
      const cols = await ctx.query<{ n: string; t: string }>(
        "select attname::text as n, format_type(atttypid, atttypmod) as t from pg_attribute where attrelid = $1::regclass and attnum > 0 order by attnum",
        [`"${t}"`],
      );
      expect(cols.filter((c) => c.n.startsWith("own_"))).toHaveLength(24);
      expect(cols.find((c) => c.n === "widen")?.t).toBe("numeric");
      expect(await ctx.query(`select count(*)::int as n, count(distinct same)::int as s from "${t}"`)).toEqual([{ n: 8, s: 1 }]);
      expect(await ctx.query(`select widen::text as w from "${t}" where id = 3`)).toEqual([{ w: "3.5" }]);
    } finally {
      await Promise.all(loaders.map((l) => l.close()));
    }
  });

  it("no DDL (and so no ACCESS EXCLUSIVE lock) when the table already has everything", async () => {
    const t = uniqueTable("nolock");
    const loader = await ctx.loader();
    const batch = { table_name: t, key_names: ["id"], schema, messages: [{ action: "upsert", sequence: 1, data: { id: 1, v: "a" } }] };
    await loader.loadBatch(batch);
    // Another session holds a lock that conflicts with ACCESS EXCLUSIVE but not with inserts.
    const holder = new pg.Client({ connectionString: ctx.url });
    await holder.connect();
    try {
      await holder.query("begin");
      await holder.query(`lock table "${t}" in access share mode`);
      const fresh = await createLoader({ connectionString: ctx.url, lockTimeoutMs: 200, maxRetries: 0 });
      // A fresh loader (no cache) reads the catalog, finds nothing missing and never asks for the lock.
      expect(await fresh.loadBatch({ ...batch, messages: [{ action: "upsert", sequence: 2, data: { id: 1, v: "b" } }] })).toMatchObject({
        updated: 1,
      });
      await fresh.close();
    } finally {
      await holder.query("rollback");
      await holder.end();
    }
  });
});

/**
 * Through a Citus coordinator a batch takes several times longer (shards on two workers, two-phase
 * commit): the killer waits ten times longer between kills, so that batches can still finish, and
 * the run may take longer.
 */
const onCitus = citusWorkers().length > 0;
const stressOptions = { timeout: onCitus ? 540_000 : 180_000 };

describe("stress: loaders racing on overlapping keys while connections are killed", stressOptions, () => {
  it("converges to the sequential state; prints what it raced", async () => {
    const t = uniqueTable("stress");
    const N_LOADERS = 6;
    const BATCHES_PER_LOADER = 40;
    const KEYS = 300;
    let rng = 12345; // seeded LCG: the same run every time
    const rand = (n: number) => {
      rng = (rng * 1103515245 + 12345) % 2147483648;
      return rng % n;
    };
    const url = new URL(ctx.url);
    url.searchParams.set("application_name", "seqload_stress");
    const loaders = await Promise.all(
      Array.from({ length: N_LOADERS }, (_, i) =>
        createLoader({ connectionString: url.toString(), poolSize: 2, maxRetries: 8, copyThreshold: i % 2 === 0 ? 5000 : 50 }),
      ),
    );
    const sent: { id: number; seq: bigint }[] = [];
    const plans = loaders.map(() =>
      Array.from({ length: BATCHES_PER_LOADER }, () => {
        const size = 1 + rand(150);
        return Array.from({ length: size }, () => {
          const m = { id: rand(KEYS), seq: BigInt(rand(1000)) + 1700000000000000000n };
          sent.push(m);
          return m;
        });
      }),
    );
    let killed = 0;
    let stop = false;
    const pace = onCitus ? 10 : 1;
    const killer = (async () => {
      const admin = new pg.Client({ connectionString: ctx.url });
      await admin.connect();
      try {
        while (!stop) {
          await new Promise((r) => setTimeout(r, (40 + rand(60)) * pace));
          const r = await admin.query(
            "select pg_terminate_backend(pid) as ok from pg_stat_activity where application_name = 'seqload_stress' and state = 'active' limit 1",
          );
          killed += r.rows.filter((x: { ok: boolean }) => x.ok).length;
        }
      } finally {
        await admin.end();
      }
    })();
    let callerRetries = 0;
    let rowsRaced = 0;
    try {
      await Promise.all(
        loaders.map(async (loader, i) => {
          for (const plan of plans[i] ?? []) {
            const r = await loadWithCallerRetry(loader, {
              table_name: t,
              key_names: ["id"],
              schema,
              messages: plan.map((m) => message(m.id, m.seq)),
            });
            callerRetries += r.callerRetries;
            rowsRaced += plan.length;
          }
        }),
      );
    } finally {
      stop = true;
      await killer;
    }
    const retries = loaders.reduce((n, l) => n + l.stats.retries, 0);
    const replans = loaders.reduce((n, l) => n + l.stats.replans, 0);
    console.log(
      `stress: ${N_LOADERS} loaders raced ${N_LOADERS * BATCHES_PER_LOADER} batches / ${rowsRaced} messages over ${KEYS} keys; killed ${killed} connections; ${retries} retries inside loaders, ${callerRetries} by the caller, ${replans} replans`,
    );
    expect(await readState(t)).toEqual(expectedState(sent));
    await Promise.all(loaders.map((l) => l.close()));
  });
});
