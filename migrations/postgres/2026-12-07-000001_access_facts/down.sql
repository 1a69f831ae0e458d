ALTER TABLE resources DROP COLUMN writer;
ALTER TABLE resources DROP COLUMN labels;
