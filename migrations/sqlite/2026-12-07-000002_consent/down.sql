DROP TABLE access_terms;
DROP TABLE guardians;
DROP TABLE directives;
DROP TABLE records;
