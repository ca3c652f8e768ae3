DROP TABLE seqload.loads;
DROP TABLE seqload.tables;
