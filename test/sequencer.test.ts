// createSequencer: strictly increasing, time-based 19-digit values (see src/sequencer.ts for the layout).
import { Worker } from "node:worker_threads";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ConfigurationError, MAX_SEQUENCER_MICROS, SeqloadError, createSequencer, sequenceParts, systemMicros } from "../src/index.js";

const INT64_MAX = 9223372036854775807n;
/** 2001-09-09: from here until 2262 the clock has 16 digits and values have 19. */
const SIXTEEN_DIGITS = 10n ** 15n;

/** A clock that returns the given readings in turn (the last one forever). */
function scripted(readings: bigint[]): () => bigint {
  let i = 0;
  return () => readings[Math.min(i++, readings.length - 1)] as bigint;
}

/**
 * Clock readings as a real clock misbehaves: it runs forward, stalls (the same reading many
 * times: millions of calls within one tick), and steps back (NTP, a VM restored).
 */
const clockRun = fc
  .tuple(
    fc.bigInt({ min: SIXTEEN_DIGITS, max: 4_000_000_000_000_000n }),
    fc.array(
      fc.oneof(
        fc.record({ kind: fc.constant("forward" as const), by: fc.bigInt({ min: 1n, max: 5_000_000n }) }),
        fc.record({ kind: fc.constant("stall" as const), times: fc.integer({ min: 1, max: 400 }) }),
        fc.record({ kind: fc.constant("back" as const), by: fc.bigInt({ min: 1n, max: 3_600_000_000n }) }),
      ),
      { maxLength: 60 },
    ),
  )
  .map(([start, steps]) => {
    const readings = [start];
    let t = start;
    for (const s of steps) {
      if (s.kind === "stall") for (let i = 0; i < s.times; i++) readings.push(t);
      else {
        t = s.kind === "forward" ? t + s.by : t - s.by > SIXTEEN_DIGITS ? t - s.by : SIXTEEN_DIGITS;
        readings.push(t);
      }
    }
    return readings;
  });

const sourceArb = fc.integer({ min: 0, max: 999 });

