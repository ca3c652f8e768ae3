/** `seqload sequence`: print one value of the sequence generator, for shell scripts. No database. */
import { createSequencer } from "../sequencer.js";
import { CliError, EXIT_OK } from "./errors.js";
import type { Io } from "./io.js";

export interface SequenceFlags {
  source?: string;
}

export function sequenceCommand(flags: SequenceFlags, io: Io): number {
  let source = 0;
  if (flags.source !== undefined) {
    if (!/^\d{1,3}$/.test(flags.source))
      throw new CliError(`--source must be an integer from 0 to 999, got ${JSON.stringify(flags.source)}`);
    source = Number(flags.source);
  }
  io.out(createSequencer({ source }).next().toString());
  return EXIT_OK;
}
