-- The tables seqload manages in one schema (or the one named), with what the load log knows of
-- each: batches, highest sequence, last load. Tables dropped since are left out.
-- $1 schema, $2 table or NULL for every table of the schema.
SELECT
  t.table_name,
  t.key_names,
  l.batches,
  l.max_sequence::text AS max_sequence,
  l.last_loaded_at
FROM seqload.tables AS t
CROSS JOIN LATERAL (
  SELECT count(*)::bigint AS batches, max(x.max_sequence) AS max_sequence, max(x.loaded_at) AS last_loaded_at
  FROM seqload.loads AS x
  WHERE x.schema_name = t.schema_name AND x.table_name = t.table_name
) AS l
WHERE t.schema_name = $1
  AND ($2::text IS NULL OR t.table_name = $2)
  AND EXISTS (
    SELECT 1 FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = t.schema_name AND c.relname = t.table_name AND c.relkind IN ('r', 'p')
  )
ORDER BY t.table_name
