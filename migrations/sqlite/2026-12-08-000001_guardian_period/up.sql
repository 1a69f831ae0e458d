-- A guardianship holds during RelatedPerson.period (microseconds, [start, end), open ends
-- unbounded), like a directive's period.
ALTER TABLE guardians ADD COLUMN period_start BIGINT;
ALTER TABLE guardians ADD COLUMN period_end BIGINT;
