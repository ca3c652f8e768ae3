-- loader.maxSequence(table) and `seqload status` read a table's highest sequence from the load log:
-- with this index max(max_sequence) for one table is one probe from the top of the index, not a
-- read of every batch the table ever received.
CREATE INDEX loads_max_sequence_idx ON seqload.loads (schema_name, table_name, max_sequence);
