-- The compartment patient id is the distribution key: every clinical table has it NOT NULL
-- and leading every primary and unique key, as on PostgreSQL (see that migration). Rows
-- outside any record take the empty id, which no patient can have. SQLite cannot change a
-- column's constraints in place: each table is rebuilt.

CREATE TABLE resource_ids (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    PRIMARY KEY (resource_type, id)
);
INSERT INTO resource_ids (resource_type, id, patient_id)
    SELECT resource_type, id, COALESCE(patient_id, '') FROM resources;

CREATE TABLE resources_new (
    patient_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    labels BIGINT NOT NULL DEFAULT 0,
    writer TEXT,
    PRIMARY KEY (patient_id, resource_type, id)
);
INSERT INTO resources_new
    SELECT COALESCE(patient_id, ''), resource_type, id, version_id, last_updated, deleted,
        labels, writer
    FROM resources;
DROP TABLE resources;
ALTER TABLE resources_new RENAME TO resources;
CREATE INDEX resources_type_id_live ON resources (resource_type, deleted, id);
CREATE INDEX resources_type_id ON resources (resource_type, id);

-- Versions are ordered by when they were written, then by their key: a global write sequence
-- would assume one node.
CREATE TABLE resource_versions_new (
    patient_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    method TEXT NOT NULL,
    key_id TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (patient_id, resource_type, id, version_id)
);
-- Before the patient id was fixed for good (migration 2026-12-07), an update could move a
-- resource to another record, leaving its earlier versions with the earlier patient. A
-- resource's versions now live in its record, the one of its current row, by which every
-- version was already judged.
INSERT INTO resource_versions_new
    SELECT COALESCE((SELECT r.patient_id FROM resources r
                     WHERE r.resource_type = v.resource_type AND r.id = v.id),
                    v.patient_id, ''),
        v.resource_type, v.id, v.version_id, v.last_updated, v.deleted, v.method, v.key_id,
        v.body
    FROM resource_versions v ORDER BY v.seq;
DROP TABLE resource_versions;
ALTER TABLE resource_versions_new RENAME TO resource_versions;
CREATE INDEX resource_versions_type_time ON resource_versions (resource_type, last_updated);
CREATE INDEX resource_versions_time ON resource_versions (last_updated);

-- A Binary's bytes live with the patient that holds the Binary.
CREATE TABLE binary_contents_new (
    patient_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    content BLOB NOT NULL,
    PRIMARY KEY (patient_id, id, version_id)
);
INSERT INTO binary_contents_new
    SELECT COALESCE((SELECT r.patient_id FROM resources r
                     WHERE r.resource_type = 'Binary' AND r.id = c.id), ''),
        c.id, c.version_id, c.key_id, c.content
    FROM binary_contents c;
DROP TABLE binary_contents;
ALTER TABLE binary_contents_new RENAME TO binary_contents;

CREATE TABLE search_tokens_new (
    patient_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    system TEXT,
    code TEXT NOT NULL,
    text TEXT,
    code_full TEXT,
    system_full TEXT
);
INSERT INTO search_tokens_new
    SELECT COALESCE(patient_id, ''), resource_type, id, param, system, code, text, code_full,
        system_full
    FROM search_tokens;
DROP TABLE search_tokens;
ALTER TABLE search_tokens_new RENAME TO search_tokens;
CREATE INDEX search_tokens_value ON search_tokens (resource_type, param, code, system);
CREATE INDEX search_tokens_resource ON search_tokens (patient_id, resource_type, id, param);

CREATE TABLE search_strings_new (
    patient_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    normalized TEXT NOT NULL,
    exact TEXT NOT NULL,
    normalized_full TEXT
);
INSERT INTO search_strings_new
    SELECT COALESCE(patient_id, ''), resource_type, id, param, normalized, exact,
        normalized_full
    FROM search_strings;
DROP TABLE search_strings;
ALTER TABLE search_strings_new RENAME TO search_strings;
CREATE INDEX search_strings_value ON search_strings (resource_type, param, normalized);
CREATE INDEX search_strings_resource ON search_strings (patient_id, resource_type, id, param);

CREATE TABLE search_dates_new (
    patient_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    low BIGINT NOT NULL,
    high BIGINT NOT NULL
);
INSERT INTO search_dates_new
    SELECT COALESCE(patient_id, ''), resource_type, id, param, low, high FROM search_dates;
DROP TABLE search_dates;
ALTER TABLE search_dates_new RENAME TO search_dates;
CREATE INDEX search_dates_low ON search_dates (resource_type, param, low);
CREATE INDEX search_dates_high ON search_dates (resource_type, param, high);
CREATE INDEX search_dates_resource ON search_dates (patient_id, resource_type, id, param);

CREATE TABLE search_references_new (
    patient_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    target_type TEXT,
    target_id TEXT,
    url TEXT NOT NULL,
    url_full TEXT
);
INSERT INTO search_references_new
    SELECT COALESCE(patient_id, ''), resource_type, id, param, target_type, target_id, url,
        url_full
    FROM search_references;
DROP TABLE search_references;
ALTER TABLE search_references_new RENAME TO search_references;
CREATE INDEX search_references_target
    ON search_references (resource_type, param, target_id, target_type);
CREATE INDEX search_references_url ON search_references (resource_type, param, url);
CREATE INDEX search_references_reverse ON search_references (target_type, target_id);
CREATE INDEX search_references_resource
    ON search_references (patient_id, resource_type, id, param);
-- The references of resources found by id in no one record: `_include` from a page across
-- records, `_has`.
CREATE INDEX search_references_source ON search_references (resource_type, id, param);

CREATE TABLE search_uris_new (
    patient_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    uri TEXT NOT NULL,
    uri_full TEXT
);
INSERT INTO search_uris_new
    SELECT COALESCE(patient_id, ''), resource_type, id, param, uri, uri_full FROM search_uris;
DROP TABLE search_uris;
ALTER TABLE search_uris_new RENAME TO search_uris;
CREATE INDEX search_uris_value ON search_uris (resource_type, param, uri);
CREATE INDEX search_uris_resource ON search_uris (patient_id, resource_type, id, param);

CREATE TABLE access_terms_new (
    patient_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (patient_id, resource_type, id, kind, value)
);
INSERT INTO access_terms_new
    SELECT COALESCE(patient_id, ''), resource_type, id, kind, value FROM access_terms;
DROP TABLE access_terms;
ALTER TABLE access_terms_new RENAME TO access_terms;
CREATE INDEX access_terms_value ON access_terms (kind, value);

DROP INDEX directives_source;
CREATE INDEX directives_source ON directives (patient_id, source_type, source_id);

-- The rebuilt tables have no statistics yet: the planner would guess until the next ANALYZE.
ANALYZE;
