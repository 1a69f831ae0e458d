-- Token search index (identifiers, codes), one row per value of a current, non-deleted
-- resource; rewritten in the same transaction as the resource.
CREATE TABLE search_tokens (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,                   -- search parameter code, e.g. identifier
    system TEXT,                           -- NULL when the value has no system
    code TEXT NOT NULL,
    patient_id TEXT                        -- compartment patient (future shard key)
);
CREATE INDEX search_tokens_value ON search_tokens (resource_type, param, code, system);
CREATE INDEX search_tokens_resource ON search_tokens (resource_type, id);
