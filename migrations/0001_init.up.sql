-- seqload's own bookkeeping. The schema "seqload" itself is created by the migration runner
-- (it also holds the migration log).

-- Registry of the tables seqload manages: their key and the column types it created.
CREATE TABLE seqload.tables (
  schema_name text NOT NULL,
  table_name text NOT NULL,
  key_names text[] NOT NULL,
  columns jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (schema_name, table_name)
);

-- Load log: one row per committed batch, with its counts and sequence range.
CREATE TABLE seqload.loads (
  id bigserial PRIMARY KEY,
  schema_name text NOT NULL,
  table_name text NOT NULL,
  received integer NOT NULL,
  collapsed integer NOT NULL,
  inserted integer NOT NULL,
  updated integer NOT NULL,
  deleted integer NOT NULL,
  skipped integer NOT NULL,
  min_sequence bigint,
  max_sequence bigint,
  table_version bigint,
  loaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX loads_table_idx ON seqload.loads (schema_name, table_name, loaded_at);
