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
use std::time::Instant;

use hearth_core::{Backend, BackendError};
use hearth_store::AsyncStore;

use crate::conversation::Conversation;
use crate::cooldown::{CooldownPolicy, Cooldowns};
use crate::placement::ModelPlacement;
use crate::registry::{self, LoadChoice};
use crate::settings::{BackendKind, Settings, SettingsError};
use crate::types::*;

mod follow;
mod turn;

use follow::{follow, Follower, SharedPlacement};

/// A backend ready to generate.
#[derive(Clone)]
struct Slot {
    backend: Arc<dyn Backend>,
    model: String,
    has_chat_template: bool,
    /// Where the model runs, as the backend said once it had loaded it and each time it
    /// was ready again after a change of its own (see [`follow`]).
    placement: SharedPlacement,
    /// Follows the backend's own changes while the slot exists.
    _follower: Option<Arc<Follower>>,
}

pub struct BackendManager {
    settings: RwLock<Settings>,
    options: ManagerOptions,
    slots: tokio::sync::Mutex<HashMap<BackendKind, Slot>>,
    /// The backend being loaded, until it has a slot: its health says how far it is.
    loading: Mutex<Option<(BackendKind, Arc<dyn Backend>)>>,
    active: Mutex<BackendKind>,
    /// The conversation replies continue (its only writer).
    conversation: Conversation,
    cooldowns: Mutex<Cooldowns>,
    counters: Counters,
    store: AsyncStore,
    /// Moves each time a backend changed by itself (see [`BackendManager::watch_changes`]).
    ticks: Arc<tokio::sync::watch::Sender<u64>>,
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
            loading: Mutex::new(None),
            conversation: Conversation::new(store.clone()),
            counters: Counters::default(),
            store,
            ticks: Arc::new(tokio::sync::watch::Sender::new(0)),
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
            .filter(|&k| registry::section_changed(k, &old, &settings))
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

    /// Changes each time a loaded (or loading) backend's health or placement changed by
    /// itself: read [`BackendManager::health`] again then, rather than on a timer.
    pub fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ticks.subscribe()
    }

    pub fn store(&self) -> &AsyncStore {
        &self.store
    }

    /// The conversation replies continue: resume, rewind, system prompt, title.
    pub fn conversation(&self) -> &Conversation {
        &self.conversation
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
        let choice = LoadChoice {
            model,
            quantization,
            placement,
        };
        let (backend, model_arg) = registry::create(kind, &settings, &self.options, choice, self.store.path()).await?;
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
        // Followed from the start, so that its loading progress is told too.
        let placement = SharedPlacement::default();
        let follower = follow(&backend, Arc::clone(&placement), Arc::clone(&self.ticks)).map(Arc::new);
        *lock(&self.loading) = Some((kind, Arc::clone(&backend)));
        let loaded = backend.load(model).await;
        *lock(&self.loading) = None;
        loaded.map_err(fail)?;
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
        *lock(&placement) = descriptor.and_then(ModelPlacement::from_descriptor);
        let slot = Slot {
            model: descriptor.map_or(id, |d| d.id.clone()),
            has_chat_template: descriptor.and_then(|d| d.has_chat_template).unwrap_or(true),
            placement,
            _follower: follower,
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

    /// The active backend and its model's name, when a model is loaded: what the app's
    /// API serves (it never loads one itself).
    pub async fn serving(&self) -> Option<(Arc<dyn Backend>, String)> {
        self.slot(self.active()).await.map(|s| (s.backend, s.model))
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
            self.conversation.start_new();
        }
        let messages_carried = self.conversation.messages().len();
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
            let loading = lock(&self.loading).clone().filter(|(k, _)| *k == kind);
            let health = match (&slot, loading) {
                (Some(slot), _) => Some(slot.backend.health().await),
                // Not installed yet: how far its load is ("loading the model: 42%").
                (None, Some((_, backend))) => Some(backend.health().await),
                (None, None) => None,
            };
            // Kept up to date by the follower (a worker restarted after its GPU ran out
            // of memory runs with fewer layers): not asked here.
            let placement = slot.as_ref().and_then(|s| lock(&s.placement).clone());
            let loaded_model = slot.map(|s| s.model);
            backends.push(BackendStatus {
                backend: kind,
                configured: settings.is_configured(kind),
                loaded_model,
                placement,
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
            history: self.conversation.history_error(),
        }
    }
}
