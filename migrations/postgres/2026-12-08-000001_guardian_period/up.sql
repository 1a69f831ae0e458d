-- A guardianship holds during RelatedPerson.period (microseconds, [start, end), open ends
-- unbounded), like a directive's period. Rows written before this migration do not know their
-- period: they are dropped (a guardianship that ended must not hold again), and `carnet
-- reindex` rebuilds every guardianship from its RelatedPerson.
ALTER TABLE guardians ADD COLUMN period_start BIGINT;
ALTER TABLE guardians ADD COLUMN period_end BIGINT;
DELETE FROM guardians;
