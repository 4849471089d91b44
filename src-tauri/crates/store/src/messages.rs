//! Chat messages: append (one transaction per message, never per token), mark
//! incomplete, list, tail, and full-text search with a query built so that user
//! text can never be an FTS5 syntax error.

use hearth_core::Role;
use rusqlite::types::{FromSqlError, Type};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Result, StoreError};
use crate::perf::{self, PerfRecord};
use crate::sessions::SessionId;
use crate::{json_col, now_ms, Store};

/// A message id: the `chat_history` INTEGER PRIMARY KEY (AUTOINCREMENT, so ids
/// grow in commit order and are never reused). Integer because FTS5's
/// external-content index is keyed by rowid, and only an INTEGER PRIMARY KEY
/// rowid is stable across VACUUM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(pub i64);

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What Hearth records about a message besides its text (the `metadata` JSON
/// column). Unknown keys are kept in `extra` and written back unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageMetadata {
    /// Inference backend that produced the reply ("llama.cpp", ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Generation metrics as the engine reported them. Kept as JSON, not a typed
    /// struct, so that history written by another version always decodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Value>,
    /// The reply was cut short (cancelled, crashed, failed part-way).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A message to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    pub role: Role,
    pub content: String,
    #[serde(default)]
    pub metadata: MessageMetadata,
    /// Unix milliseconds; `None` means now.
    #[serde(default)]
    pub timestamp: Option<i64>,
}

impl NewMessage {
    pub fn new(role: Role, content: impl Into<String>) -> NewMessage {
        NewMessage {
            role,
            content: content.into(),
            metadata: MessageMetadata::default(),
            timestamp: None,
        }
    }

    pub fn with_metadata(mut self, metadata: MessageMetadata) -> NewMessage {
        self.metadata = metadata;
        self
    }
}

impl From<&Message> for NewMessage {
    fn from(m: &Message) -> NewMessage {
        NewMessage {
            role: m.role,
            content: m.content.clone(),
            metadata: m.metadata.clone(),
            timestamp: Some(m.timestamp),
        }
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub session_id: SessionId,
    pub role: Role,
    pub content: String,
    /// Unix milliseconds.
    pub timestamp: i64,
    pub metadata: MessageMetadata,
}

/// One full-text search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub message_id: MessageId,
    pub session_id: SessionId,
    pub role: Role,
    pub timestamp: i64,
    /// Up to ~16 tokens around the match, each matched term wrapped in
    /// [`SNIPPET_START`] / [`SNIPPET_END`]. Control characters, not HTML or
    /// brackets, because message text can contain anything printable: the UI
    /// splits on them and renders the pieces as text.
    pub snippet: String,
    /// BM25 score; lower (more negative) is a better match. Hits are sorted by it.
    pub rank: f64,
}

/// Marks the start of a matched term in [`SearchHit::snippet`] (U+0002).
pub const SNIPPET_START: &str = "\u{2}";
/// Marks the end of a matched term in [`SearchHit::snippet`] (U+0003).
pub const SNIPPET_END: &str = "\u{3}";

/// A message with its metadata already encoded, so that JSON encoding happens
/// before the write lock is taken.
pub(crate) struct PreparedMessage<'a> {
    message: &'a NewMessage,
    metadata: String,
}

impl<'a> PreparedMessage<'a> {
    pub(crate) fn new(message: &'a NewMessage) -> Result<PreparedMessage<'a>> {
        Ok(PreparedMessage {
            message,
            metadata: serde_json::to_string(&message.metadata)?,
        })
    }
}

pub(crate) fn role_from_str(s: &str) -> Option<Role> {
    match s {
        "system" => Some(Role::System),
        "user" => Some(Role::User),
        "assistant" => Some(Role::Assistant),
        _ => None,
    }
}

fn role_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Role> {
    let text: String = row.get(idx)?;
    role_from_str(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            Type::Text,
            Box::new(FromSqlError::Other(format!("unknown role {text:?}").into())),
        )
    })
}

const MESSAGE_COLUMNS: &str = "id, session_id, role, content, timestamp, metadata";

fn message_from_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: MessageId(row.get(0)?),
        session_id: SessionId(row.get(1)?),
        role: role_col(row, 2)?,
        content: row.get(3)?,
        timestamp: row.get(4)?,
        metadata: json_col(row, 5)?,
    })
}

/// Inserts one message (the triggers index it and count it). The caller holds
/// the transaction.
pub(crate) fn insert_message(
    tx: &Transaction<'_>,
    session: &SessionId,
    message: &PreparedMessage<'_>,
    now: i64,
) -> Result<MessageId> {
    tx.prepare_cached(
        "INSERT INTO chat_history (session_id, role, content, timestamp, metadata)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        session.as_str(),
        message.message.role.as_str(),
        message.message.content,
        message.message.timestamp.unwrap_or(now),
        message.metadata
    ])?;
    Ok(MessageId(tx.last_insert_rowid()))
}

