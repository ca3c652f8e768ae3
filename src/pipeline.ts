/**
 * Loading a stream of batches in order, one batch ahead: while the database applies batch N, the
 * next batch is read (parsed, for the CLI) and validated, so that Node's work on N+1 overlaps
 * PostgreSQL's on N instead of following it. Batches still load one at a time and commit in order:
 * N+1 starts only after N has committed, and after a failure nothing further is loaded.
 *
 * Each batch is validated once, here (checkBatch), and its ValidatedBatch is what gets loaded
 * (the loader's entry for validated batches): no validation is kept anywhere else.
 */
import { performance } from "node:perf_hooks";
import type { OnInvalid } from "./quarantine.js";
import type { LoadResult } from "./types.js";
import { type ValidatedBatch, checkBatch } from "./validate.js";

/** One loaded item of a pipeline: what it was, its result, and how long its load took. */
export interface Loaded<T> {
  item: T;
  result: LoadResult;
  /** From the start of its load to its commit, in milliseconds. */
  ms: number;
}

/** Load a batch that checkBatch has accepted (src/loader.ts's `loadValidated`). */
export type LoadValidated = (batch: ValidatedBatch) => Promise<LoadResult>;

export interface PipelineSteps<T> {
  /** The batch an item carries. */
  batch(item: T): unknown;
  /** Load one validated batch in a transaction of its own. */
  load: LoadValidated;
  /** What validation does with an invalid message (the loader's onInvalid). Default "fail". */
  onInvalid?: OnInvalid;
  /** The error to throw when an item's validation or load fails (default: that error itself). */
  failed?(item: T, error: unknown): unknown;
}

type Settled = { ok: true; result: LoadResult; ms: number } | { ok: false; error: unknown };
type Checked = { ok: true; batch: ValidatedBatch } | { ok: false; error: unknown };

/**
 * Load the batches of `items` in order, each once the one before it has committed, reading and
 * validating the next item meanwhile. Yields each item's result as it commits. A batch that fails
 * validation or loading throws (`failed(item, error)`) after every earlier result has been
 * yielded; the items after it are not loaded. An error from `items` itself is thrown once the load
 * in flight has been yielded. A consumer that stops early leaves no load running: the next load
 * starts only when the next result is asked for.
 */
export async function* loadInOrder<T>(items: AsyncIterable<T> | Iterable<T>, steps: PipelineSteps<T>): AsyncGenerator<Loaded<T>> {
  const source: AsyncIterator<T> | Iterator<T> = Symbol.asyncIterator in items ? items[Symbol.asyncIterator]() : items[Symbol.iterator]();
  let done = false;
  let inFlight: { item: T; settled: Promise<Settled> } | null = null;
  const finish = async (flight: { item: T; settled: Promise<Settled> }): Promise<Loaded<T>> => {
    const s = await flight.settled;
    if (!s.ok) throw steps.failed ? steps.failed(flight.item, s.error) : s.error;
    return { item: flight.item, result: s.result, ms: s.ms };
  };
  try {
    for (;;) {
      let next: IteratorResult<T>;
      try {
        next = await source.next();
      } catch (e) {
        done = true; // a throwing iterator is finished
        if (inFlight !== null) yield await finish(inFlight);
        inFlight = null;
        throw e;
      }
      if (next.done === true) {
        done = true;
        break;
      }
      const item = next.value;
      // Validated now, while the batch before it is in the database. An invalid batch fails in
      // its turn, after the results of the batches before it.
      let checked: Checked;
      try {
        checked = { ok: true, batch: checkBatch(steps.batch(item), { onInvalid: steps.onInvalid ?? "fail" }) };
      } catch (error) {
        checked = { ok: false, error };
      }
      if (inFlight !== null) {
        const flight = inFlight;
        inFlight = null;
        yield await finish(flight);
      }
      if (!checked.ok) throw steps.failed ? steps.failed(item, checked.error) : checked.error;
      const started = performance.now();
      // Settled at once into a value: a failure waits for its turn without being an unhandled rejection.
      const settled = steps.load(checked.batch).then(
        (result): Settled => ({ ok: true, result, ms: performance.now() - started }),
        (error: unknown): Settled => ({ ok: false, error }),
      );
      inFlight = { item, settled };
    }
    if (inFlight !== null) {
      const flight = inFlight;
      inFlight = null;
      yield await finish(flight);
    }
  } finally {
    // A load still in flight here (the consumer stopped, say) is waited for: no load may run on
    // after the caller was told the stream is over.
    if (inFlight !== null) await inFlight.settled;
    if (!done) await source.return?.();
  }
}

/**
 * `loader.loadBatches(batches)`: load a stream of batches in order, each in its own transaction,
 * and yield each LoadResult as its batch commits. The next batch is read and validated while the
 * current one is applied. The first failure is thrown (the loader's own error) after the results
 * of every batch before it; that batch and the ones after it are not loaded. Batches are read and
 * validated one ahead: do not change a batch object after handing it over.
 */
export async function* loadBatches(
  load: LoadValidated,
  batches: AsyncIterable<unknown> | Iterable<unknown>,
  onInvalid: OnInvalid = "fail",
): AsyncGenerator<LoadResult> {
  for await (const loaded of loadInOrder(batches, { batch: (b) => b, load, onInvalid })) yield loaded.result;
}
