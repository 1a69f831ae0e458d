DROP INDEX directives_source;
CREATE INDEX directives_source ON directives (source_type, source_id);

ALTER TABLE access_terms DROP CONSTRAINT access_terms_pkey;
ALTER TABLE access_terms ADD PRIMARY KEY (resource_type, id, kind, value);

DROP INDEX search_uris_resource;
CREATE INDEX search_uris_resource ON search_uris (resource_type, id, param);
DROP INDEX search_references_source;
DROP INDEX search_references_resource;
CREATE INDEX search_references_resource ON search_references (resource_type, id, param);
DROP INDEX search_dates_resource;
CREATE INDEX search_dates_resource ON search_dates (resource_type, id, param);
DROP INDEX search_strings_resource;
CREATE INDEX search_strings_resource ON search_strings (resource_type, id, param);
DROP INDEX search_tokens_resource;
CREATE INDEX search_tokens_resource ON search_tokens (resource_type, id);
CREATE INDEX search_tokens_probe ON search_tokens (resource_type, id, param);

ALTER TABLE binary_contents DROP CONSTRAINT binary_contents_pkey;
ALTER TABLE binary_contents DROP COLUMN patient_id;
ALTER TABLE binary_contents ADD PRIMARY KEY (id, version_id);

DROP INDEX resource_versions_time;
DROP INDEX resource_versions_type_time;
ALTER TABLE resource_versions DROP CONSTRAINT resource_versions_pkey;
ALTER TABLE resource_versions ADD COLUMN seq BIGSERIAL PRIMARY KEY;
ALTER TABLE resource_versions
    ADD CONSTRAINT resource_versions_resource_type_id_version_id_key
    UNIQUE (resource_type, id, version_id);
CREATE INDEX resource_versions_type_seq ON resource_versions (resource_type, seq);

DROP INDEX resources_type_id;
CREATE INDEX resources_patient ON resources (patient_id, resource_type);
ALTER TABLE resources DROP CONSTRAINT resources_pkey;
ALTER TABLE resources ADD PRIMARY KEY (resource_type, id);

DROP TABLE resource_ids;

ALTER TABLE access_terms ALTER COLUMN patient_id DROP NOT NULL;
ALTER TABLE search_uris ALTER COLUMN patient_id DROP NOT NULL;
ALTER TABLE search_references ALTER COLUMN patient_id DROP NOT NULL;
ALTER TABLE search_dates ALTER COLUMN patient_id DROP NOT NULL;
ALTER TABLE search_strings ALTER COLUMN patient_id DROP NOT NULL;
ALTER TABLE search_tokens ALTER COLUMN patient_id DROP NOT NULL;
ALTER TABLE resource_versions ALTER COLUMN patient_id DROP NOT NULL;
ALTER TABLE resources ALTER COLUMN patient_id DROP NOT NULL;
UPDATE resources SET patient_id = NULL WHERE patient_id = '';
UPDATE resource_versions SET patient_id = NULL WHERE patient_id = '';
UPDATE search_tokens SET patient_id = NULL WHERE patient_id = '';
UPDATE search_strings SET patient_id = NULL WHERE patient_id = '';
UPDATE search_dates SET patient_id = NULL WHERE patient_id = '';
UPDATE search_references SET patient_id = NULL WHERE patient_id = '';
UPDATE search_uris SET patient_id = NULL WHERE patient_id = '';
UPDATE access_terms SET patient_id = NULL WHERE patient_id = '';
