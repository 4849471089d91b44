//! Sending, regenerating and editing messages, streamed to the UI through a Tauri
//! `Channel` as [`ChatEvent`]s. Text arrives batched: the deltas of ~25 ms go out as
//! one event, so a fast model does not flood the webview with one message per token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_manager::TurnReport;
use hearth_store::{MessageId, Role};
use serde::Serialize;
use tauri::ipc::Channel;
use tauri::State;

use crate::commands::{broadcast_status, settings::sampling};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// How long deltas collect before they are sent as one event.
pub const DELTA_BATCH: Duration = Duration::from_millis(25);

#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ChatEvent {
    /// The reply is starting on this backend and model.
    Started { backend: String, model: String },
    /// More text of the reply: the deltas of one batch, concatenated, and how many
    /// there were. Backends stream one delta per token (a character split across
    /// tokens arrives whole, with the later token), so the UI counts tokens/s by it.
    Delta { text: String, tokens: u32 },
    /// The reply ended (`finishReason`: `stop`, `length`, `cancelled`).
    #[serde(rename_all = "camelCase")]
    Done {
        decode_tps: f64,
        ttft_ms: f64,
        completion_tokens: u32,
        finish_reason: String,
    },
    /// The reply failed; the text received so far is kept (marked incomplete).
    Error { code: String, message: String },
}

/// One finished turn.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct TurnView {
    /// `null` when chat history is off.
    pub session_id: Option<String>,
    pub backend: String,
    pub model: String,
    pub text: String,
    pub decode_tps: f64,
    pub ttft_ms: f64,
    pub completion_tokens: u32,
    pub finish_reason: String,
    /// Retries before the reply started.
    pub retries: u32,
    /// Backends given up on before this one answered.
    pub fallbacks: u32,
}

impl From<TurnReport> for TurnView {
    fn from(t: TurnReport) -> Self {
        Self {
            session_id: t.session.map(|s| s.as_str().to_owned()),
            backend: t.backend.to_string(),
            model: t.model,
            text: t.text,
            decode_tps: t.metrics.decode_tps,
            ttft_ms: t.metrics.ttft_ms,
            completion_tokens: t.metrics.completion_tokens,
            finish_reason: t.metrics.finish_reason.as_str().to_owned(),
            retries: t.retries,
            fallbacks: t.fallbacks,
        }
    }
}

/// Sends `text` as the user's next message and streams the reply.
#[tauri::command]
#[specta::specta]
pub async fn send_message(
    state: State<'_, AppState>,
    text: String,
    on_event: Channel<ChatEvent>,
) -> AppResult<TurnView> {
    require_text(&text)?;
    generate(&state, &text, &on_event).await
}

/// Replaces the last reply with a new one (to the same user message).
#[tauri::command]
#[specta::specta]
pub async fn regenerate(state: State<'_, AppState>, on_event: Channel<ChatEvent>) -> AppResult<TurnView> {
    let session = state.manager.session().ok_or_else(|| {
        AppError::new(
            "nothing_to_regenerate",
            "There is no reply to regenerate: send a message first",
        )
    })?;
    let messages = state.manager.store().list_messages(session.clone()).await?;
    let last_user = messages.iter().rev().find(|m| m.role == Role::User).ok_or_else(|| {
        AppError::new(
            "nothing_to_regenerate",
            "There is no reply to regenerate: send a message first",
        )
    })?;
    let text = last_user.content.clone();
    rewind(&state, session, last_user.id).await?;
    generate(&state, &text, &on_event).await
}

/// Replaces the user message `message_id` with `text`, drops everything after it, and
/// generates a new reply.
#[tauri::command]
#[specta::specta]
pub async fn edit_and_resend(
    state: State<'_, AppState>,
    message_id: i64,
    text: String,
    on_event: Channel<ChatEvent>,
) -> AppResult<TurnView> {
    require_text(&text)?;
    let session = state
        .manager
        .session()
        .ok_or_else(|| AppError::not_found("message", message_id))?;
    let id = MessageId(message_id);
    let message = state
        .manager
        .store()
        .get_message(id)
        .await?
        .filter(|m| m.session_id == session)
        .ok_or_else(|| AppError::not_found("message", message_id))?;
    if message.role != Role::User {
        return Err(AppError::new(
            "invalid_request",
            "Only your own messages can be edited: use regenerate for a reply",
        ));
    }
    rewind(&state, session, id).await?;
    generate(&state, &text, &on_event).await
}

/// A message must say something before it is sent (or resent after an edit).
fn require_text(text: &str) -> AppResult<()> {
    if text.trim().is_empty() {
        return Err(AppError::new(
            "invalid_request",
            "The message is empty: type something first",
        ));
    }
    Ok(())
}

/// Stops the reply in progress (its text so far is kept, marked incomplete).
#[tauri::command]
#[specta::specta]
pub async fn stop_generation(state: State<'_, AppState>) -> AppResult<()> {
    state.stop.stop();
    Ok(())
}

