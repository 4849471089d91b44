//! Conversations: start, open (continue), rename, delete. The session list itself is
//! read by the UI with tauri-plugin-sql (select only).

use hearth_core::ErrorCode;
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
    state.manager.conversation().start_new();
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
    state.manager.conversation().resume(session.clone()).await?;
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
        .conversation()
        .rename(SessionId::from(id.as_str()), title)
        .await?;
    Ok(())
}

/// Deletes the conversation and its messages; deleting the open one starts a new one.
#[tauri::command]
#[specta::specta]
pub async fn delete_session(state: State<'_, AppState>, id: String) -> AppResult<()> {
    let session = SessionId::from(id.as_str());
    let current = state.manager.conversation().session().as_ref() == Some(&session);
    if current && state.generating() {
        return Err(AppError::busy());
    }
    if !state.manager.conversation().delete_session(session).await? {
        return Err(AppError::not_found("session", &id));
    }
    if current {
        broadcast_status(&state).await;
    }
    Ok(())
}

/// Saves the conversation as a file in the exports folder (Downloads): `md` to read,
/// `json` with everything stored. Returns the file's path. An existing file is never
/// overwritten: the name gets " (2)", " (3)"….
#[tauri::command]
#[specta::specta]
pub async fn export_session(state: State<'_, AppState>, id: String, format: String) -> AppResult<String> {
    let format = hearth_store::ExportFormat::parse(&format).ok_or_else(|| {
        AppError::new(
            ErrorCode::InvalidRequest,
            format!("{format:?} is not an export format: use md or json"),
        )
    })?;
    let session = state
        .manager
        .store()
        .retrieve_session(SessionId::from(id.as_str()))
        .await?
        .ok_or_else(|| AppError::not_found("session", &id))?;
    let text = hearth_store::export_session(&session, format);
    let dir = state.paths.exports_dir.clone();
    let extension = match format {
        hearth_store::ExportFormat::Markdown => "md",
        hearth_store::ExportFormat::Json => "json",
    };
    let stem = file_stem(&session.session.title);
    tauri::async_runtime::spawn_blocking(move || -> AppResult<String> {
        let failed = |e: std::io::Error| {
            AppError::new(
                ErrorCode::ExportFailed,
                format!(
                    "Saving to {} failed ({e}): check the free space and permissions",
                    dir.display()
                ),
            )
        };
        std::fs::create_dir_all(&dir).map_err(failed)?;
        let path = (1..)
            .map(|n| match n {
                1 => dir.join(format!("{stem}.{extension}")),
                n => dir.join(format!("{stem} ({n}).{extension}")),
            })
            .find(|p| !p.exists())
            .unwrap_or_else(|| dir.join(format!("{stem}.{extension}")));
        crate::state::write_atomically(&path, text.as_bytes()).map_err(failed)?;
        Ok(path.display().to_string())
    })
    .await
    .map_err(AppError::internal)?
}

/// A file name from a title: what a file system accepts, at most 60 characters.
fn file_stem(title: &str) -> String {
    let cleaned: String = title
        .trim()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || " -_.,'()".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(60)
        .collect();
    let cleaned = cleaned.trim_matches(['.', ' ', '-']).to_owned();
    if cleaned.is_empty() {
        "Hearth conversation".into()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn titles_make_safe_file_names() {
        assert_eq!(super::file_stem("Colours / and: more?"), "Colours - and- more");
        assert_eq!(super::file_stem("  ...  "), "Hearth conversation");
        assert_eq!(super::file_stem("../../etc/passwd"), "etc-passwd");
        assert_eq!(super::file_stem(&"a".repeat(100)).len(), 60);
    }
}
