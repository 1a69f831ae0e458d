DROP TABLE search_tokens;
