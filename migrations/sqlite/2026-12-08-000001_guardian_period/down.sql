ALTER TABLE guardians DROP COLUMN period_end;
ALTER TABLE guardians DROP COLUMN period_start;
