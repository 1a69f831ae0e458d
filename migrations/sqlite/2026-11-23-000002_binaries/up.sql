-- Binary content as bytes (not base64 inside the JSON body), one row per Binary version.
CREATE TABLE binary_contents (
    id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    key_id TEXT NOT NULL,                  -- codec key of `content`
    content BLOB NOT NULL,
    PRIMARY KEY (id, version_id)
);
