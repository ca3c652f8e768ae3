/** `seqload load`: every batch of every input, in order, each in its own transaction. */
import { performance } from "node:perf_hooks";
import { type DistributeMode, type LoadResult, createLoader } from "../index.js";
import { openDatabase } from "./database.js";
import { CliError, batchError, batchPlace, describeError, EXIT_OK } from "./errors.js";
import { addToTotals, emptyTotals, summaryLine, totalsLine } from "./format.js";
import { limitHeapGrowth } from "./heap.js";
import { openInputs, readBatches } from "./input.js";
import type { Io } from "./io.js";
import { createProgress } from "./progress.js";

export interface LoadFlags {
  databaseUrl?: string;
  schema?: string;
  distribute?: DistributeMode;
  json?: boolean;
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
  });

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
  let loader: Awaited<ReturnType<typeof createLoader>> | null = null;
  try {
    loader = await createLoader({
      pool: db.pool,
      ...(flags.schema !== undefined ? { schema: flags.schema } : {}),
      ...(flags.distribute !== undefined ? { distribute: flags.distribute } : {}),
    });
    for (const input of inputs) {
      for await (const batch of readBatches(input, counter)) {
        const place = batchPlace(input.name, batch.line, batch.number);
        const t0 = performance.now();
        let result: LoadResult;
        try {
          result = await loader.loadBatch(batch.value);
        } catch (e) {
          throw batchError(place, e);
        }
        addToTotals(totals, result);
        if (json) io.out(asJson(result));
        else progress.print(summaryLine(place, result, performance.now() - t0));
        progress.update({ bytes: batch.bytesRead, batches: totals.batches, messages: totals.received });
      }
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
