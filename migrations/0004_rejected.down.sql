ALTER TABLE seqload.loads DROP COLUMN rejected;
DROP TABLE seqload.rejected;
