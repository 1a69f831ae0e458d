-- Back to nullable patient ids (NULL outside records) and keys without them.
DROP INDEX directives_source;
CREATE INDEX directives_source ON directives (source_type, source_id);

CREATE TABLE old_access_terms (resource_type TEXT NOT NULL, id TEXT NOT NULL, patient_id TEXT,
    kind TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (resource_type, id, kind, value));
INSERT INTO old_access_terms SELECT resource_type, id, NULLIF(patient_id, ''), kind, value
    FROM access_terms;
DROP TABLE access_terms;
ALTER TABLE old_access_terms RENAME TO access_terms;
CREATE INDEX access_terms_value ON access_terms (kind, value);

CREATE TABLE old_search_uris (resource_type TEXT NOT NULL, id TEXT NOT NULL,
    param TEXT NOT NULL, uri TEXT NOT NULL, patient_id TEXT, uri_full TEXT);
INSERT INTO old_search_uris SELECT resource_type, id, param, uri, NULLIF(patient_id, ''),
    uri_full FROM search_uris;
DROP TABLE search_uris;
ALTER TABLE old_search_uris RENAME TO search_uris;
CREATE INDEX search_uris_value ON search_uris (resource_type, param, uri);
CREATE INDEX search_uris_resource ON search_uris (resource_type, id, param);

CREATE TABLE old_search_references (resource_type TEXT NOT NULL, id TEXT NOT NULL,
    param TEXT NOT NULL, target_type TEXT, target_id TEXT, url TEXT NOT NULL,
    patient_id TEXT, url_full TEXT);
INSERT INTO old_search_references SELECT resource_type, id, param, target_type, target_id,
    url, NULLIF(patient_id, ''), url_full FROM search_references;
DROP TABLE search_references;
ALTER TABLE old_search_references RENAME TO search_references;
CREATE INDEX search_references_target
    ON search_references (resource_type, param, target_id, target_type);
CREATE INDEX search_references_url ON search_references (resource_type, param, url);
CREATE INDEX search_references_reverse ON search_references (target_type, target_id);
CREATE INDEX search_references_resource ON search_references (resource_type, id, param);

CREATE TABLE old_search_dates (resource_type TEXT NOT NULL, id TEXT NOT NULL,
    param TEXT NOT NULL, low BIGINT NOT NULL, high BIGINT NOT NULL, patient_id TEXT);
INSERT INTO old_search_dates SELECT resource_type, id, param, low, high,
    NULLIF(patient_id, '') FROM search_dates;
DROP TABLE search_dates;
ALTER TABLE old_search_dates RENAME TO search_dates;
CREATE INDEX search_dates_low ON search_dates (resource_type, param, low);
CREATE INDEX search_dates_high ON search_dates (resource_type, param, high);
CREATE INDEX search_dates_resource ON search_dates (resource_type, id, param);

CREATE TABLE old_search_strings (resource_type TEXT NOT NULL, id TEXT NOT NULL,
    param TEXT NOT NULL, normalized TEXT NOT NULL, exact TEXT NOT NULL, patient_id TEXT,
    normalized_full TEXT);
INSERT INTO old_search_strings SELECT resource_type, id, param, normalized, exact,
    NULLIF(patient_id, ''), normalized_full FROM search_strings;
DROP TABLE search_strings;
ALTER TABLE old_search_strings RENAME TO search_strings;
CREATE INDEX search_strings_value ON search_strings (resource_type, param, normalized);
CREATE INDEX search_strings_resource ON search_strings (resource_type, id, param);

CREATE TABLE old_search_tokens (resource_type TEXT NOT NULL, id TEXT NOT NULL,
    param TEXT NOT NULL, system TEXT, code TEXT NOT NULL, patient_id TEXT, text TEXT,
    code_full TEXT, system_full TEXT);
INSERT INTO old_search_tokens SELECT resource_type, id, param, system, code,
    NULLIF(patient_id, ''), text, code_full, system_full FROM search_tokens;
DROP TABLE search_tokens;
ALTER TABLE old_search_tokens RENAME TO search_tokens;
CREATE INDEX search_tokens_value ON search_tokens (resource_type, param, code, system);
CREATE INDEX search_tokens_resource ON search_tokens (resource_type, id);
CREATE INDEX search_tokens_probe ON search_tokens (resource_type, id, param);

CREATE TABLE old_binary_contents (id TEXT NOT NULL, version_id BIGINT NOT NULL,
    key_id TEXT NOT NULL, content BLOB NOT NULL, PRIMARY KEY (id, version_id));
INSERT INTO old_binary_contents SELECT id, version_id, key_id, content FROM binary_contents;
DROP TABLE binary_contents;
ALTER TABLE old_binary_contents RENAME TO binary_contents;

CREATE TABLE old_resource_versions (seq INTEGER PRIMARY KEY AUTOINCREMENT,
    resource_type TEXT NOT NULL, id TEXT NOT NULL, version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL, deleted BOOLEAN NOT NULL, method TEXT NOT NULL,
    patient_id TEXT, key_id TEXT NOT NULL, body BLOB NOT NULL,
    UNIQUE (resource_type, id, version_id));
INSERT INTO old_resource_versions (resource_type, id, version_id, last_updated, deleted,
    method, patient_id, key_id, body)
    SELECT resource_type, id, version_id, last_updated, deleted, method,
        NULLIF(patient_id, ''), key_id, body
    FROM resource_versions ORDER BY last_updated, patient_id, resource_type, id, version_id;
DROP TABLE resource_versions;
ALTER TABLE old_resource_versions RENAME TO resource_versions;
CREATE INDEX resource_versions_type_seq ON resource_versions (resource_type, seq);

CREATE TABLE old_resources (resource_type TEXT NOT NULL, id TEXT NOT NULL,
    version_id BIGINT NOT NULL, last_updated BIGINT NOT NULL, deleted BOOLEAN NOT NULL,
    patient_id TEXT, labels BIGINT NOT NULL DEFAULT 0, writer TEXT,
    PRIMARY KEY (resource_type, id));
INSERT INTO old_resources SELECT resource_type, id, version_id, last_updated, deleted,
    NULLIF(patient_id, ''), labels, writer FROM resources;
DROP TABLE resources;
ALTER TABLE old_resources RENAME TO resources;
CREATE INDEX resources_patient ON resources (patient_id, resource_type);
CREATE INDEX resources_type_id_live ON resources (resource_type, deleted, id);

DROP TABLE resource_ids;
