-- The directory's rows back into the records' tables (under the empty patient id).
INSERT INTO resources (patient_id, resource_type, id, version_id, last_updated, deleted, labels, writer)
    SELECT patient_id, resource_type, id, version_id, last_updated, deleted, labels, writer FROM directory_resources;
INSERT INTO resource_versions (patient_id, resource_type, id, version_id, last_updated, deleted, method, key_id, body)
    SELECT patient_id, resource_type, id, version_id, last_updated, deleted, method, key_id, body FROM directory_versions;
INSERT INTO search_tokens (patient_id, resource_type, id, param, system, code, text, code_full, system_full)
    SELECT patient_id, resource_type, id, param, system, code, text, code_full, system_full FROM directory_tokens;
INSERT INTO search_strings (patient_id, resource_type, id, param, normalized, exact, normalized_full)
    SELECT patient_id, resource_type, id, param, normalized, exact, normalized_full FROM directory_strings;
INSERT INTO search_dates (patient_id, resource_type, id, param, low, high)
    SELECT patient_id, resource_type, id, param, low, high FROM directory_dates;
INSERT INTO search_references (patient_id, resource_type, id, param, target_type, target_id, url, url_full)
    SELECT patient_id, resource_type, id, param, target_type, target_id, url, url_full FROM directory_references;
INSERT INTO search_uris (patient_id, resource_type, id, param, uri, uri_full)
    SELECT patient_id, resource_type, id, param, uri, uri_full FROM directory_uris;
DROP TABLE directory_resources;
DROP TABLE directory_versions;
DROP TABLE directory_tokens;
DROP TABLE directory_strings;
DROP TABLE directory_dates;
DROP TABLE directory_references;
DROP TABLE directory_uris;
