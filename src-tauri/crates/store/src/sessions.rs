//! Chat sessions: create, rename, delete, list, and the whole-session
//! `store_session` / `retrieve_session` pair.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Result, StoreError};
use crate::messages::{self, Message, NewMessage};
use crate::{json_col, now_ms, Store};

/// The user id of the single local user (the schema has room for more).
pub const LOCAL_USER: &str = "local";

/// A session id: a UUID v7 string for sessions Hearth creates (time-ordered, so
/// new rows land at the right edge of the primary-key index; globally unique,
/// so sessions can be exported and imported without renumbering). Any string is
/// accepted from [`Store::store_session`] for imported sessions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub String);

impl SessionId {
    /// A new UUID v7 id.
    #[allow(clippy::new_without_default)] // a random value is not a "default"
    pub fn new() -> SessionId {
        SessionId(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for SessionId {
    fn from(s: String) -> Self {
        SessionId(s)
    }
}

impl From<&str> for SessionId {
    fn from(s: &str) -> Self {
        SessionId(s.to_owned())
    }
}

/// A chat session (conversation). Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    pub user_id: String,
    pub title: String,
    pub created_at: i64,
    /// Last change to the session or its messages.
    pub updated_at: i64,
    /// Free-form per-session settings the app keeps (system prompt, model,
    /// sampling...). Always a JSON value; `{}` when unset.
    pub data: Value,
    /// Messages in the session; maintained by the database, ignored on input.
    #[serde(default)]
    pub message_count: i64,
}

/// What [`Store::create_session`] needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewSession {
    pub title: String,
    /// Defaults to [`LOCAL_USER`].
    #[serde(default)]
    pub user_id: Option<String>,
    /// Defaults to `{}`.
    #[serde(default)]
    pub data: Option<Value>,
}

/// A whole conversation: what [`Store::retrieve_session`] returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionWithMessages {
    pub session: Session,
    /// In order (oldest first).
    pub messages: Vec<Message>,
}

const SESSION_COLUMNS: &str = "id, user_id, title, created_at, updated_at, data, message_count";

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: SessionId(row.get(0)?),
        user_id: row.get(1)?,
        title: row.get(2)?,
        created_at: row.get(3)?,
        updated_at: row.get(4)?,
        data: json_col(row, 5)?,
        message_count: row.get(6)?,
    })
}

pub(crate) fn get_session(conn: &Connection, id: &SessionId) -> Result<Option<Session>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"))?;
    Ok(stmt.query_row([id.as_str()], session_from_row).optional()?)
}

fn not_found(id: &SessionId) -> StoreError {
    StoreError::NotFound {
        what: "session",
        id: id.0.clone(),
    }
}

fn validate_data(data: &Value) -> Result<()> {
    if data.is_object() {
        Ok(())
    } else {
        Err(StoreError::InvalidInput("session data must be a JSON object".into()))
    }
}

