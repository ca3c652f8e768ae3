/** `seqload validate`: the loader's checks on every batch, with no database. */
import { BatchValidationError, validateBatch } from "../index.js";
import { batchError, batchPlace, EXIT_INVALID_INPUT, EXIT_OK, InputSyntaxError } from "./errors.js";
import { limitHeapGrowth } from "./heap.js";
import { openInputs, readBatches } from "./input.js";
import type { Io } from "./io.js";

export async function validateCommand(files: string[], io: Io): Promise<number> {
  const inputs = await openInputs(files);
  limitHeapGrowth();
  let valid = 0;
  let invalid = 0;
  let malformed = 0;
  for (const input of inputs) {
    try {
      for await (const batch of readBatches(input)) {
        const place = batchPlace(input.name, batch.line, batch.number);
        try {
          const s = validateBatch(batch.value);
          const key = s.keyNames.length === 0 ? "no key (append-only)" : `key ${s.keyNames.join(", ")}`;
          io.out(`${place}: valid: table ${s.table}, ${s.received} message${s.received === 1 ? "" : "s"}, ${key}`);
          valid++;
        } catch (e) {
          if (!(e instanceof BatchValidationError)) throw e;
          io.err(`seqload: ${batchError(place, e).message}`);
          invalid++;
        }
      }
    } catch (e) {
      // The rest of a malformed input cannot be told apart reliably; go on with the next input.
      if (!(e instanceof InputSyntaxError)) throw e;
      io.err(`seqload: ${e.message}`);
      malformed++;
    }
  }
  const total = valid + invalid;
  const counts = `${total} batch${total === 1 ? "" : "es"} checked: ${valid} valid, ${invalid} invalid`;
  if (invalid === 0 && malformed === 0) {
    io.out(counts);
    return EXIT_OK;
  }
  io.err(`seqload: ${counts}${malformed > 0 ? `; ${malformed} input${malformed === 1 ? "" : "s"} with malformed JSON` : ""}`);
  return EXIT_INVALID_INPUT;
}
