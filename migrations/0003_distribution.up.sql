-- How each managed table is placed (scale-out on Citus):
--   distribution: 'local' (a plain PostgreSQL table: a single node, or left on the Citus
--   coordinator), 'hash' (hash-distributed on distribution_column, seqload's choice for keyed
--   tables), 'single_shard' (distributed without a column, seqload's choice for keyless tables on
--   Citus 12+), or what seqload found on a table placed by hand: 'reference', 'citus_local', 'other'.
ALTER TABLE seqload.tables
  ADD COLUMN distribution text NOT NULL DEFAULT 'local',
  ADD COLUMN distribution_column text;
