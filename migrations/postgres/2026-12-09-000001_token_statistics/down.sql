DROP STATISTICS IF EXISTS search_tokens_value_stats;
