-- Record how a managed table is placed (Citus). Runs in the transaction that distributes the table,
-- or that alters it. $1 schema, $2 table, $3 distribution kind, $4 distribution column (or NULL)
UPDATE seqload.tables
SET distribution = $3, distribution_column = $4
WHERE schema_name = $1 AND table_name = $2
  AND (distribution, distribution_column) IS DISTINCT FROM ($3::text, $4::text)
