-- One row per applied batch, written in the batch's own transaction.
INSERT INTO seqload.loads
  (schema_name, table_name, received, collapsed, inserted, updated, deleted, skipped, min_sequence, max_sequence, table_version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