/// Messages of a session with id > `after`, oldest first.
pub(crate) fn list_messages(
    conn: &Connection,
    session: &SessionId,
    after: Option<MessageId>,
    limit: i64,
) -> Result<Vec<Message>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM chat_history
         WHERE session_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(
        params![session.as_str(), after.map_or(i64::MIN, |m| m.0), limit],
        message_from_row,
    )?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Appends in the caller's transaction: bumps the session's `updated_at`
/// (failing with NotFound when the session does not exist) and inserts.
fn append_in(tx: &Transaction<'_>, session: &SessionId, message: &PreparedMessage<'_>) -> Result<MessageId> {
    let now = now_ms();
    let timestamp = message.message.timestamp.unwrap_or(now);
    let changed = tx
        .prepare_cached("UPDATE sessions SET updated_at = max(updated_at, ?2) WHERE id = ?1")?
        .execute(params![session.as_str(), timestamp])?;
    if changed == 0 {
        return Err(StoreError::NotFound {
            what: "session",
            id: session.0.clone(),
        });
    }
    insert_message(tx, session, message, now)
}

/// A query of hundreds of words is a paste, not a search; it costs FTS5 time
/// without narrowing anything.
const MAX_TERMS: usize = 32;

/// FTS5's `snippet()` scores every match against every other match, which is
/// quadratic in the matches of one message: on a pasted megabyte it runs for
/// minutes. Longer messages get a snippet cut here instead (see
/// [`fallback_snippet`]).
const FTS_SNIPPET_MAX_CHARS: i64 = 16 * 1024;

/// The distinct words of a search: split on whitespace and control characters
/// (NUL included), repeats dropped (case-insensitively: ANDing a word twice
/// finds nothing more, but FTS5's per-match work grows with every phrase), at
/// most [`MAX_TERMS`].
fn search_terms(text: &str) -> Vec<&str> {
    let mut seen = std::collections::HashSet::new();
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty() && seen.insert(w.to_lowercase()))
        .take(MAX_TERMS)
        .collect()
}

