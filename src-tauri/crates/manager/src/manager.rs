//! The backend manager (the seed's `LLMBackendManager`): which backend answers, how a
//! reply survives a failing one, and a conversation that outlives any backend.
//!
//! - The conversation lives in the store, never in a backend: each reply is generated
//!   from the saved history, so switching backends (or models) at runtime keeps the chat.
//! - Starting a reply is retried (transient failures only, exponential backoff), then
//!   handed to the next backend in the fallback order. Once the first token has reached
//!   the caller nothing is retried: a failure then ends the reply, which is kept and
//!   marked incomplete, so no text is ever duplicated.
//! - A backend that keeps failing cools down and is skipped for a while.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hearth_backends::{OllamaBackend, OllamaOptions, OpenAiBackend, Supervisor, WorkerConfig};
use hearth_core::{
    Backend, BackendError, ChatMessage, EventStream, FinishReason, GenerateRequest, GenerationEvent, GenerationMetrics,
    SamplingParams,
};
use hearth_store::{AsyncStore, MessageMetadata, NewMessage, NewSession, PerfRecord, SessionId, StoreError};

use crate::cooldown::{CooldownPolicy, Cooldowns};
use crate::models::{resolve_model_file, with_quantization};
use crate::reply_clock::ReplyClock;
use crate::retry::{retry_transient, RetryPolicy};
use crate::settings::{BackendKind, Settings, SettingsError};
use crate::transcript::prompt_for;
use crate::types::*;

/// A backend ready to generate.
#[derive(Clone)]
struct Slot {
    backend: Arc<dyn Backend>,
    model: String,
    has_chat_template: bool,
}

