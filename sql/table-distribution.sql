-- How Citus places one table (only run when the citus extension exists). No row: a local table.
-- $1: the quoted, schema-qualified table name.
SELECT
  CASE
    WHEN p.partmethod = 'h' THEN 'hash'
    WHEN p.repmodel = 't' THEN 'reference'
    WHEN p.partmethod = 'n' AND p.colocationid <> 0 THEN 'single_shard'
    WHEN p.partmethod = 'n' THEN 'citus_local'
    ELSE 'other'
  END AS kind,
  CASE WHEN p.partmethod = 'h' THEN column_to_column_name(p.logicalrelid, p.partkey) END AS column
FROM pg_dist_partition p
WHERE p.logicalrelid = $1::regclass
