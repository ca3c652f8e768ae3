-- One row per applied batch, written in the batch's own transaction.
-- $1 schema, $2 table, $3 received, $4 collapsed, $5 min sequence, $6 max sequence, $7 table version,
-- $8 inserted, $9 updated, $10 deleted, $11 skipped
INSERT INTO seqload.loads
  (schema_name, table_name, received, collapsed, min_sequence, max_sequence, table_version, inserted, updated, deleted, skipped)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