pub struct BackendManager {
    settings: RwLock<Settings>,
    options: ManagerOptions,
    slots: tokio::sync::Mutex<HashMap<BackendKind, Slot>>,
    active: Mutex<BackendKind>,
    session: Mutex<Option<SessionId>>,
    /// The current conversation, mirrored from the store: replies are built from it, and
    /// it keeps the chat going if the database fails (full disk, read-only, corrupt).
    conversation: Mutex<Vec<ChatMessage>>,
    /// Set when a database write failed: history is off for the rest of the run.
    history_error: Mutex<Option<String>>,
    cooldowns: Mutex<Cooldowns>,
    counters: Counters,
    store: AsyncStore,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not take the chat down with it: the data is still consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl BackendManager {
    /// A manager with nothing loaded yet; `settings` must have been validated (as
    /// [`Settings::load`] does).
    pub fn new(settings: Settings, options: ManagerOptions, store: AsyncStore) -> Self {
        Self {
            active: Mutex::new(settings.active),
            cooldowns: Mutex::new(Cooldowns::new(CooldownPolicy::from(&settings.cooldown))),
            settings: RwLock::new(settings),
            options,
            slots: tokio::sync::Mutex::new(HashMap::new()),
            session: Mutex::new(None),
            conversation: Mutex::new(Vec::new()),
            history_error: Mutex::new(None),
            counters: Counters::default(),
            store,
        }
    }

    pub fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Applies new settings without a restart. Backends whose configuration changed are
    /// unloaded, and load again with the new one when next used.
    pub async fn apply_settings(&self, settings: Settings) -> Result<(), ManagerError> {
        settings.validate().map_err(|problems| SettingsError {
            file: PathBuf::from("(applied)"),
            problems,
        })?;
        let old = std::mem::replace(
            &mut *self.settings.write().unwrap_or_else(std::sync::PoisonError::into_inner),
            settings.clone(),
        );
        lock(&self.cooldowns).set_policy(CooldownPolicy::from(&settings.cooldown));
        let changed: Vec<BackendKind> = BackendKind::ALL
            .into_iter()
            .filter(|k| match k {
                BackendKind::Embedded => old.embedded != settings.embedded,
                BackendKind::Ollama => old.ollama != settings.ollama,
                BackendKind::Vllm => old.vllm != settings.vllm,
            })
            .collect();
        for kind in changed {
            self.unload(kind).await;
        }
        Ok(())
    }

    pub fn active(&self) -> BackendKind {
        *lock(&self.active)
    }

    pub fn counters(&self) -> CountersSnapshot {
        let c = &self.counters;
        CountersSnapshot {
            errors: c.errors.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            fallbacks: c.fallbacks.load(Ordering::Relaxed),
            cooldowns: c.cooldowns.load(Ordering::Relaxed),
        }
    }

    pub fn store(&self) -> &AsyncStore {
        &self.store
    }

    /// The conversation replies continue; `None` until the first message.
    pub fn session(&self) -> Option<SessionId> {
        lock(&self.session).clone()
    }

    /// Continues a saved conversation.
    pub async fn resume_session(&self, id: SessionId) -> Result<usize, ManagerError> {
        let messages: Vec<ChatMessage> = self
            .store
            .list_messages(id.clone())
            .await?
            .into_iter()
            .map(|m| ChatMessage::new(m.role, m.content))
            .collect();
        let n = messages.len();
        *lock(&self.conversation) = messages;
        *lock(&self.session) = Some(id);
        Ok(n)
    }

    /// The next message starts a new conversation.
    pub fn new_session(&self) {
        *lock(&self.session) = None;
        lock(&self.conversation).clear();
    }

    /// The messages of the current conversation, as the next reply will see them.
    pub fn conversation(&self) -> Vec<ChatMessage> {
        lock(&self.conversation).clone()
    }

    fn history_on(&self) -> bool {
        lock(&self.history_error).is_none()
    }

    /// A database write failed: history goes off for this run, the chat goes on.
    fn history_failed(&self, e: &StoreError) {
        let mut error = lock(&self.history_error);
        if error.is_none() {
            tracing::warn!(error = %e, "chat history disabled for this run");
            *error = Some(e.to_string());
        }
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
                self.history_failed(&e);
                None
            }
        }
    }

    /// Starts a new conversation that opens with `text` as its system prompt.
    pub async fn set_system_prompt(&self, text: &str) {
        self.new_session();
        lock(&self.conversation).push(ChatMessage::system(text));
        if let Some(session) = self.current_or_new_session(text).await {
            let message = NewMessage::new(hearth_core::Role::System, text);
            self.save(self.store.append_message(session, message)).await;
        }
    }

    /// Creates `kind`'s backend and loads `model` (settings' model when `None`). For the
    /// embedded engine `quantization` picks among installed files of that model
    /// (`Q4_K_M` …) and `placement` decides the GPU layers; servers pick by name.
    pub async fn initialize_backend(
        &self,
        kind: BackendKind,
        model: Option<&str>,
        quantization: Option<&str>,
        placement: Option<Placement>,
    ) -> Result<InitReport, ManagerError> {
        let settings = self.settings();
        let started = Instant::now();
        let fail = |error| ManagerError::Backend { backend: kind, error };
        let (backend, model_arg): (Arc<dyn Backend>, String) = match kind {
            BackendKind::Embedded => {
                let s = &settings.embedded;
                let name = model.unwrap_or(&s.model);
                let path = resolve_model_file(&self.options.models_dir, name, quantization).map_err(fail)?;
                let placement = placement.unwrap_or_else(|| Placement::from_setting(&s.gpu_layers));
                let mut config = WorkerConfig::new(&self.options.worker_program);
                config.ready_timeout = self.options.worker_ready_timeout;
                config.args = vec!["--ctx".into(), s.ctx.to_string().into()];
                config
                    .args
                    .extend(["--gpu-layers".into(), placement.worker_arg().into()]);
                if let Some(threads) = s.threads {
                    config.args.extend(["--threads".into(), threads.to_string().into()]);
                }
                (Arc::new(Supervisor::new(config)), path.to_string_lossy().into_owned())
            }
            BackendKind::Ollama => {
                let s = settings.ollama.as_ref().ok_or(ManagerError::NotConfigured(kind))?;
                let options = OllamaOptions {
                    num_ctx: s.num_ctx,
                    ..OllamaOptions::default()
                };
                let backend = OllamaBackend::new("ollama", &s.url, options).map_err(fail)?;
                let name = with_quantization(model.unwrap_or(&s.model), quantization);
                (Arc::new(backend), name)
            }
            BackendKind::Vllm => {
                let s = settings.vllm.as_ref().ok_or(ManagerError::NotConfigured(kind))?;
                let key = s.api_key.as_ref().map(|k| k.expose().to_owned());
                let backend = OpenAiBackend::new("vllm", &s.url, key)
                    .map_err(fail)?
                    .with_stall_timeout(Some(Duration::from_millis(s.stall_timeout_ms)));
                let name = match model.map(str::to_owned).or_else(|| s.model.clone()) {
                    Some(name) => name,
                    // vLLM serves one model, under the name it was started with.
                    None => backend
                        .models()
                        .await
                        .map_err(fail)?
                        .into_iter()
                        .next()
                        .map(|m| m.id)
                        .ok_or_else(|| {
                            fail(BackendError::Unavailable {
                                backend: "vllm".into(),
                                cause: format!("{} lists no model", s.url),
                            })
                        })?,
                };
                (Arc::new(backend), name)
            }
        };
        self.install(kind, backend, &model_arg).await?;
        let model = self.slot(kind).await.map(|s| s.model).unwrap_or(model_arg);
        let load_ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(backend = %kind, %model, load_ms, "backend initialized");
        Ok(InitReport {
            backend: kind,
            model,
            load_ms,
        })
    }

    /// Loads `model` into `backend` and makes it `kind`'s backend (replacing any before).
    /// Tests and embedders use this to bring their own backend.
    pub async fn install(&self, kind: BackendKind, backend: Arc<dyn Backend>, model: &str) -> Result<(), ManagerError> {
        let fail = |error| ManagerError::Backend { backend: kind, error };
        self.unload(kind).await;
        backend.load(model).await.map_err(fail)?;
        let described = backend.models().await.map_err(fail)?;
        let id = Path::new(model)
            .file_stem()
            .filter(|_| kind == BackendKind::Embedded)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| model.to_owned());
        let descriptor = described
            .iter()
            .find(|m| m.id == id || m.id == model)
            .or(described.first());
        let slot = Slot {
            model: descriptor.map_or(id, |d| d.id.clone()),
            has_chat_template: descriptor.and_then(|d| d.has_chat_template).unwrap_or(true),
            backend,
        };
        self.slots.lock().await.insert(kind, slot);
        Ok(())
    }

    /// Frees `kind`'s model (for the embedded engine its worker process ends).
    pub async fn unload(&self, kind: BackendKind) {
        let slot = self.slots.lock().await.remove(&kind);
        if let Some(slot) = slot {
            if let Err(e) = slot.backend.unload().await {
                tracing::warn!(backend = %kind, error = %e, "unload failed");
            }
        }
    }

    async fn slot(&self, kind: BackendKind) -> Option<Slot> {
        self.slots.lock().await.get(&kind).cloned()
    }

    /// `kind`'s backend, initialized from the settings when it is not yet.
    async fn ensure(&self, kind: BackendKind) -> Result<Slot, ManagerError> {
        if let Some(slot) = self.slot(kind).await {
            return Ok(slot);
        }
        self.initialize_backend(kind, None, None, None).await?;
        self.slot(kind).await.ok_or(ManagerError::NotConfigured(kind))
    }

    /// Makes `to` the backend replies come from. With `preserve_context` the current
    /// conversation continues there (its whole history goes into the next prompt);
    /// without, the next message starts a new conversation (the old one stays saved).
    /// The previous backend is unloaded unless it is in the fallback order.
    pub async fn switch_backend(&self, to: BackendKind, preserve_context: bool) -> Result<SwitchReport, ManagerError> {
        let started = Instant::now();
        let slot = self.ensure(to).await?;
        let health = slot.backend.health().await;
        if !health.ready {
            return Err(ManagerError::Backend {
                backend: to,
                error: BackendError::Unavailable {
                    backend: to.to_string(),
                    cause: health.reason.unwrap_or_else(|| "not ready".into()),
                },
            });
        }
        let from = std::mem::replace(&mut *lock(&self.active), to);
        if !preserve_context {
            self.new_session();
        }
        let messages_carried = lock(&self.conversation).len();
        if from != to && !self.settings().fallback.contains(&from) {
            self.unload(from).await;
        }
        let report = SwitchReport {
            from,
            to,
            model: slot.model,
            switch_ms: started.elapsed().as_secs_f64() * 1000.0,
            preserved_context: preserve_context,
            messages_carried,
        };
        tracing::info!(from = %report.from, to = %report.to, model = %report.model, switch_ms = report.switch_ms, messages_carried, "backend switched");
        Ok(report)
    }

    /// The active backend's readiness, and every backend's state.
    pub async fn health(&self) -> ManagerHealth {
        let settings = self.settings();
        let active = self.active();
        let mut backends = Vec::new();
        for kind in BackendKind::ALL {
            let slot = self.slot(kind).await;
            let health = match &slot {
                Some(slot) => Some(slot.backend.health().await),
                None => None,
            };
            backends.push(BackendStatus {
                backend: kind,
                configured: settings.is_configured(kind),
                loaded_model: slot.map(|s| s.model),
                health,
                cooling_secs: lock(&self.cooldowns).cooling(kind).map(|d| d.as_secs_f64()),
            });
        }
        let (ready, reason) = match backends.iter().find(|b| b.backend == active) {
            Some(BackendStatus {
                health: Some(health), ..
            }) => (health.ready, health.reason.clone()),
            _ => (false, Some(format!("{active} has no model loaded yet"))),
        };
        ManagerHealth {
            active,
            ready,
            reason,
            backends,
            history: lock(&self.history_error).clone(),
        }
    }

    /// The backends to try, in order: the active one, then the configured fallbacks.
    fn candidates(&self) -> Vec<BackendKind> {
        let settings = self.settings();
        let mut order = vec![self.active()];
        for kind in settings.fallback {
            if !order.contains(&kind) {
                order.push(kind);
            }
        }
        order
    }

    /// Saves `text` as the user's turn, generates the reply from the whole saved
    /// conversation, streams it to `on_delta`, and saves it (with its backend, model and
    /// figures). See the module comment for what happens on failure.
    pub async fn send(
        &self,
        text: &str,
        params: SamplingParams,
        stop: &StopSignal,
        mut on_delta: impl FnMut(&str),
    ) -> Result<TurnReport, ManagerError> {
        stop.reset();
        let session = self.current_or_new_session(text).await;
        if let Some(session) = &session {
            let message = NewMessage::new(hearth_core::Role::User, text);
            self.save(self.store.append_message(session.clone(), message)).await;
        }
        let history = {
            let mut conversation = lock(&self.conversation);
            conversation.push(ChatMessage::user(text));
            conversation.clone()
        };
        let mut clock = ReplyClock::starting_at(Instant::now());
        let started = self.start_reply(&history, &params).await?;
        let Started {
            kind,
            model,
            first,
            mut rest,
            retries,
            fallbacks,
        } = started;
        let mut reply = String::new();
        let mut next = Some(Ok(first));
        let outcome = loop {
            let event = match next.take() {
                Some(event) => Some(event),
                None => tokio::select! {
                    biased;
                    _ = stop.stopped() => break Outcome::Stopped,
                    event = rest.next() => event,
                },
            };
            match event {
                Some(Ok(GenerationEvent::Delta { text })) => {
                    clock.delta_at(Instant::now());
                    on_delta(&text);
                    reply.push_str(&text);
                }
                Some(Ok(GenerationEvent::Done { metrics })) => break Outcome::Done(metrics),
                Some(Ok(GenerationEvent::Error { message })) => {
                    break Outcome::Failed(BackendError::Failed {
                        code: "generation_failed".into(),
                        message,
                    })
                }
                Some(Err(e)) => break Outcome::Failed(e),
                None => {
                    break Outcome::Failed(BackendError::Unavailable {
                        backend: kind.to_string(),
                        cause: "the stream ended before the reply was complete".into(),
                    })
                }
            }
        };
        drop(rest);
        let (metrics, failure) = match outcome {
            Outcome::Done(metrics) => {
                lock(&self.cooldowns).success(kind);
                (metrics, None)
            }
            Outcome::Stopped => (clock.metrics(FinishReason::Cancelled, Instant::now()), None),
            Outcome::Failed(error) => {
                self.failed(kind, &error);
                (clock.metrics(FinishReason::Error, Instant::now()), Some(error))
            }
        };
        // Saved even when cut short (marked incomplete), never regenerated behind the user's back.
        let incomplete = metrics.finish_reason == FinishReason::Cancelled || failure.is_some();
        if !(reply.is_empty() && failure.is_some()) {
            lock(&self.conversation).push(ChatMessage::assistant(reply.clone()));
        }
        let message = if reply.is_empty() && failure.is_some() {
            None
        } else if let Some(session) = session.clone().filter(|_| self.history_on()) {
            let metadata = MessageMetadata {
                backend: Some(kind.to_string()),
                model: Some(model.clone()),
                metrics: serde_json::to_value(&metrics).ok(),
                incomplete,
                ..MessageMetadata::default()
            };
            let record = PerfRecord::generation(kind.as_str(), &model, &metrics);
            let message = NewMessage::new(hearth_core::Role::Assistant, reply.clone()).with_metadata(metadata);
            self.save(self.store.append_message_with_perf(session, message, record))
                .await
                .map(|(id, _perf)| id)
        } else {
            None
        };
        if let Some(error) = failure {
            return Err(ManagerError::Interrupted {
                backend: kind,
                error,
                chars: reply.chars().count(),
            });
        }
        Ok(TurnReport {
            saved: message.is_some(),
            session,
            backend: kind,
            model,
            text: reply,
            metrics,
            retries,
            fallbacks,
            message,
        })
    }

    /// The conversation's session, created on its first message (titled after it);
    /// `None` when history is off.
    pub async fn current_or_new_session(&self, first_text: &str) -> Option<SessionId> {
        if let Some(id) = self.session() {
            return Some(id);
        }
        let title: String = first_text.chars().take(60).collect();
        let new = NewSession {
            title: title.trim().to_owned(),
            user_id: None,
            data: None,
        };
        let session = self.save(self.store.create_session(new)).await?;
        *lock(&self.session) = Some(session.id.clone());
        Some(session.id)
    }

    fn failed(&self, kind: BackendKind, error: &BackendError) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(backend = %kind, error = %error, code = error.code(), "backend failed");
        if lock(&self.cooldowns).failure(kind) {
            self.counters.cooldowns.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Gets the first event of a reply from the first backend able to give one.
    async fn start_reply(&self, history: &[ChatMessage], params: &SamplingParams) -> Result<Started, ManagerError> {
        let candidates = self.candidates();
        let policy = RetryPolicy::from(&self.settings().retry);
        let mut attempts: Vec<(BackendKind, BackendError)> = Vec::new();
        let mut total_retries = 0;
        for (i, kind) in candidates.iter().copied().enumerate() {
            if i > 0 {
                self.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(from = %candidates[i - 1], to = %kind, "falling back to the next backend");
            }
            let cooling = lock(&self.cooldowns).cooling(kind);
            if let Some(left) = cooling {
                tracing::info!(backend = %kind, left_secs = left.as_secs_f64(), "skipped: cooling down");
                attempts.push((
                    kind,
                    BackendError::Unavailable {
                        backend: kind.to_string(),
                        cause: format!("cooling down after repeated failures ({} s left)", left.as_secs()),
                    },
                ));
                continue;
            }
            let slot = match self.ensure(kind).await {
                Ok(slot) => slot,
                Err(ManagerError::Backend { error, .. }) => {
                    self.failed(kind, &error);
                    attempts.push((kind, error));
                    continue;
                }
                Err(other) => return Err(other),
            };
            let mut params = params.clone();
            let prompt = prompt_for(history, slot.has_chat_template, &mut params);
            let request = GenerateRequest {
                model: Some(slot.model.clone()),
                prompt,
                params,
            };
            let backend = Arc::clone(&slot.backend);
            let (result, retries) = retry_transient(policy, kind.as_str(), &self.counters.retries, || {
                first_event(Arc::clone(&backend), request.clone())
            })
            .await;
            total_retries += retries;
            match result {
                Ok((first, rest)) => {
                    return Ok(Started {
                        kind,
                        model: slot.model,
                        first,
                        rest,
                        retries: total_retries,
                        fallbacks: u32::try_from(i).unwrap_or(u32::MAX),
                    })
                }
                Err(error) if is_about_the_request(&error) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    return Err(ManagerError::Backend { backend: kind, error });
                }
                Err(error) => {
                    self.failed(kind, &error);
                    attempts.push((kind, error));
                }
            }
        }
        Err(ManagerError::AllFailed { attempts })
    }
}

