DROP TABLE server_secrets;
DROP INDEX search_tokens_probe;
DROP INDEX resources_type_id_live;
DROP TABLE search_uris;
DROP TABLE search_references;
DROP TABLE search_dates;
DROP TABLE search_strings;
ALTER TABLE search_tokens DROP COLUMN text;
