DROP INDEX seqload.loads_max_sequence_idx;
