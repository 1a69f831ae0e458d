-- The compartment patient id is the distribution key (Citus) or the partition key (hash
-- partitioning): every clinical table now has it NOT NULL and leading every primary and
-- unique key, so that the tables can be distributed by it and a query about one record
-- touches one shard. Rows outside any record (the directory, a Binary no document owns, a
-- writer's private rows) take the empty id, which no patient can have (ids are 1-64
-- characters). The patient id of a row never changes, deletions included.

UPDATE resources SET patient_id = '' WHERE patient_id IS NULL;
UPDATE resource_versions SET patient_id = '' WHERE patient_id IS NULL;
UPDATE search_tokens SET patient_id = '' WHERE patient_id IS NULL;
UPDATE search_strings SET patient_id = '' WHERE patient_id IS NULL;
UPDATE search_dates SET patient_id = '' WHERE patient_id IS NULL;
UPDATE search_references SET patient_id = '' WHERE patient_id IS NULL;
UPDATE search_uris SET patient_id = '' WHERE patient_id IS NULL;
UPDATE access_terms SET patient_id = '' WHERE patient_id IS NULL;

-- Before the patient id was fixed for good (migration 2026-12-07), an update could move a
-- resource to another record, leaving its earlier versions with the earlier patient. A
-- resource's versions now live in its record, the one of its current row, by which every
-- version was already judged.
UPDATE resource_versions v SET patient_id = r.patient_id FROM resources r
    WHERE r.resource_type = v.resource_type AND r.id = v.id AND v.patient_id <> r.patient_id;

ALTER TABLE resources ALTER COLUMN patient_id SET NOT NULL;
ALTER TABLE resource_versions ALTER COLUMN patient_id SET NOT NULL;
ALTER TABLE search_tokens ALTER COLUMN patient_id SET NOT NULL;
ALTER TABLE search_strings ALTER COLUMN patient_id SET NOT NULL;
ALTER TABLE search_dates ALTER COLUMN patient_id SET NOT NULL;
ALTER TABLE search_references ALTER COLUMN patient_id SET NOT NULL;
ALTER TABLE search_uris ALTER COLUMN patient_id SET NOT NULL;
ALTER TABLE access_terms ALTER COLUMN patient_id SET NOT NULL;

-- Which patient holds each resource, by type and id: a read by bare id finds its record here
-- rather than asking every shard, and client-chosen ids stay unique across records. Not a
-- clinical table: it holds no health data, and is keyed by the id it looks up.
CREATE TABLE resource_ids (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    PRIMARY KEY (resource_type, id)
);
INSERT INTO resource_ids (resource_type, id, patient_id)
    SELECT resource_type, id, patient_id FROM resources;

ALTER TABLE resources DROP CONSTRAINT resources_pkey;
ALTER TABLE resources ADD PRIMARY KEY (patient_id, resource_type, id);
DROP INDEX resources_patient;
-- Joins from a reference, whose target's record is not known.
CREATE INDEX resources_type_id ON resources (resource_type, id);

-- Versions are ordered by when they were written, then by their key: a global write sequence
-- would assume one node.
ALTER TABLE resource_versions DROP CONSTRAINT resource_versions_pkey;
ALTER TABLE resource_versions DROP CONSTRAINT resource_versions_resource_type_id_version_id_key;
DROP INDEX resource_versions_type_seq;
ALTER TABLE resource_versions DROP COLUMN seq;
ALTER TABLE resource_versions ADD PRIMARY KEY (patient_id, resource_type, id, version_id);
CREATE INDEX resource_versions_type_time ON resource_versions (resource_type, last_updated);
CREATE INDEX resource_versions_time ON resource_versions (last_updated);

-- A Binary's bytes live with the patient that holds the Binary.
ALTER TABLE binary_contents ADD COLUMN patient_id TEXT NOT NULL DEFAULT '';
UPDATE binary_contents SET patient_id = r.patient_id FROM resources r
    WHERE r.resource_type = 'Binary' AND r.id = binary_contents.id;
ALTER TABLE binary_contents ALTER COLUMN patient_id DROP DEFAULT;
ALTER TABLE binary_contents DROP CONSTRAINT binary_contents_pkey;
ALTER TABLE binary_contents ADD PRIMARY KEY (patient_id, id, version_id);

-- A resource's own index rows, found (and replaced on each write) within its record.
DROP INDEX search_tokens_resource;
DROP INDEX search_tokens_probe;
CREATE INDEX search_tokens_resource ON search_tokens (patient_id, resource_type, id, param);
DROP INDEX search_strings_resource;
CREATE INDEX search_strings_resource ON search_strings (patient_id, resource_type, id, param);
DROP INDEX search_dates_resource;
CREATE INDEX search_dates_resource ON search_dates (patient_id, resource_type, id, param);
DROP INDEX search_references_resource;
CREATE INDEX search_references_resource ON search_references (patient_id, resource_type, id, param);
-- The references of resources found by id in no one record: `_include` from a page across
-- records, `_has`.
CREATE INDEX search_references_source ON search_references (resource_type, id, param);
DROP INDEX search_uris_resource;
CREATE INDEX search_uris_resource ON search_uris (patient_id, resource_type, id, param);

ALTER TABLE access_terms DROP CONSTRAINT access_terms_pkey;
ALTER TABLE access_terms ADD PRIMARY KEY (patient_id, resource_type, id, kind, value);

DROP INDEX directives_source;
CREATE INDEX directives_source ON directives (patient_id, source_type, source_id);

-- The new lookup has no statistics until autovacuum comes by.
ANALYZE resource_ids;
