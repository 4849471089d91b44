-- Hearth schema, version 2: what measuring a model file found (`hearth eval`, and the
-- app's Quantize… flow, which measures what it made against its source).
--
-- A row is one measurement of one file. The file is named by its SHA-256 (the same
-- bytes under another name or path are the same model) and found again cheaply by
-- path, size and modification time, so listing models never re-hashes gigabytes.
-- Perplexities compare only on the same text and window: both are recorded.

CREATE TABLE model_evals (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    file_hash            TEXT NOT NULL CHECK (length(file_hash) = 64),
    file_path            TEXT NOT NULL,
    file_bytes           INTEGER NOT NULL CHECK (file_bytes >= 0),
    -- The file's modification time (Unix ms) when it was measured.
    file_mtime_ms        INTEGER NOT NULL,
    -- The GGUF's dominant tensor type ("Q4_K_M", "F16"...), when it names one.
    quant_type           TEXT,
    bits_per_weight      REAL NOT NULL,
    -- What loading the model added to the measuring process's resident memory.
    ram_after_load_bytes INTEGER,
    decode_tps           REAL,
    -- The scored text (SHA-256 of its UTF-8 bytes) and the window it was scored in.
    text_hash            TEXT NOT NULL CHECK (length(text_hash) = 64),
    window               INTEGER NOT NULL CHECK (window > 0),
    tokens_scored        INTEGER NOT NULL CHECK (tokens_scored > 0),
    perplexity           REAL NOT NULL,
    -- Against a reference (the file a quantization came from): all or none.
    reference_hash       TEXT CHECK (reference_hash IS NULL OR length(reference_hash) = 64),
    reference_name       TEXT,
    reference_perplexity REAL,
    kl_mean              REAL,
    kl_p99               REAL,
    same_top_percent     REAL,
    measured_at          INTEGER NOT NULL,
    CHECK ((reference_hash IS NULL) = (reference_name IS NULL)
       AND (reference_hash IS NULL) = (reference_perplexity IS NULL)
       AND (reference_hash IS NULL) = (kl_mean IS NULL)
       AND (reference_hash IS NULL) = (kl_p99 IS NULL)
       AND (reference_hash IS NULL) = (same_top_percent IS NULL))
);

-- A file's measurements, newest first (the model card shows the latest).
CREATE INDEX model_evals_by_file ON model_evals (file_hash, measured_at DESC);
-- The model list finds a file's measurements without hashing it.
CREATE INDEX model_evals_by_path ON model_evals (file_path, measured_at DESC);
