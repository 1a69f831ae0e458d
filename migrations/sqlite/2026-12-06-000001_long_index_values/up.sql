-- Long values (a 2,700-character name, identifier or URL) must fit in the B-tree indexes,
-- whose entries PostgreSQL limits to 2704 bytes. The indexed columns now hold a value's
-- first 200 characters (its key); a longer value goes whole to the unindexed `_full` twin
-- (NULL otherwise), on which a match on the key is confirmed. Same layout on both backends.
ALTER TABLE search_tokens ADD COLUMN code_full TEXT;
ALTER TABLE search_tokens ADD COLUMN system_full TEXT;
ALTER TABLE search_strings ADD COLUMN normalized_full TEXT;
ALTER TABLE search_references ADD COLUMN url_full TEXT;
ALTER TABLE search_uris ADD COLUMN uri_full TEXT;

-- Rows written before: cut the values that are longer than a key (length and substr count
-- characters on both backends).
UPDATE search_tokens SET code_full = code, code = substr(code, 1, 200) WHERE length(code) > 200;
UPDATE search_tokens SET system_full = system, system = substr(system, 1, 200)
    WHERE length(system) > 200;
UPDATE search_strings SET normalized_full = normalized, normalized = substr(normalized, 1, 200)
    WHERE length(normalized) > 200;
UPDATE search_references SET url_full = url, url = substr(url, 1, 200) WHERE length(url) > 200;
UPDATE search_uris SET uri_full = uri, uri = substr(uri, 1, 200) WHERE length(uri) > 200;
