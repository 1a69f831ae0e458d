-- The directory (Organization, Practitioner, PractitionerRole) belongs to no record and every
-- record's queries join to it: it moves out of the tables keyed by patient id into tables of
-- its own, which a database distributed by patient keeps as reference tables (a copy on every
-- node). Same columns as the records' tables, so the same statements read both; the patient
-- id is always the empty one.

CREATE TABLE directory_resources (
    patient_id TEXT NOT NULL CHECK (patient_id = ''),
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    labels BIGINT NOT NULL DEFAULT 0,
    writer TEXT,
    PRIMARY KEY (patient_id, resource_type, id)
);
CREATE INDEX directory_resources_type_id_live ON directory_resources (resource_type, deleted, id);
CREATE INDEX directory_resources_type_id ON directory_resources (resource_type, id);

CREATE TABLE directory_versions (
    patient_id TEXT NOT NULL CHECK (patient_id = ''),
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
CREATE INDEX directory_versions_type_time ON directory_versions (resource_type, last_updated);
CREATE INDEX directory_versions_time ON directory_versions (last_updated);

CREATE TABLE directory_tokens (
    patient_id TEXT NOT NULL CHECK (patient_id = ''),
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    system TEXT,
    code TEXT NOT NULL,
    text TEXT,
    code_full TEXT,
    system_full TEXT
);
CREATE INDEX directory_tokens_value ON directory_tokens (resource_type, param, code, system);
CREATE INDEX directory_tokens_resource ON directory_tokens (patient_id, resource_type, id, param);

CREATE TABLE directory_strings (
    patient_id TEXT NOT NULL CHECK (patient_id = ''),
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    normalized TEXT NOT NULL,
    exact TEXT NOT NULL,
    normalized_full TEXT
);
CREATE INDEX directory_strings_value ON directory_strings (resource_type, param, normalized);
CREATE INDEX directory_strings_resource ON directory_strings (patient_id, resource_type, id, param);

CREATE TABLE directory_dates (
    patient_id TEXT NOT NULL CHECK (patient_id = ''),
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    low BIGINT NOT NULL,
    high BIGINT NOT NULL
);
CREATE INDEX directory_dates_low ON directory_dates (resource_type, param, low);
CREATE INDEX directory_dates_high ON directory_dates (resource_type, param, high);
CREATE INDEX directory_dates_resource ON directory_dates (patient_id, resource_type, id, param);

CREATE TABLE directory_references (
    patient_id TEXT NOT NULL CHECK (patient_id = ''),
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    target_type TEXT,
    target_id TEXT,
    url TEXT NOT NULL,
    url_full TEXT
);
CREATE INDEX directory_references_target
    ON directory_references (resource_type, param, target_id, target_type);
CREATE INDEX directory_references_url ON directory_references (resource_type, param, url);
CREATE INDEX directory_references_reverse ON directory_references (target_type, target_id);
CREATE INDEX directory_references_resource
    ON directory_references (patient_id, resource_type, id, param);
CREATE INDEX directory_references_source ON directory_references (resource_type, id, param);

CREATE TABLE directory_uris (
    patient_id TEXT NOT NULL CHECK (patient_id = ''),
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    uri TEXT NOT NULL,
    uri_full TEXT
);
CREATE INDEX directory_uris_value ON directory_uris (resource_type, param, uri);
CREATE INDEX directory_uris_resource ON directory_uris (patient_id, resource_type, id, param);

-- Move the directory's rows (always outside records: none of its types is in a patient
-- compartment).
INSERT INTO directory_resources (patient_id, resource_type, id, version_id, last_updated, deleted, labels, writer)
    SELECT patient_id, resource_type, id, version_id, last_updated, deleted, labels, writer FROM resources
    WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
INSERT INTO directory_versions (patient_id, resource_type, id, version_id, last_updated, deleted, method, key_id, body)
    SELECT patient_id, resource_type, id, version_id, last_updated, deleted, method, key_id, body FROM resource_versions
    WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
INSERT INTO directory_tokens (patient_id, resource_type, id, param, system, code, text, code_full, system_full)
    SELECT patient_id, resource_type, id, param, system, code, text, code_full, system_full FROM search_tokens
    WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
INSERT INTO directory_strings (patient_id, resource_type, id, param, normalized, exact, normalized_full)
    SELECT patient_id, resource_type, id, param, normalized, exact, normalized_full FROM search_strings
    WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
INSERT INTO directory_dates (patient_id, resource_type, id, param, low, high)
    SELECT patient_id, resource_type, id, param, low, high FROM search_dates
    WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
INSERT INTO directory_references (patient_id, resource_type, id, param, target_type, target_id, url, url_full)
    SELECT patient_id, resource_type, id, param, target_type, target_id, url, url_full FROM search_references
    WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
INSERT INTO directory_uris (patient_id, resource_type, id, param, uri, uri_full)
    SELECT patient_id, resource_type, id, param, uri, uri_full FROM search_uris
    WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');

DELETE FROM resources WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
DELETE FROM resource_versions WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
DELETE FROM search_tokens WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
DELETE FROM search_strings WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
DELETE FROM search_dates WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
DELETE FROM search_references WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
DELETE FROM search_uris WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');

ANALYZE;
