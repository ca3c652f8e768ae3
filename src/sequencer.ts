/**
 * Sequences for clients: a generator of strictly increasing, time-based 19-digit values.
 *
 * Layout (decimal):  value = T × 1000 + source
 *   digits 1–16   T, a logical clock in microseconds since 1970-01-01 UTC
 *   digits 17–19  source, 000–999 (default 000)
 * e.g. 1795465705836066042 = T 1795465705836066 (2026-11-23T20:28:25.836066Z), source 042.
 *
 * T = max(wall clock in µs, previous T + 1). Each value takes a microsecond of its own, so values
 * from one sequencer are strictly increasing: when calls come faster than one per microsecond, or
 * the wall clock stalls or steps back, T runs ahead of the wall clock by one microsecond per value
 * and falls back in step once the clock has caught up. This is target-stitch's layout (16 digits
 * of microseconds, 3 more digits) with the last three digits naming the source instead of counting,
 * so sequencers with different sources never produce the same value.
 */
import { performance } from "node:perf_hooks";
import { ConfigurationError, SeqloadError } from "./errors.js";
import { INT64_MAX } from "./sequence.js";

export interface SequencerOptions {
  /** A number 0–999 in the last three digits; give each concurrent process its own. Default 0. */
  source?: number;
  /** The clock: microseconds since the epoch (a bigint or an integer number). Default: the system clock. */
  now?: () => bigint | number;
  /** Every value is greater than this one (e.g. `await loader.maxSequence(table)`). Default: none. */
  after?: bigint | null;
}

export interface Sequencer {
  /** The next value: greater than every value this sequencer returned before. */
  next(): bigint;
  /** The last value returned (or the `after` option, or null before the first call). */
  readonly last: bigint | null;
  /** The source number in the last three digits. */
  readonly source: number;
}

/** What a sequencer value is made of. */
export interface SequenceParts {
  /** The logical clock: microseconds since 1970-01-01 UTC. */
  micros: bigint;
  /** The last three digits. */
  source: number;
  /** `micros` as a Date (millisecond precision). */
  time: Date;
}

/** The largest clock value whose values (with any source) still fit in a signed 64-bit integer: 2262-04-11. */
export const MAX_SEQUENCER_MICROS = (INT64_MAX - 999n) / 1000n;

/**
 * The wall clock in microseconds: the monotonic high-resolution clock anchored at the process's
 * start, kept within the system clock's current millisecond (if the two have drifted apart, e.g.
 * after the system clock was set, the system clock's millisecond wins).
 */
export function systemMicros(): bigint {
  const ms = Date.now();
  const micros = Math.floor((performance.timeOrigin + performance.now()) * 1000);
  const low = ms * 1000;
  return BigInt(micros >= low && micros < low + 1000 ? micros : low);
}

export function createSequencer(options: SequencerOptions = {}): Sequencer {
  const source = options.source ?? 0;
  if (!Number.isInteger(source) || source < 0 || source > 999) {
    throw new ConfigurationError(`source must be an integer from 0 to 999, got ${String(source)}`);
  }
  const now = options.now ?? systemMicros;
  const sourceBig = BigInt(source);
  let lastValue: bigint | null = null;
  // The logical clock of the last value; below every real clock reading at first.
  let clock = -1n;
  if (options.after !== undefined && options.after !== null) {
    if (typeof options.after !== "bigint") throw new ConfigurationError("after must be a bigint or null");
    lastValue = options.after;
    // The first T whose value with this source is above `after`, minus one.
    const t = options.after >= 0n ? options.after / 1000n : -1n;
    clock = t * 1000n + sourceBig > options.after ? t - 1n : t;
  }
  return {
    get last() {
      return lastValue;
    },
    source,
    next() {
      const reading = now();
      let micros: bigint;
      if (typeof reading === "bigint") micros = reading;
      else if (Number.isFinite(reading)) micros = BigInt(Math.floor(reading));
      else throw new SeqloadError("SEQUENCER_CLOCK", `the sequencer's clock returned ${String(reading)}, not a number of microseconds`);
      if (micros < 0n) throw new SeqloadError("SEQUENCER_CLOCK", `the sequencer's clock returned ${micros} µs, before 1970`);
      const t = micros > clock ? micros : clock + 1n;
      if (t > MAX_SEQUENCER_MICROS) {
        throw new SeqloadError(
          "SEQUENCE_OVERFLOW",
          `the sequencer's clock reached ${t} µs since 1970 (after 2262-04-11), past what a signed 64-bit sequence can hold`,
        );
      }
      clock = t;
      lastValue = t * 1000n + sourceBig;
      return lastValue;
    },
  };
}

/** Split a sequencer value into its clock and source (the inverse of the layout above). */
export function sequenceParts(value: bigint): SequenceParts {
  if (value < 0n || value > INT64_MAX) throw new RangeError(`${value} is not a sequencer value (0 to 9223372036854775807)`);
  const micros = value / 1000n;
  return { micros, source: Number(value % 1000n), time: new Date(Number(micros / 1000n)) };
}