enum Outcome {
    Done(GenerationMetrics),
    Stopped,
    Failed(BackendError),
}

struct Started {
    kind: BackendKind,
    model: String,
    first: GenerationEvent,
    rest: EventStream,
    retries: u32,
    fallbacks: u32,
}

/// Errors another backend would give too (the request itself is wrong): no fallback.
fn is_about_the_request(error: &BackendError) -> bool {
    match error {
        BackendError::InvalidRequest { .. } | BackendError::ContextOverflow { .. } => true,
        BackendError::Upstream { status, .. } => matches!(status, 400 | 413 | 422),
        _ => false,
    }
}

/// Starts a generation and waits for its first event: the point after which a failure
/// can no longer be retried.
async fn first_event(
    backend: Arc<dyn Backend>,
    request: GenerateRequest,
) -> Result<(GenerationEvent, EventStream), BackendError> {
    let mut stream = backend.generate(request).await?;
    match stream.next().await {
        Some(Ok(GenerationEvent::Error { message })) => Err(BackendError::Failed {
            code: "generation_failed".into(),
            message,
        }),
        Some(Ok(event)) => Ok((event, stream)),
        Some(Err(e)) => Err(e),
        None => Err(BackendError::Unavailable {
            backend: backend.name().to_owned(),
            cause: "the stream ended before any output".into(),
        }),
    }
}
