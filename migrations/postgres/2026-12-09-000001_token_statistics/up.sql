-- The columns of a token row are far from independent (a `type` code belongs to one system, a
-- parameter to a few resource types): multiplying their selectivities made PostgreSQL expect
-- 20 times fewer rows for a common document type than there are, and page a broad search by
-- sorting every match instead of walking ids in order (0.9 s a page instead of 20 ms).
-- Extended statistics give it the combined frequencies (filled by the next ANALYZE).
CREATE STATISTICS IF NOT EXISTS search_tokens_value_stats (dependencies, mcv)
    ON resource_type, param, system, code FROM search_tokens;
