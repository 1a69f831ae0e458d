-- The directory (Organization, Practitioner, PractitionerRole) belongs to no record and every
-- record's queries join to it: it moves out of the tables keyed by patient id into tables of
-- its own, which a database distributed by patient keeps as reference tables (a copy on every
-- node). Same columns, collations, indexes and statistics as the records' tables, so the same statements
-- read both; the patient id is always the empty one.

CREATE TABLE directory_resources (LIKE resources INCLUDING ALL);
ALTER TABLE directory_resources ADD CHECK (patient_id = '');
CREATE TABLE directory_versions (LIKE resource_versions INCLUDING ALL);
ALTER TABLE directory_versions ADD CHECK (patient_id = '');
CREATE TABLE directory_tokens (LIKE search_tokens INCLUDING ALL);
ALTER TABLE directory_tokens ADD CHECK (patient_id = '');
CREATE TABLE directory_strings (LIKE search_strings INCLUDING ALL);
ALTER TABLE directory_strings ADD CHECK (patient_id = '');
CREATE TABLE directory_dates (LIKE search_dates INCLUDING ALL);
ALTER TABLE directory_dates ADD CHECK (patient_id = '');
CREATE TABLE directory_references (LIKE search_references INCLUDING ALL);
ALTER TABLE directory_references ADD CHECK (patient_id = '');
CREATE TABLE directory_uris (LIKE search_uris INCLUDING ALL);
ALTER TABLE directory_uris ADD CHECK (patient_id = '');

-- Move the directory's rows (always outside records: none of its types is in a patient
-- compartment).
INSERT INTO directory_resources SELECT * FROM resources
    WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
INSERT INTO directory_versions SELECT * FROM resource_versions
    WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
INSERT INTO directory_tokens SELECT * FROM search_tokens
    WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
INSERT INTO directory_strings SELECT * FROM search_strings
    WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
INSERT INTO directory_dates SELECT * FROM search_dates
    WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
INSERT INTO directory_references SELECT * FROM search_references
    WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
INSERT INTO directory_uris SELECT * FROM search_uris
    WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
DELETE FROM resources WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
DELETE FROM resource_versions WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
DELETE FROM search_tokens WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
DELETE FROM search_strings WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
DELETE FROM search_dates WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
DELETE FROM search_references WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');
DELETE FROM search_uris WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole');

ANALYZE directory_resources;
ANALYZE directory_versions;
ANALYZE directory_tokens;
ANALYZE directory_strings;
ANALYZE directory_dates;
ANALYZE directory_references;
ANALYZE directory_uris;
