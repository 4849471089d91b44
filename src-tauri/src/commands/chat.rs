//! Sending, regenerating and editing messages, streamed to the UI through a Tauri
//! `Channel` as [`ChatEvent`]s. Text arrives batched: the deltas of ~25 ms go out as
//! one event, so a fast model does not flood the webview with one message per token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_core::ErrorCode;
use hearth_manager::TurnReport;
use hearth_store::MessageId;
use serde::Serialize;
use tauri::ipc::Channel;
use tauri::State;

use crate::commands::{broadcast_flags, broadcast_status, settings::sampling};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// How long deltas collect before they are sent as one event.
pub const DELTA_BATCH: Duration = Duration::from_millis(25);

#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ChatEvent {
    /// The reply started on this backend and model (after any retries and fallbacks;
    /// sent with its first text).
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
    Error { code: ErrorCode, message: String },
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
    /// The stored id of the user's message (`null` when history is off); after a
    /// regenerate it is a new id, the message having been written again.
    pub user_message_id: Option<i64>,
    /// The stored id of the reply (`null` when history is off).
    pub reply_message_id: Option<i64>,
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
            user_message_id: t.user_message.map(|id| id.0),
            reply_message_id: t.message.map(|id| id.0),
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
    if state.generating() {
        return Err(AppError::busy());
    }
    let text = state.manager.conversation().rewind_for_regenerate().await?;
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
    if state.generating() {
        return Err(AppError::busy());
    }
    state
        .manager
        .conversation()
        .rewind_for_edit(MessageId(message_id))
        .await?;
    generate(&state, &text, &on_event).await
}

/// A message must say something before it is sent (or resent after an edit).
fn require_text(text: &str) -> AppResult<()> {
    if text.trim().is_empty() {
        return Err(AppError::new(
            ErrorCode::InvalidRequest,
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

/// One reply, from claiming the generating slot to the final event.
async fn generate(state: &AppState, text: &str, on_event: &Channel<ChatEvent>) -> AppResult<TurnView> {
    if state.loading() {
        // The backend is being replaced: a reply now would go to a half-loaded model.
        return Err(AppError::new(
            ErrorCode::ModelLoading,
            "The model is still loading: send again when the status says Ready",
        ));
    }
    let Some(guard) = state.begin_generation() else {
        return Err(AppError::busy());
    };
    broadcast_flags(state).await;
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
    if manager.conversation().is_empty() {
        if let Some(prompt) = &ui.system_prompt {
            manager.conversation().open_with_system_prompt(prompt, Some(text)).await;
        }
    }
    let batcher = Batcher::start(on_event.clone());
    let pending = batcher.pending();
    // Where the reply runs is known once it started (after any fallback): the manager
    // says so, so nothing asks every backend for its status.
    let started = |backend: hearth_manager::BackendKind, model: &str| {
        send_event(
            on_event,
            ChatEvent::Started {
                backend: backend.to_string(),
                model: model.to_owned(),
            },
        );
    };
    let result = manager
        .send_reporting(text, sampling(state), &state.stop, started, |delta| {
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
                    code: e.code,
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
