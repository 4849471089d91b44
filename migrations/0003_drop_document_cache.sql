-- The document cache (chunks of processed files, keyed by content hash) never got
-- a writer: no feature reads documents yet. Dropped rather than kept as dead schema;
-- a feature that needs it brings its own table with its first caller.
DROP TABLE IF EXISTS document_cache;
