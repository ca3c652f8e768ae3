/** seqload's public surface. */
export { createLoader } from "./loader.js";
export type { Loader, LoadOptions } from "./loader.js";
export { createSequencer, sequenceParts, systemMicros, MAX_SEQUENCER_MICROS } from "./sequencer.js";
export type { Sequencer, SequencerOptions, SequenceParts } from "./sequencer.js";
export { maxSequence, storedSequences, tableStatus } from "./lookups.js";
export type { KeyInput, StoredSequence, TableStatus } from "./lookups.js";
export { SingerBatcher, SingerInputError, DEFAULT_SINGER_BATCH_SIZE } from "./singer.js";
export type { SingerOptions, SingerStep } from "./singer.js";
export { validateBatch } from "./validate.js";
export type { BatchSummary, ValidateOptions } from "./validate.js";
export type { LoaderOptions, ResolvedOptions } from "./options.js";
export type { OnInvalid } from "./quarantine.js";
export type { Batch, BatchMessage, JsonSchema, LoadResult, SequenceInput } from "./types.js";
export {
  SeqloadError,
  BatchValidationError,
  KeyMismatchError,
  TableShapeError,
  DistributionChangeError,
  ConnectionError,
  DatabaseError,
  RetryExhaustedError,
  ConfigurationError,
} from "./errors.js";
export type { ValidationIssue, ValidationIssueKind } from "./errors.js";
export { migrateUp, migrateDown, migrationStatus } from "./migrate.js";
export type { MigrationStatus } from "./migrate.js";
export type { ColumnType } from "./columns.js";
export type { DistributeMode } from "./citus.js";
