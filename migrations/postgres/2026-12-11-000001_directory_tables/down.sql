-- The directory's rows back into the records' tables (under the empty patient id).
INSERT INTO resources SELECT * FROM directory_resources;
INSERT INTO resource_versions SELECT * FROM directory_versions;
INSERT INTO search_tokens SELECT * FROM directory_tokens;
INSERT INTO search_strings SELECT * FROM directory_strings;
INSERT INTO search_dates SELECT * FROM directory_dates;
INSERT INTO search_references SELECT * FROM directory_references;
INSERT INTO search_uris SELECT * FROM directory_uris;
DROP TABLE directory_resources;
DROP TABLE directory_versions;
DROP TABLE directory_tokens;
DROP TABLE directory_strings;
DROP TABLE directory_dates;
DROP TABLE directory_references;
DROP TABLE directory_uris;
