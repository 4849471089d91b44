//! The conversation replies continue: its session in the store, the messages the next
//! reply will see, and every change to them (append, rewind for a regenerate or an
//! edit, a system prompt, the title). It is the only writer of conversation data: the
//! manager appends turns through it, the desktop shell and the CLI rewind and resume
//! through it, and nothing reaches under it to the store.
//!
//! The messages are the store's: loaded from it on resume and after a rewind, and
//! appended to both at once. The one time they differ is when the database fails (a
//! full disk, a read-only or corrupt file): history then goes off for the rest of the
//! run and the chat goes on from the messages here, which is why they are kept at all.

use std::sync::Mutex;

use hearth_core::{ChatMessage, Role};
use hearth_store::{AsyncStore, MessageId, MessageMetadata, NewMessage, NewSession, PerfRecord, SessionId, StoreError};

use crate::types::ManagerError;

/// Titles are cut to this many characters.
const TITLE_CHARS: usize = 60;

#[derive(Default)]
struct Current {
    session: Option<SessionId>,
    messages: Vec<ChatMessage>,
}

/// The user's message of a turn, as appended.
pub(crate) struct UserTurn {
    pub session: Option<SessionId>,
    pub message: Option<MessageId>,
    /// The conversation the reply is generated from (this message last).
    pub history: Vec<ChatMessage>,
}

pub struct Conversation {
    store: AsyncStore,
    current: Mutex<Current>,
    /// Set when a database write failed: history is off for the rest of the run.
    history_error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not take the chat down with it: the data is still consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Conversation {
    pub fn new(store: AsyncStore) -> Self {
        Self {
            store,
            current: Mutex::new(Current::default()),
            history_error: Mutex::new(None),
        }
    }

    /// The saved conversation; `None` until its first message (or with history off).
    pub fn session(&self) -> Option<SessionId> {
        lock(&self.current).session.clone()
    }

    /// The messages the next reply will see.
    pub fn messages(&self) -> Vec<ChatMessage> {
        lock(&self.current).messages.clone()
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.current).messages.is_empty()
    }

    /// Why chat history is off for this run, when it is.
    pub fn history_error(&self) -> Option<String> {
        lock(&self.history_error).clone()
    }

    /// The next message starts a new conversation.
    pub fn start_new(&self) {
        *lock(&self.current) = Current::default();
    }

    /// Continues a saved conversation; returns how many messages it has.
    pub async fn resume(&self, id: SessionId) -> Result<usize, ManagerError> {
        let messages = self.load(&id).await?;
        let n = messages.len();
        *lock(&self.current) = Current {
            session: Some(id),
            messages,
        };
        Ok(n)
    }

    /// Starts a new conversation that opens with `text` as its system prompt, titled
    /// `title` (the user's first message, when known) or else after the prompt.
    pub async fn open_with_system_prompt(&self, text: &str, title: Option<&str>) {
        self.start_new();
        lock(&self.current).messages.push(ChatMessage::system(text));
        if let Some(session) = self.session_for(title.unwrap_or(text)).await {
            self.save(self.store.append_message(session, NewMessage::new(Role::System, text)))
                .await;
        }
    }

    /// The conversation's session, created (titled after `first_text`) when there is
    /// none yet; `None` when history is off.
    pub async fn session_for(&self, first_text: &str) -> Option<SessionId> {
        if let Some(id) = self.session() {
            return Some(id);
        }
        let title: String = first_text.chars().take(TITLE_CHARS).collect();
        let new = NewSession {
            title: title.trim().to_owned(),
            user_id: None,
            data: None,
        };
        let session = self.save(self.store.create_session(new)).await?;
        lock(&self.current).session = Some(session.id.clone());
        Some(session.id)
    }

