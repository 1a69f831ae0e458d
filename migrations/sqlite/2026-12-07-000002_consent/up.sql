-- What the consent engine reads besides each resource's own row (labels, writer), written in
-- the same transaction as the resource it comes from (see consent::facts).

-- One row per record: from its Patient resource.
CREATE TABLE records (
    patient_id TEXT NOT NULL PRIMARY KEY,
    active BOOLEAN NOT NULL,               -- Patient.active (a closed record is false)
    adult_at BIGINT                        -- 00:00 Europe/Paris on the 18th birthday, microseconds
);

-- The patient's directives: from active patient-privacy Consents, and an authorization for
-- each general practitioner (from the Patient).
CREATE TABLE directives (
    patient_id TEXT NOT NULL,
    source_type TEXT NOT NULL,             -- Consent or Patient
    source_id TEXT NOT NULL,
    kind TEXT NOT NULL,                    -- opposition, block, refuse-break-glass, authorize
    actor_type TEXT,                       -- Practitioner or Organization (block, authorize)
    actor_id TEXT,
    period_start BIGINT,                   -- [start, end), microseconds; NULL = unbounded
    period_end BIGINT
);
CREATE INDEX directives_patient ON directives (patient_id, kind, actor_id);
CREATE INDEX directives_source ON directives (source_type, source_id);

-- Guardianships: the RelatedPerson a guardian's token names, and the minor it links to.
CREATE TABLE guardians (
    related_person_id TEXT NOT NULL PRIMARY KEY,
    patient_id TEXT NOT NULL
);

-- Terms of a resource that access decisions match: the practitioners it names as authors
-- (`author`), its document class and type codes (`class`, system|code), the Binaries its
-- attachments point to (`binary`).
CREATE TABLE access_terms (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    patient_id TEXT,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (resource_type, id, kind, value)
);
CREATE INDEX access_terms_value ON access_terms (kind, value);
