-- Current state of every resource (one row per logical id, deleted ones included);
-- the body of that version is in resource_versions.
CREATE TABLE resources (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,          -- microseconds since 1970-01-01T00:00:00Z
    deleted BOOLEAN NOT NULL,
    patient_id TEXT,                       -- compartment patient (future shard key)
    PRIMARY KEY (resource_type, id)
);
CREATE INDEX resources_patient ON resources (patient_id, resource_type);

-- Every version ever written, in write order (`seq`), for vread and history.
CREATE TABLE resource_versions (
    seq BIGSERIAL PRIMARY KEY,
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    method TEXT NOT NULL,                  -- POST, PUT, PATCH or DELETE
    patient_id TEXT,
    key_id TEXT NOT NULL,                  -- codec key of `body`
    body BYTEA NOT NULL,
    UNIQUE (resource_type, id, version_id)
);
CREATE INDEX resource_versions_type_seq ON resource_versions (resource_type, seq);
