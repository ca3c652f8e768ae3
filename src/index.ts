/** seqload's public surface. */
export { createLoader } from "./loader.js";
export type { Loader } from "./loader.js";
export { validateBatch } from "./validate.js";
export type { BatchSummary, ValidateOptions } from "./validate.js";
export type { LoaderOptions, ResolvedOptions } from "./options.js";
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
export type { ValidationIssue } from "./errors.js";
export { migrateUp, migrateDown, migrationStatus } from "./migrate.js";
export type { MigrationStatus } from "./migrate.js";
export type { ColumnType } from "./columns.js";
export type { DistributeMode } from "./citus.js";
