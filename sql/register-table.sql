-- Record (or refresh) a managed table in seqload's registry. Runs in the DDL transaction.
-- $1 schema, $2 table, $3 key names, $4 columns as {"name": "type", …}
INSERT INTO seqload.tables (schema_name, table_name, key_names, columns)
VALUES ($1, $2, $3::text[], $4::jsonb)
ON CONFLICT (schema_name, table_name) DO UPDATE
SET key_names = excluded.key_names, columns = excluded.columns, updated_at = now()