/// Turns user text into an FTS5 query that cannot be a syntax error: every
/// whitespace-separated word becomes a double-quoted string (inner quotes
/// doubled), so `AND`, `NEAR`, `*`, `:`, `(`, `-` and quotes are plain text. The
/// words are ANDed. Control characters (NUL included) separate words. Returns
/// `None` when there is no word at all.
pub fn fts5_query(text: &str) -> Option<String> {
    let terms: Vec<String> = search_terms(text)
        .into_iter()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

/// A snippet for a message too long for FTS5's `snippet()`: about 200 bytes
/// around the first ASCII-case-insensitive occurrence of a search word (or the
/// start of the message), with that occurrence marked. Linear in the message.
fn fallback_snippet(content: &str, terms: &[&str]) -> String {
    const BEFORE: usize = 60;
    const AFTER: usize = 160;
    let haystack = content.to_ascii_lowercase(); // same byte offsets as `content`
    let found = terms
        .iter()
        .filter_map(|t| {
            let t = t.to_ascii_lowercase();
            haystack.find(&t).map(|at| (at, at + t.len()))
        })
        .min();
    let (start, end) = found.unwrap_or((0, 0));
    let mut from = start.saturating_sub(BEFORE);
    while !content.is_char_boundary(from) {
        from -= 1;
    }
    let mut to = (end + AFTER).min(content.len());
    while !content.is_char_boundary(to) {
        to += 1;
    }
    let mut out = String::with_capacity(to - from + 16);
    if from > 0 {
        out.push('…');
    }
    out.push_str(&content[from..start]);
    if end > start {
        out.push_str(SNIPPET_START);
        out.push_str(&content[start..end]);
        out.push_str(SNIPPET_END);
    }
    out.push_str(&content[end..to]);
    if to < content.len() {
        out.push('…');
    }
    out
}

impl Store {
    /// Appends one message in its own transaction and returns its id. Call it
    /// once per message (when the reply is complete, or with
    /// `metadata.incomplete` when it was cut short), never per token.
    pub fn append_message(&self, session: &SessionId, message: &NewMessage) -> Result<MessageId> {
        let prepared = PreparedMessage::new(message)?;
        self.write(|tx| append_in(tx, session, &prepared))
    }

    /// Appends a message and the performance record that measured it, in one
    /// transaction: both are stored or neither. The record's `message_id` is set
    /// to the new message. Returns (message id, performance log id).
    pub fn append_message_with_perf(
        &self,
        session: &SessionId,
        message: &NewMessage,
        record: &PerfRecord,
    ) -> Result<(MessageId, i64)> {
        let prepared = PreparedMessage::new(message)?;
        let prepared_perf = perf::PreparedRecord::new(record)?;
        self.write(|tx| {
            let id = append_in(tx, session, &prepared)?;
            let perf_id = perf::insert_record(tx, &prepared_perf, Some(id))?;
            Ok((id, perf_id))
        })
    }

    /// Sets `metadata.incomplete = true` on a message (a reply interrupted after
    /// it was stored). [`StoreError::NotFound`] when there is no such message.
    pub fn mark_incomplete(&self, id: MessageId) -> Result<()> {
        self.write(|tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE chat_history SET metadata = json_set(metadata, '$.incomplete', json('true'))
                     WHERE id = ?1",
                )?
                .execute([id.0])?;
            if changed == 0 {
                return Err(StoreError::NotFound {
                    what: "message",
                    id: id.to_string(),
                });
            }
            Ok(())
        })
    }

    /// Deletes `first` and every later message of `session` (regenerate a reply, edit
    /// a message and resend); returns how many went. Their search entries go with them
    /// (trigger) and their performance records stay, unlinked (`ON DELETE SET NULL`).
    /// [`StoreError::NotFound`] when `first` is not a message of `session`.
    pub fn delete_messages_from(&self, session: &SessionId, first: MessageId) -> Result<usize> {
        self.write(|tx| {
            let owned = tx
                .prepare_cached("SELECT 1 FROM chat_history WHERE id = ?1 AND session_id = ?2")?
                .exists(params![first.0, session.as_str()])?;
            if !owned {
                return Err(StoreError::NotFound {
                    what: "message",
                    id: first.to_string(),
                });
            }
            Ok(tx
                .prepare_cached("DELETE FROM chat_history WHERE session_id = ?1 AND id >= ?2")?
                .execute(params![session.as_str(), first.0])?)
        })
    }

    /// One message.
    pub fn get_message(&self, id: MessageId) -> Result<Option<Message>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM chat_history WHERE id = ?1"))?;
            Ok(stmt.query_row([id.0], message_from_row).optional()?)
        })
    }

    /// All messages of a session, oldest first.
    pub fn list_messages(&self, session: &SessionId) -> Result<Vec<Message>> {
        self.read(|conn| list_messages(conn, session, None, i64::MAX))
    }

    /// Messages of a session after `after` (all when `None`), oldest first, at
    /// most `limit`. Ids grow in commit order, so repeatedly asking for the
    /// messages after the last one seen yields every message exactly once.
    pub fn messages_after(&self, session: &SessionId, after: Option<MessageId>, limit: usize) -> Result<Vec<Message>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| list_messages(conn, session, after, limit))
    }

    /// The last `limit` messages of a session, oldest first (what a context
    /// window or a freshly opened chat view needs).
    pub fn recent_messages(&self, session: &SessionId, limit: usize) -> Result<Vec<Message>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM chat_history
                 WHERE session_id = ?1 ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![session.as_str(), limit], message_from_row)?;
            let mut messages = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            messages.reverse();
            Ok(messages)
        })
    }

    /// Full-text search over message content, best match first; within one
    /// session when `session` is given. Any user text is accepted (see
    /// [`fts5_query`]); text without a word finds nothing.
    pub fn search_messages(&self, text: &str, session: Option<&SessionId>, limit: usize) -> Result<Vec<SearchHit>> {
        let Some(query) = fts5_query(text) else {
            return Ok(Vec::new());
        };
        let terms = search_terms(text);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            // `ORDER BY rank` is sorted inside FTS5, so the per-row columns
            // (snippet, content) are computed only for the rows returned.
            let mut stmt = conn.prepare_cached(
                "SELECT h.id, h.session_id, h.role, h.timestamp,
                        CASE WHEN length(h.content) <= ?6
                             THEN snippet(chat_fts, 0, ?3, ?4, '…', 16) END,
                        CASE WHEN length(h.content) > ?6 THEN h.content END,
                        rank
                 FROM chat_fts JOIN chat_history h ON h.id = chat_fts.rowid
                 WHERE chat_fts MATCH ?1 AND (?2 IS NULL OR h.session_id = ?2)
                 ORDER BY rank LIMIT ?5",
            )?;
            let rows = stmt.query_map(
                params![
                    query,
                    session.map(SessionId::as_str),
                    SNIPPET_START,
                    SNIPPET_END,
                    limit,
                    FTS_SNIPPET_MAX_CHARS
                ],
                |row| {
                    let snippet = match row.get::<_, Option<String>>(4)? {
                        Some(snippet) => snippet,
                        None => fallback_snippet(&row.get::<_, String>(5)?, &terms),
                    };
                    Ok(SearchHit {
                        message_id: MessageId(row.get(0)?),
                        session_id: SessionId(row.get(1)?),
                        role: role_col(row, 2)?,
                        timestamp: row.get(3)?,
                        snippet,
                        rank: row.get(6)?,
                    })
                },
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}
