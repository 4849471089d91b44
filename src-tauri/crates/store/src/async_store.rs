//! [`AsyncStore`]: the store for async code. Every call runs the blocking
//! [`Store`] method on tokio's blocking pool (`spawn_blocking`), so SQLite I/O
//! (and waiting for the writer) never stalls a runtime worker thread.
//!
//! Arguments are taken by value because they move to the blocking thread.
//! Dropping the returned future does not cancel the call: a write that started
//! still commits (or rolls back) as a whole.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::backup::{BackupReport, IntegrityReport, StoreStats};
use crate::db::{Store, StoreOptions};
use crate::error::{Result, StoreError};
use crate::messages::{Message, MessageId, NewMessage, SearchHit};
use crate::perf::{PerfRecord, PerfSummary, TimeWindow};
use crate::sessions::{NewSession, Session, SessionId, SessionWithMessages};

/// Async façade over [`Store`]; cheap to clone. Must be used inside a tokio
/// runtime (any flavour).
#[derive(Clone, Debug)]
pub struct AsyncStore {
    store: Store,
}

impl From<Store> for AsyncStore {
    fn from(store: Store) -> Self {
        AsyncStore { store }
    }
}

impl AsyncStore {
    /// [`Store::open_with`] on the blocking pool (opening may migrate).
    pub async fn open(path: impl Into<PathBuf>, options: StoreOptions) -> Result<AsyncStore> {
        let path = path.into();
        let store = tokio::task::spawn_blocking(move || Store::open_with(path, options))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        Ok(AsyncStore { store })
    }

    /// The synchronous store underneath (for code already on a blocking thread).
    pub fn blocking(&self) -> &Store {
        &self.store
    }

    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// Runs any blocking store operation on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    pub async fn create_session(&self, new: NewSession) -> Result<Session> {
        self.call(move |s| s.create_session(&new)).await
    }

    pub async fn rename_session(&self, id: SessionId, title: String) -> Result<Session> {
        self.call(move |s| s.rename_session(&id, &title)).await
    }

    pub async fn update_session_data(&self, id: SessionId, data: Value) -> Result<Session> {
        self.call(move |s| s.update_session_data(&id, &data)).await
    }

    pub async fn delete_session(&self, id: SessionId) -> Result<bool> {
        self.call(move |s| s.delete_session(&id)).await
    }

    pub async fn get_session(&self, id: SessionId) -> Result<Option<Session>> {
        self.call(move |s| s.get_session(&id)).await
    }

    pub async fn list_sessions(&self, user_id: String, limit: usize) -> Result<Vec<Session>> {
        self.call(move |s| s.list_sessions(&user_id, limit)).await
    }

    pub async fn store_session(&self, session: Session, messages: Vec<NewMessage>) -> Result<SessionWithMessages> {
        self.call(move |s| s.store_session(&session, &messages)).await
    }

    pub async fn retrieve_session(&self, id: SessionId) -> Result<Option<SessionWithMessages>> {
        self.call(move |s| s.retrieve_session(&id)).await
    }

    pub async fn append_message(&self, session: SessionId, message: NewMessage) -> Result<MessageId> {
        self.call(move |s| s.append_message(&session, &message)).await
    }

    pub async fn append_message_with_perf(
        &self,
        session: SessionId,
        message: NewMessage,
        record: PerfRecord,
    ) -> Result<(MessageId, i64)> {
        self.call(move |s| s.append_message_with_perf(&session, &message, &record))
            .await
    }

    pub async fn mark_incomplete(&self, id: MessageId) -> Result<()> {
        self.call(move |s| s.mark_incomplete(id)).await
    }

    pub async fn delete_messages_from(&self, session: SessionId, first: MessageId) -> Result<usize> {
        self.call(move |s| s.delete_messages_from(&session, first)).await
    }

    pub async fn get_message(&self, id: MessageId) -> Result<Option<Message>> {
        self.call(move |s| s.get_message(id)).await
    }

    pub async fn list_messages(&self, session: SessionId) -> Result<Vec<Message>> {
        self.call(move |s| s.list_messages(&session)).await
    }

    pub async fn messages_after(
        &self,
        session: SessionId,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.call(move |s| s.messages_after(&session, after, limit)).await
    }

    pub async fn recent_messages(&self, session: SessionId, limit: usize) -> Result<Vec<Message>> {
        self.call(move |s| s.recent_messages(&session, limit)).await
    }

    pub async fn search_messages(
        &self,
        text: String,
        session: Option<SessionId>,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        self.call(move |s| s.search_messages(&text, session.as_ref(), limit))
            .await
    }

    pub async fn log_perf(&self, record: PerfRecord) -> Result<i64> {
        self.call(move |s| s.log_perf(&record)).await
    }

    pub async fn recent_perf(&self, operation: Option<String>, limit: usize) -> Result<Vec<PerfRecord>> {
        self.call(move |s| s.recent_perf(operation.as_deref(), limit)).await
    }

    pub async fn perf_summary(&self, window: TimeWindow, operation: Option<String>) -> Result<Vec<PerfSummary>> {
        self.call(move |s| s.perf_summary(window, operation.as_deref())).await
    }

    pub async fn backup_to(&self, dest: PathBuf) -> Result<BackupReport> {
        self.call(move |s| s.backup_to(&dest)).await
    }

    pub async fn integrity_check(&self) -> Result<IntegrityReport> {
        self.call(|s| s.integrity_check()).await
    }

    pub async fn stats(&self) -> Result<StoreStats> {
        self.call(|s| s.stats()).await
    }
}