/// Deletes `first` and everything after it, then reloads the conversation from the store.
async fn rewind(state: &AppState, session: hearth_store::SessionId, first: MessageId) -> AppResult<()> {
    if state.generating() {
        return Err(AppError::busy());
    }
    state
        .manager
        .store()
        .delete_messages_from(session.clone(), first)
        .await?;
    state.manager.resume_session(session).await?;
    Ok(())
}

/// One reply, from claiming the generating slot to the final event.
async fn generate(state: &AppState, text: &str, on_event: &Channel<ChatEvent>) -> AppResult<TurnView> {
    if state.loading() {
        // The backend is being replaced: a reply now would go to a half-loaded model.
        return Err(AppError::new(
            "model_loading",
            "The model is still loading: send again when the status says Ready",
        ));
    }
    let Some(guard) = state.begin_generation() else {
        return Err(AppError::busy());
    };
    broadcast_status(state).await;
    let result = run_turn(state, text, on_event).await;
    if let Ok(turn) = &result {
        state.set_last_decode_tps(turn.decode_tps);
    }
    drop(guard);
    broadcast_status(state).await;
    result
}

async fn run_turn(state: &AppState, text: &str, on_event: &Channel<ChatEvent>) -> AppResult<TurnView> {
    let manager = &state.manager;
    let ui = state.ui_settings();
    // A new conversation opens with the system prompt; it is titled after the user's text.
    let fresh = manager.conversation().is_empty();
    if fresh {
        if let Some(prompt) = &ui.system_prompt {
            manager.set_system_prompt(prompt).await;
            if let Some(session) = manager.session() {
                let title: String = text.chars().take(60).collect();
                if let Err(e) = manager.store().rename_session(session, title.trim().to_owned()).await {
                    tracing::warn!(error = %e, "session title not set");
                }
            }
        }
    }
    let health = manager.health().await;
    let model = health
        .backends
        .iter()
        .find(|b| b.backend == health.active)
        .and_then(|b| b.loaded_model.clone())
        .unwrap_or_default();
    send_event(
        on_event,
        ChatEvent::Started {
            backend: health.active.to_string(),
            model,
        },
    );
    let batcher = Batcher::start(on_event.clone());
    let pending = batcher.pending();
    let result = manager
        .send(text, sampling(state), &state.stop, |delta| {
            lock(&pending).push(delta);
        })
        .await;
    batcher.finish().await;
    match result {
        Ok(turn) => {
            send_event(
                on_event,
                ChatEvent::Done {
                    decode_tps: turn.metrics.decode_tps,
                    ttft_ms: turn.metrics.ttft_ms,
                    completion_tokens: turn.metrics.completion_tokens,
                    finish_reason: turn.metrics.finish_reason.as_str().to_owned(),
                },
            );
            Ok(turn.into())
        }
        Err(e) => {
            let e = AppError::from(e);
            send_event(
                on_event,
                ChatEvent::Error {
                    code: e.code.clone(),
                    message: e.message.clone(),
                },
            );
            Err(e)
        }
    }
}

fn send_event(channel: &Channel<ChatEvent>, event: ChatEvent) {
    // The window may be gone (closed mid-reply): the reply is still saved.
    if let Err(e) = channel.send(event) {
        tracing::debug!(error = %e, "chat event not delivered");
    }
}

fn lock(m: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The deltas collected since the last batch went out.
#[derive(Default)]
struct Pending {
    text: String,
    deltas: u32,
}

impl Pending {
    fn push(&mut self, delta: &str) {
        self.text.push_str(delta);
        self.deltas += 1;
    }
}

/// Collects deltas and sends what has collected every [`DELTA_BATCH`].
struct Batcher {
    pending: Arc<Mutex<Pending>>,
    channel: Channel<ChatEvent>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tauri::async_runtime::JoinHandle<()>,
}

impl Batcher {
    fn start(channel: Channel<ChatEvent>) -> Self {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = {
            let pending = Arc::clone(&pending);
            let channel = channel.clone();
            tauri::async_runtime::spawn(async move {
                let mut tick = tokio::time::interval(DELTA_BATCH);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        _ = tick.tick() => flush(&pending, &channel),
                    }
                }
            })
        };
        Self {
            pending,
            channel,
            stop,
            task,
        }
    }

    fn pending(&self) -> Arc<Mutex<Pending>> {
        Arc::clone(&self.pending)
    }

    /// Stops the ticker and sends what is left, so every delta precedes `Done`.
    async fn finish(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "delta batcher failed");
        }
        flush(&self.pending, &self.channel);
    }
}

fn flush(pending: &Mutex<Pending>, channel: &Channel<ChatEvent>) {
    let Pending { text, deltas } = std::mem::take(&mut *lock(pending));
    if !text.is_empty() {
        send_event(channel, ChatEvent::Delta { text, tokens: deltas });
    }
}
