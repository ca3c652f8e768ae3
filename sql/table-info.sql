-- Everything seqload needs to know about one table, in one round trip.
-- $1: schema name, $2: table name (raw, unquoted).
-- The table is looked up in pg_class under the statement's snapshot, like its columns. (to_regclass
-- would use the catalog cache, which can already see a table committed after this snapshot was
-- taken, and the column list read under the snapshot would then come back empty.)
SELECT
  c.oid IS NOT NULL AS exists,
  coalesce((
    SELECT json_agg(json_build_array(a.attname, format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum)
    FROM pg_attribute a
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  ), '[]'::json) AS columns,
  (
    SELECT json_agg(a.attname ORDER BY k.ord)
    FROM pg_constraint pk
    CROSS JOIN LATERAL unnest(pk.conkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = pk.conrelid AND a.attnum = k.attnum
    WHERE pk.conrelid = c.oid AND pk.contype = 'p'
  ) AS key_names
FROM (SELECT NULL::int) AS one
LEFT JOIN LATERAL (
  SELECT cl.oid FROM pg_class cl JOIN pg_namespace n ON n.oid = cl.relnamespace
  WHERE n.nspname = $1 AND cl.relname = $2 AND cl.relkind IN ('r', 'p')
) AS c ON true
