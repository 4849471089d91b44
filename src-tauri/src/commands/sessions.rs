//! Conversations: start, open (continue), rename, delete. The session list itself is
//! read by the UI with tauri-plugin-sql (select only).

use hearth_store::{Message, SessionId};
use serde::Serialize;
use tauri::State;

use crate::commands::broadcast_status;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub id: i64,
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
    pub backend: Option<String>,
    pub model: Option<String>,
    pub decode_tps: Option<f64>,
    pub ttft_ms: Option<f64>,
    /// The reply was cut short (stopped, or the backend failed part-way).
    pub incomplete: bool,
}

impl From<Message> for MessageView {
    fn from(m: Message) -> Self {
        let metric = |key: &str| {
            m.metadata
                .metrics
                .as_ref()
                .and_then(|v| v.get(key))
                .and_then(serde_json::Value::as_f64)
        };
        Self {
            id: m.id.0,
            role: m.role.as_str().to_owned(),
            decode_tps: metric("decode_tps"),
            ttft_ms: metric("ttft_ms"),
            content: m.content,
            backend: m.metadata.backend,
            model: m.metadata.model,
            incomplete: m.metadata.incomplete,
        }
    }
}

/// The next message starts a new conversation.
#[tauri::command]
#[specta::specta]
pub async fn new_session(state: State<'_, AppState>) -> AppResult<()> {
    if state.generating() {
        return Err(AppError::busy());
    }
    state.manager.new_session();
    broadcast_status(&state).await;
    Ok(())
}

/// Continues the conversation `id`; returns its messages, oldest first.
#[tauri::command]
#[specta::specta]
pub async fn open_session(state: State<'_, AppState>, id: String) -> AppResult<Vec<MessageView>> {
    if state.generating() {
        return Err(AppError::busy());
    }
    let session = SessionId::from(id.as_str());
    if state.manager.store().get_session(session.clone()).await?.is_none() {
        return Err(AppError::not_found("session", &id));
    }
    state.manager.resume_session(session.clone()).await?;
    let messages = state.manager.store().list_messages(session).await?;
    broadcast_status(&state).await;
    Ok(messages.into_iter().map(MessageView::from).collect())
}

#[tauri::command]
#[specta::specta]
pub async fn rename_session(state: State<'_, AppState>, id: String, title: String) -> AppResult<()> {
    let title = title.trim();
    if title.is_empty() {
        return Err(AppError::invalid_field("title", "must not be empty"));
    }
    state
        .manager
        .store()
        .rename_session(SessionId::from(id.as_str()), title.to_owned())
        .await?;
    Ok(())
}

/// Deletes the conversation and its messages; deleting the open one starts a new one.
#[tauri::command]
#[specta::specta]
pub async fn delete_session(state: State<'_, AppState>, id: String) -> AppResult<()> {
    let session = SessionId::from(id.as_str());
    let current = state.manager.session().as_ref() == Some(&session);
    if current && state.generating() {
        return Err(AppError::busy());
    }
    if !state.manager.store().delete_session(session).await? {
        return Err(AppError::not_found("session", &id));
    }
    if current {
        state.manager.new_session();
        broadcast_status(&state).await;
    }
    Ok(())
}
