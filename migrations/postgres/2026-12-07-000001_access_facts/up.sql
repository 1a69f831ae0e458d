-- What the consent engine reads of each resource without parsing its body: its TRE_A07
-- visibility labels (a bit set, see consent::model::Labels) and who created it
-- (consent::model::Writer::key). Rows written before this migration have neither.
ALTER TABLE resources ADD COLUMN labels BIGINT NOT NULL DEFAULT 0;
ALTER TABLE resources ADD COLUMN writer TEXT;

-- A deletion keeps its resource's patient (the patient id never changes: it is the future
-- distribution key). Tombstones written before took NULL: give them back the patient of
-- the last version that had one.
UPDATE resource_versions SET patient_id = (
    SELECT p.patient_id FROM resource_versions p
    WHERE p.resource_type = resource_versions.resource_type AND p.id = resource_versions.id
      AND p.patient_id IS NOT NULL AND p.version_id < resource_versions.version_id
    ORDER BY p.version_id DESC LIMIT 1)
WHERE deleted AND patient_id IS NULL;
UPDATE resources SET patient_id = (
    SELECT v.patient_id FROM resource_versions v
    WHERE v.resource_type = resources.resource_type AND v.id = resources.id
      AND v.version_id = resources.version_id)
WHERE deleted AND patient_id IS NULL;
