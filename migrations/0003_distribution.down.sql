ALTER TABLE seqload.tables
  DROP COLUMN distribution_column,
  DROP COLUMN distribution;
