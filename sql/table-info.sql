-- Everything seqload needs to know about one table, in one round trip.
-- $1: the quoted, qualified table name ("schema"."table").
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
FROM (SELECT to_regclass($1) AS oid) AS c