    /// Appends the user's message of a new turn.
    pub(crate) async fn append_user(&self, text: &str) -> UserTurn {
        let session = self.session_for(text).await;
        let message = match &session {
            Some(session) => {
                self.save(
                    self.store
                        .append_message(session.clone(), NewMessage::new(Role::User, text)),
                )
                .await
            }
            None => None,
        };
        let history = {
            let mut current = lock(&self.current);
            current.messages.push(ChatMessage::user(text));
            current.messages.clone()
        };
        UserTurn {
            session,
            message,
            history,
        }
    }

    /// Appends a reply with its figures (a performance record beside it, in one write).
    pub(crate) async fn append_reply(
        &self,
        session: Option<SessionId>,
        text: &str,
        metadata: MessageMetadata,
        perf: PerfRecord,
    ) -> Option<MessageId> {
        lock(&self.current).messages.push(ChatMessage::assistant(text));
        let session = session.filter(|_| self.history_on())?;
        let message = NewMessage::new(Role::Assistant, text).with_metadata(metadata);
        self.save(self.store.append_message_with_perf(session, message, perf))
            .await
            .map(|(id, _perf)| id)
    }

    /// Removes the last user message and everything after it, for a new reply to it:
    /// returns its text, to send again.
    pub async fn rewind_for_regenerate(&self) -> Result<String, ManagerError> {
        let session = self.session().ok_or(ManagerError::NothingToRegenerate)?;
        let messages = self.store.list_messages(session.clone()).await?;
        let last_user = messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .ok_or(ManagerError::NothingToRegenerate)?;
        self.rewind(session, last_user.id).await?;
        Ok(last_user.content.clone())
    }

    /// Removes the user message `id` and everything after it, for an edited version.
    pub async fn rewind_for_edit(&self, id: MessageId) -> Result<(), ManagerError> {
        let session = self.session().ok_or(ManagerError::MessageNotFound(id))?;
        let message = self
            .store
            .get_message(id)
            .await?
            .filter(|m| m.session_id == session)
            .ok_or(ManagerError::MessageNotFound(id))?;
        if message.role != Role::User {
            return Err(ManagerError::NotAUserMessage(id));
        }
        self.rewind(session, id).await
    }

    /// Renames a saved conversation (any, not only the current one).
    pub async fn rename(&self, id: SessionId, title: &str) -> Result<(), ManagerError> {
        let title: String = title.trim().chars().take(TITLE_CHARS * 4).collect();
        self.store.rename_session(id, title).await?;
        Ok(())
    }

    /// Deletes a saved conversation; the current one starts afresh if it was that one.
    /// Returns whether it existed.
    pub async fn delete_session(&self, id: SessionId) -> Result<bool, ManagerError> {
        let current = self.session().as_ref() == Some(&id);
        let existed = self.store.delete_session(id).await?;
        if current {
            self.start_new();
        }
        Ok(existed)
    }

    async fn rewind(&self, session: SessionId, first: MessageId) -> Result<(), ManagerError> {
        self.store.delete_messages_from(session.clone(), first).await?;
        self.resume(session).await?;
        Ok(())
    }

    async fn load(&self, id: &SessionId) -> Result<Vec<ChatMessage>, ManagerError> {
        Ok(self
            .store
            .list_messages(id.clone())
            .await?
            .into_iter()
            .map(|m| ChatMessage::new(m.role, m.content))
            .collect())
    }

    fn history_on(&self) -> bool {
        lock(&self.history_error).is_none()
    }

    /// Runs a database write unless history is off; a failure turns history off.
    async fn save<T, F>(&self, write: F) -> Option<T>
    where
        F: std::future::Future<Output = Result<T, StoreError>>,
    {
        if !self.history_on() {
            return None;
        }
        match write.await {
            Ok(value) => Some(value),
            Err(e) => {
                let mut error = lock(&self.history_error);
                if error.is_none() {
                    tracing::warn!(error = %e, "chat history disabled for this run");
                    *error = Some(e.to_string());
                }
                None
            }
        }
    }
}
