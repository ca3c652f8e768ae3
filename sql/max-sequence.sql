-- The highest sequence committed into one table, from the load log (one row per batch, each with
-- its batch's highest sequence). With loads_max_sequence_idx this is one index probe.
-- $1 schema, $2 table (raw names).
SELECT max(max_sequence)::text AS max_sequence
FROM seqload.loads
WHERE schema_name = $1 AND table_name = $2
