-- Quarantined messages of one batch, in its transaction. $1 schema, $2 table (raw names);
-- $3 sequences, $4 reasons, $5 issues (JSON text), $6 messages (JSON text): one element per message.
INSERT INTO seqload.rejected (schema_name, table_name, sequence, reason, issues, message)
SELECT $1, $2, r.sequence, r.reason, r.issues::jsonb, r.message
FROM unnest($3::text[], $4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS r(sequence, reason, issues, message, n)
ORDER BY r.n
