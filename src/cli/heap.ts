/**
 * How far the CLI's heap may grow between two full garbage collections.
 *
 * V8 starts a full collection only once the old generation has grown to about 4 times what
 * survived the previous one (its growing factor on a machine with memory to spare). While `load`
 * runs, what survives is little: the process itself and the one batch in flight (20-35 MB with
 * 20,000-message batches). But every batch promotes about as much again to the old generation
 * (its parsed, validated and encoded forms live for the whole batch), all of it garbage once the
 * batch is loaded, so the heap held 4 or 5 batches' garbage before V8 collected it, and peak RSS
 * followed the growing factor rather than the batch size (`--trace-gc`: "Mark-Compact 156 -> 34 MB").
 *
 * A factor of 2 (`--heap-growing-percent=100`) halves that slack: peak RSS loading 1,000,000
 * messages in 20,000-message batches went from ~270 MB to ~190 MB, for ~5% more CPU in Node (9%
 * for one 1,000,000-message batch) and no measurable change in wall time. It sets no limit: a
 * batch that needs 2 GB still gets it (with more collections while the heap grows to it), so it
 * cannot run out of memory where the default would not.
 * V8 reads the flag each time it sets the next limit, so setting it at run time takes effect at
 * the next collection. A setting given to node itself wins.
 */
import v8 from "node:v8";

/** @internal exported for the tests */
export const HEAP_GROWING_PERCENT = 100;

const OWN_SETTING = /^--heap[-_]growing[-_]percent(=|$)/;

/** The V8 flag to set, or null when node was started with its own value. @internal exported for the tests */
export function heapGrowthFlag(execArgv: readonly string[]): string | null {
  return execArgv.some((a) => OWN_SETTING.test(a)) ? null : `--heap-growing-percent=${HEAP_GROWING_PERCENT}`;
}

/** For the commands that read batches (load, validate). */
export function limitHeapGrowth(): void {
  const flag = heapGrowthFlag(process.execArgv);
  if (flag !== null) v8.setFlagsFromString(flag);
}
