-- Quarantine (onInvalid: "quarantine", --on-invalid quarantine): messages that failed validation,
-- written in the same transaction as the valid rows of their batch.
CREATE TABLE seqload.rejected (
  id bigserial PRIMARY KEY,
  schema_name text NOT NULL,
  table_name text NOT NULL,
  -- The message's sequence as sent (text: it may be what made the message invalid), or null.
  sequence text,
  -- Every problem of the message, readable: "path: message" per line.
  reason text NOT NULL,
  -- The same problems for programs: [{"index", "path", "message", "kind"}].
  issues jsonb NOT NULL,
  -- The message as received, as JSON text with every digit kept (U+0000 and lone surrogates
  -- escaped as \u0000 / \udXXX, which text can hold and jsonb could not).
  message text NOT NULL,
  rejected_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejected_table_idx ON seqload.rejected (schema_name, table_name, rejected_at);

-- The load log counts them too: received = collapsed + inserted + updated + deleted + skipped + rejected.
ALTER TABLE seqload.loads ADD COLUMN rejected integer NOT NULL DEFAULT 0;
