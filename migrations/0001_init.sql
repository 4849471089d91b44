-- Hearth schema, version 1.
--
-- Applied by hearth-store (src-tauri/crates/store/src/migrate.rs) inside one
-- BEGIN IMMEDIATE transaction, together with `PRAGMA user_version = 1`.
-- Never edit a migration that has shipped: add 0002_*.sql instead.
--
-- Conventions
--   * Timestamps are INTEGER Unix milliseconds (UTC): they sort and compare as
--     numbers, index compactly and need no parsing.
--   * JSON columns are TEXT guarded by CHECK (json_valid(...)), so a buggy
--     writer cannot store something the readers cannot decode.
--   * Ids (see the crate docs): sessions use UUID v7 text ids (created by the
--     app, stable across export/import, time-ordered so the primary-key B-tree
--     grows at its right edge); chat messages use INTEGER PRIMARY KEY
--     AUTOINCREMENT, because FTS5's external-content index is keyed by rowid and
--     only an INTEGER PRIMARY KEY rowid is guaranteed to survive VACUUM, and
--     AUTOINCREMENT never reuses an id, so "messages after id N" tailing and any
--     id a client cached stay correct after deletions.

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL DEFAULT 'local',
    title         TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    data          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(data)),
    -- Maintained by the chat_history triggers below, in the same transaction
    -- as the message itself, so it always equals the real count.
    message_count INTEGER NOT NULL DEFAULT 0
);

-- Sidebar: a user's sessions, most recently active first.
CREATE INDEX sessions_by_user_updated ON sessions (user_id, updated_at DESC);

CREATE TABLE chat_history (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content    TEXT NOT NULL,
    timestamp  INTEGER NOT NULL,
    -- {"backend": ..., "model": ..., "metrics": {...}, "incomplete": true, ...}
    metadata   TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata))
);

-- A session's messages in order (list, tail, recent-N), and the foreign key
-- index that makes ON DELETE CASCADE a range delete instead of a table scan.
CREATE INDEX chat_history_by_session ON chat_history (session_id, id);

-- Full-text search over message content. External content: the text is stored
-- once (in chat_history) and the index is kept in sync by the triggers below.
CREATE VIRTUAL TABLE chat_fts USING fts5 (
    content,
    content = 'chat_history',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER chat_history_ai AFTER INSERT ON chat_history BEGIN
    INSERT INTO chat_fts (rowid, content) VALUES (new.id, new.content);
    UPDATE sessions SET message_count = message_count + 1 WHERE id = new.session_id;
END;

CREATE TRIGGER chat_history_ad AFTER DELETE ON chat_history BEGIN
    INSERT INTO chat_fts (chat_fts, rowid, content) VALUES ('delete', old.id, old.content);
    UPDATE sessions SET message_count = message_count - 1 WHERE id = old.session_id;
END;

-- Only a content change touches the index: marking a message incomplete
-- (a metadata update) costs no re-indexing.
CREATE TRIGGER chat_history_au AFTER UPDATE OF content ON chat_history BEGIN
    INSERT INTO chat_fts (chat_fts, rowid, content) VALUES ('delete', old.id, old.content);
    INSERT INTO chat_fts (rowid, content) VALUES (new.id, new.content);
END;

CREATE TABLE document_cache (
    -- Lowercase hex SHA-256 of the file's bytes.
    file_hash    TEXT PRIMARY KEY NOT NULL CHECK (length(file_hash) = 64),
    file_name    TEXT NOT NULL,
    processed_at INTEGER NOT NULL,
    chunks       TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(chunks)),
    metadata     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata))
);

CREATE TABLE performance_logs (
    id               INTEGER PRIMARY KEY,
    operation        TEXT NOT NULL,
    latency_ms       REAL NOT NULL,
    tokens_processed INTEGER,
    timestamp        INTEGER NOT NULL,
    -- {"decode_tps": ..., "ttft_ms": ..., "prompt_tps": ..., ...}
    metrics          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metrics)),
    -- Real columns, not JSON: aggregation per backend+model is the main query.
    backend          TEXT NOT NULL DEFAULT '',
    model            TEXT NOT NULL DEFAULT '',
    -- The reply this record measured, when there is one.
    message_id       INTEGER REFERENCES chat_history (id) ON DELETE SET NULL,
    -- Copies of metrics.decode_tps / metrics.ttft_ms as plain columns, written
    -- by the store with the row, so the covering indexes below can serve the
    -- percentile query without reading or JSON-parsing table rows. (Generated
    -- columns cannot do this: SQLite counts the JSON column they derive from as
    -- used, so no index on them is ever covering.)
    decode_tps       REAL,
    ttft_ms          REAL
);

-- Per backend+model over a time window; covering for the percentile query.
CREATE INDEX performance_logs_by_backend_model
    ON performance_logs (backend, model, timestamp, operation, decode_tps, ttft_ms, latency_ms);

-- All backends over a time window (the summary query, pruning old records);
-- covering too, so a recent window reads only its slice of this index.
CREATE INDEX performance_logs_by_time
    ON performance_logs (timestamp, backend, model, operation, decode_tps, ttft_ms, latency_ms);

-- ON DELETE SET NULL from chat_history needs this to avoid a scan per message.
CREATE INDEX performance_logs_by_message
    ON performance_logs (message_id) WHERE message_id IS NOT NULL;