describe("createSequencer", () => {
  it("is strictly increasing under a clock that stalls and steps back, with 19 digits and the source in the last three", () => {
    fc.assert(
      fc.property(clockRun, sourceArb, (readings, source) => {
        const sequencer = createSequencer({ source, now: scripted(readings) });
        let previous = -1n;
        for (let i = 0; i < readings.length; i++) {
          const v = sequencer.next();
          expect(v).toBeGreaterThan(previous);
          expect(v.toString()).toMatch(/^[1-9]\d{18}$/);
          expect(v).toBeLessThanOrEqual(INT64_MAX);
          expect(Number(v % 1000n)).toBe(source);
          previous = v;
        }
        expect(sequencer.last).toBe(previous);
      }),
      { numRuns: 150 },
    );
  });

  it("is time-based: its clock is max over earlier readings r_i of r_i + (calls since i), so it follows a clock that moves forward and runs ahead only by what stalls and steps back need", () => {
    fc.assert(
      fc.property(clockRun, sourceArb, (readings, source) => {
        const sequencer = createSequencer({ source, now: scripted(readings) });
        // The model, independent of the implementation's running max: T_n = max_i (r_i + n - i).
        let best = -1n; // max over i ≤ n of r_i - i
        readings.forEach((r, n) => {
          const v = sequencer.next();
          if (r - BigInt(n) > best) best = r - BigInt(n);
          const micros = best + BigInt(n);
          expect(v).toBe(micros * 1000n + BigInt(source));
          expect(sequenceParts(v)).toEqual({ micros, source, time: new Date(Number(micros / 1000n)) });
        });
      }),
      { numRuns: 150 },
    );
  });

  it("a million values within one stalled microsecond stay strictly increasing, and the real clock takes over again once it is ahead", () => {
    const t0 = 1_795_465_705_836_066n;
    let reading = t0;
    const sequencer = createSequencer({ source: 42, now: () => reading });
    let previous = sequencer.next();
    expect(previous).toBe(1795465705836066042n);
    for (let i = 0; i < 1_000_000; i++) {
      const v = sequencer.next();
      if (v <= previous) throw new Error(`value ${i} (${v}) is not above ${previous}`);
      previous = v;
    }
    expect(previous).toBe((t0 + 1_000_000n) * 1000n + 42n); // ran ahead one microsecond per value
    reading = t0 + 500_000n; // the clock moved, but not past the logical clock yet
    expect(sequencer.next()).toBe((t0 + 1_000_001n) * 1000n + 42n);
    reading = t0 + 5_000_000n; // now it is ahead: values follow it again
    expect(sequencer.next()).toBe((t0 + 5_000_000n) * 1000n + 42n);
  });

  it("a clock step back of an hour keeps the values increasing from the last one", () => {
    const t0 = 1_795_465_705_836_066n;
    const sequencer = createSequencer({ now: scripted([t0, t0 - 3_600_000_000n, t0 - 3_599_999_999n]) });
    expect([sequencer.next(), sequencer.next(), sequencer.next()]).toEqual([
      1795465705836066000n,
      1795465705836067000n,
      1795465705836068000n,
    ]);
  });

  it("stays within int64: the clock's last microsecond (2262-04-11) with source 999 fits, one more is an error", () => {
    expect(MAX_SEQUENCER_MICROS * 1000n + 999n).toBeLessThanOrEqual(INT64_MAX);
    expect((MAX_SEQUENCER_MICROS + 1n) * 1000n + 999n).toBeGreaterThan(INT64_MAX);
    expect(new Date(Number(MAX_SEQUENCER_MICROS / 1000n)).toISOString()).toMatch(/^2262-04-11T/);
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: MAX_SEQUENCER_MICROS }), sourceArb, (micros, source) => {
        const v = createSequencer({ source, now: () => micros }).next();
        expect(v >= 0n && v <= INT64_MAX).toBe(true);
      }),
    );
    const last = createSequencer({ source: 999, now: () => MAX_SEQUENCER_MICROS });
    expect(last.next()).toBe(9223372036854774999n);
    const err = (() => {
      try {
        last.next(); // the logical clock would pass the last microsecond
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(SeqloadError);
    expect((err as SeqloadError).code).toBe("SEQUENCE_OVERFLOW");
  });

  it("`after` makes every value greater than a given one (e.g. the table's max sequence), whatever the clock says", () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: -(2n ** 63n), max: MAX_SEQUENCER_MICROS * 1000n - 1n }),
        sourceArb,
        fc.bigInt({ min: 0n, max: MAX_SEQUENCER_MICROS }),
        (after, source, reading) => {
          const sequencer = createSequencer({ source, after, now: () => reading });
          expect(sequencer.last).toBe(after);
          const first = sequencer.next();
          expect(first).toBeGreaterThan(after);
          expect(Number(first % 1000n)).toBe(source);
          // Not needlessly far: the smallest value above both `after` and the clock.
          const floor = reading * 1000n + BigInt(source);
          expect(first === floor || first - 1000n <= after).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("refuses a source outside 0–999 and a broken clock", () => {
    for (const source of [-1, 1000, 1.5, Number.NaN]) expect(() => createSequencer({ source })).toThrow(ConfigurationError);
    expect(() => createSequencer({ now: () => Number.NaN }).next()).toThrow(/clock returned NaN/);
    expect(() => createSequencer({ now: () => -5n }).next()).toThrow(/before 1970/);
  });

  it("the system clock reads microseconds within the current millisecond of Date.now()", () => {
    for (let i = 0; i < 1000; i++) {
      const before = BigInt(Date.now()) * 1000n;
      const micros = systemMicros();
      const after = BigInt(Date.now()) * 1000n + 999n;
      expect(micros >= before && micros <= after).toBe(true);
    }
    const v = createSequencer().next();
    expect(v.toString()).toHaveLength(19);
    expect(Math.abs(sequenceParts(v).time.getTime() - Date.now())).toBeLessThan(1000);
  });

  it("8 worker threads with distinct sources never produce the same value", async () => {
    const COUNT = 200_000;
    const sources = [0, 1, 7, 42, 500, 998, 999, 123];
    const start = new SharedArrayBuffer(4);
    const workers = sources.map(
      (source) =>
        new Worker(new URL("./fixtures/sequencer/worker.mjs", import.meta.url), {
          workerData: { source, count: COUNT, start },
        }),
    );
    const ready = workers.map((w) => new Promise<void>((resolve, reject) => w.once("message", () => resolve()).once("error", reject)));
    await Promise.all(ready);
    const results = workers.map(
      (w) => new Promise<BigInt64Array>((resolve, reject) => w.once("message", (v: BigInt64Array) => resolve(v)).once("error", reject)),
    );
    Atomics.store(new Int32Array(start), 0, 1);
    Atomics.notify(new Int32Array(start), 0);
    const all = await Promise.all(results);
    await Promise.all(workers.map((w) => w.terminate()));
    const seen = new Set<bigint>();
    all.forEach((values, w) => {
      expect(values.length).toBe(COUNT);
      let previous = -1n;
      for (const v of values) {
        if (v <= previous) throw new Error(`worker ${w}: ${v} is not above ${previous}`);
        if (v % 1000n !== BigInt(sources[w] as number)) throw new Error(`worker ${w}: ${v} does not end in its source`);
        previous = v;
        seen.add(v);
      }
    });
    expect(seen.size).toBe(COUNT * sources.length);
  });
});
