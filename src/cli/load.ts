/** `seqload load`: every batch of every input, in order, each in its own transaction. */
import { performance } from "node:perf_hooks";
import type { DistributeMode, LoadResult, OnInvalid } from "../index.js";
import { type Loader, openLoader } from "../loader.js";
import { loadInOrder } from "../pipeline.js";
import { openDatabase } from "./database.js";
import { CliError, batchError, batchPlace, describeError, EXIT_OK } from "./errors.js";
import { addToTotals, emptyTotals, summaryLine, totalsLine } from "./format.js";
import { limitHeapGrowth } from "./heap.js";
import { type Input, type InputBatch, type ReadCounter, openInputs, readBatches } from "./input.js";
import type { Io } from "./io.js";
import { createProgress } from "./progress.js";

export interface LoadFlags {
  databaseUrl?: string;
  schema?: string;
  distribute?: DistributeMode;
  json?: boolean;
  /** --on-invalid: fail (default) or quarantine. */
  onInvalid?: OnInvalid;
}

/** Exactly the LoadResult fields, in their documented order. */
const asJson = (r: LoadResult): string =>
  JSON.stringify({
    table: r.table,
    received: r.received,
    collapsed: r.collapsed,
    inserted: r.inserted,
    updated: r.updated,
    deleted: r.deleted,
    skipped: r.skipped,
    rejected: r.rejected,
  });

/** Every batch of every input, in order. */
async function* allBatches(inputs: Input[], counter: ReadCounter): AsyncGenerator<InputBatch> {
  for (const input of inputs) yield* readBatches(input, counter);
}

export async function loadCommand(files: string[], flags: LoadFlags, io: Io): Promise<number> {
  const inputs = await openInputs(files);
  limitHeapGrowth();
  const json = flags.json === true;
  const db = await openDatabase({ databaseUrl: flags.databaseUrl, log: io.err });
  const sizes = inputs.map((i) => i.size);
  const progress = createProgress({
    enabled: !json && process.stderr.isTTY === true,
    totalBytes: sizes.includes(null) ? null : sizes.reduce<number>((a, b) => a + (b ?? 0), 0),
    print: io.out,
  });
  const totals = emptyTotals();
  const counter = { bytes: 0 };
  const started = performance.now();
  let loader: Loader | null = null;
  try {
    const opened = await openLoader({
      pool: db.pool,
      ...(flags.schema !== undefined ? { schema: flags.schema } : {}),
      ...(flags.onInvalid !== undefined ? { onInvalid: flags.onInvalid } : {}),
      ...(flags.distribute !== undefined ? { distribute: flags.distribute } : {}),
    });
    loader = opened.loader;
    // Pipelined: the next batch is read, parsed and validated while the database applies this one;
    // batches still commit one at a time, in order (src/pipeline.ts, which validates each batch
    // once and hands it to the loader validated).
    const steps = loadInOrder(allBatches(inputs, counter), {
      batch: (b) => b.value,
      load: opened.loadValidated,
      onInvalid: opened.loader.options.onInvalid,
      failed: (b, e) => batchError(batchPlace(b.input.name, b.line, b.number), e),
    });
    for await (const { item: batch, result, ms } of steps) {
      addToTotals(totals, result);
      if (json) io.out(asJson(result));
      else progress.print(summaryLine(batchPlace(batch.input.name, batch.line, batch.number), result, ms));
      progress.update({ bytes: batch.bytesRead, batches: totals.batches, messages: totals.received });
    }
    progress.stop();
    if (!json && totals.batches !== 1) io.out(totalsLine(totals, performance.now() - started));
    return EXIT_OK;
  } catch (e) {
    progress.stop();
    const { message, exitCode } = describeError(e);
    const n = totals.batches;
    const before =
      n === 0
        ? "Nothing was loaded."
        : `The ${n} batch${n === 1 ? "" : "es"} before it ${n === 1 ? "was" : "were"} loaded (reported above); the batches after it were not.`;
    throw new CliError(`${message}\n${before}`, exitCode);
  } finally {
    await loader?.close();
    await db.close();
  }
}
