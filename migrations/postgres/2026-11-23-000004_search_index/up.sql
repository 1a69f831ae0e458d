-- Search index tables, one per parameter type: one row per value a search parameter extracts
-- from a current, non-deleted resource, rewritten in the same transaction as the resource
-- (`carnet reindex` rebuilds them all). `patient_id` is the compartment patient (shard key).
-- Text compared by prefix uses byte order so that a range scan on the index finds prefixes.

ALTER TABLE search_tokens ADD COLUMN text TEXT COLLATE "C";         -- normalised display, for :text
-- Probes of one resource's rows for a parameter (criteria that do not drive a search).
CREATE INDEX search_tokens_probe ON search_tokens (resource_type, id, param);

CREATE TABLE search_strings (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    normalized TEXT COLLATE "C" NOT NULL,          -- lower case, no diacritics: default and :contains
    exact TEXT NOT NULL,                  -- as written: :exact
    patient_id TEXT
);
CREATE INDEX search_strings_value ON search_strings (resource_type, param, normalized);
CREATE INDEX search_strings_resource ON search_strings (resource_type, id, param);

CREATE TABLE search_dates (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    low BIGINT NOT NULL,                  -- microseconds since the epoch, inclusive
    high BIGINT NOT NULL,                 -- exclusive
    patient_id TEXT
);
CREATE INDEX search_dates_low ON search_dates (resource_type, param, low);
CREATE INDEX search_dates_high ON search_dates (resource_type, param, high);
CREATE INDEX search_dates_resource ON search_dates (resource_type, id, param);

CREATE TABLE search_references (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    target_type TEXT,                     -- set for references to this server
    target_id TEXT,
    url TEXT NOT NULL,                    -- the reference as written
    patient_id TEXT
);
CREATE INDEX search_references_target ON search_references (resource_type, param, target_id, target_type);
CREATE INDEX search_references_url ON search_references (resource_type, param, url);
CREATE INDEX search_references_reverse ON search_references (target_type, target_id);
CREATE INDEX search_references_resource ON search_references (resource_type, id, param);

CREATE TABLE search_uris (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    uri TEXT COLLATE "C" NOT NULL,
    patient_id TEXT
);
CREATE INDEX search_uris_value ON search_uris (resource_type, param, uri);
CREATE INDEX search_uris_resource ON search_uris (resource_type, id, param);

-- Keyset paging of search results walks resources of a type in id order.
CREATE INDEX resources_type_id_live ON resources (resource_type, deleted, id);

-- Server-held secrets, created on first use (e.g. the key that authenticates paging cursors).
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    secret BYTEA NOT NULL
);