impl Store {
    /// Creates an empty session with a fresh UUID v7 id.
    pub fn create_session(&self, new: &NewSession) -> Result<Session> {
        let data = new.data.clone().unwrap_or_else(|| Value::Object(Default::default()));
        validate_data(&data)?;
        let session = Session {
            id: SessionId::new(),
            user_id: new.user_id.clone().unwrap_or_else(|| LOCAL_USER.into()),
            title: new.title.clone(),
            created_at: now_ms(),
            updated_at: now_ms(),
            data,
            message_count: 0,
        };
        let data_text = serde_json::to_string(&session.data)?;
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO sessions (id, user_id, title, created_at, updated_at, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                session.id.as_str(),
                session.user_id,
                session.title,
                session.created_at,
                session.updated_at,
                data_text
            ])?;
            Ok(())
        })?;
        Ok(session)
    }

    /// Renames a session; [`StoreError::NotFound`] when it does not exist.
    pub fn rename_session(&self, id: &SessionId, title: &str) -> Result<Session> {
        self.write(|tx| {
            let changed = tx
                .prepare_cached("UPDATE sessions SET title = ?2, updated_at = max(updated_at, ?3) WHERE id = ?1")?
                .execute(params![id.as_str(), title, now_ms()])?;
            if changed == 0 {
                return Err(not_found(id));
            }
            get_session(tx, id)?.ok_or_else(|| not_found(id))
        })
    }

    /// Replaces a session's free-form `data` (must be a JSON object).
    pub fn update_session_data(&self, id: &SessionId, data: &Value) -> Result<Session> {
        validate_data(data)?;
        let text = serde_json::to_string(data)?;
        self.write(|tx| {
            let changed = tx
                .prepare_cached("UPDATE sessions SET data = ?2, updated_at = max(updated_at, ?3) WHERE id = ?1")?
                .execute(params![id.as_str(), text, now_ms()])?;
            if changed == 0 {
                return Err(not_found(id));
            }
            get_session(tx, id)?.ok_or_else(|| not_found(id))
        })
    }

    /// Deletes a session and (by `ON DELETE CASCADE`) its messages and their
    /// search index entries. Returns whether it existed.
    pub fn delete_session(&self, id: &SessionId) -> Result<bool> {
        self.write(|tx| {
            let n = tx
                .prepare_cached("DELETE FROM sessions WHERE id = ?1")?
                .execute([id.as_str()])?;
            Ok(n > 0)
        })
    }

    /// One session, without its messages.
    pub fn get_session(&self, id: &SessionId) -> Result<Option<Session>> {
        self.read(|conn| get_session(conn, id))
    }

    /// A user's sessions, most recently updated first.
    pub fn list_sessions(&self, user_id: &str, limit: usize) -> Result<Vec<Session>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = ?1
                 ORDER BY updated_at DESC, id DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![user_id, limit], session_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Stores a whole session in one transaction: the session row is inserted or
    /// replaced (keeping the given id and times), and its messages become exactly
    /// `messages`, in order (earlier messages of that session are deleted). A
    /// message without a timestamp gets the current time. Returns what was
    /// stored, with the new message ids.
    pub fn store_session(&self, session: &Session, messages: &[NewMessage]) -> Result<SessionWithMessages> {
        if session.id.0.is_empty() {
            return Err(StoreError::InvalidInput("session id is empty".into()));
        }
        validate_data(&session.data)?;
        let data_text = serde_json::to_string(&session.data)?;
        let prepared = messages
            .iter()
            .map(messages::PreparedMessage::new)
            .collect::<Result<Vec<_>>>()?;
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO sessions (id, user_id, title, created_at, updated_at, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id,
                   title = excluded.title, created_at = excluded.created_at,
                   updated_at = excluded.updated_at, data = excluded.data",
            )?
            .execute(params![
                session.id.as_str(),
                session.user_id,
                session.title,
                session.created_at,
                session.updated_at,
                data_text
            ])?;
            tx.prepare_cached("DELETE FROM chat_history WHERE session_id = ?1")?
                .execute([session.id.as_str()])?;
            let now = now_ms();
            for message in &prepared {
                messages::insert_message(tx, &session.id, message, now)?;
            }
            let stored = get_session(tx, &session.id)?.ok_or_else(|| not_found(&session.id))?;
            let messages = messages::list_messages(tx, &session.id, None, i64::MAX)?;
            Ok(SessionWithMessages {
                session: stored,
                messages,
            })
        })
    }

    /// A session with all its messages, read from one consistent snapshot.
    pub fn retrieve_session(&self, id: &SessionId) -> Result<Option<SessionWithMessages>> {
        self.read(|conn| {
            let Some(session) = get_session(conn, id)? else {
                return Ok(None);
            };
            let messages = messages::list_messages(conn, id, None, i64::MAX)?;
            Ok(Some(SessionWithMessages { session, messages }))
        })
    }
}
