//! [`hearth_core::Backend`] for the in-process llama.cpp engine. The worker process
//! serves this through the HTTP API; nothing else should load llama.cpp in a process
//! that must survive it (llama.cpp aborts the process on some failures).
//!
//! The engine is synchronous and decodes on its own thread; here its calls run on
//! tokio's blocking pool and its std channel of events is bridged into an async
//! stream. Dropping that stream cancels the generation.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hearth_core::backend::BoxFuture;
use hearth_core::{
    Backend, BackendError, ErrorCode, EventStream, GenerateRequest, GenerationEvent, Health, ModelDescriptor, Prompt,
    SamplingParams,
};
use hearth_engine::{CancelToken, Engine, EngineConfig, EngineError, GenerationRequest};

/// Events buffered between the bridge thread and the HTTP response.
const BRIDGE_BUFFER: usize = 64;

/// The local engine as a backend. `load` replaces the model (the old one is freed first).
pub struct EngineBackend {
    /// How models are loaded (context, threads …); `load` sets the path.
    config: EngineConfig,
    loaded: Mutex<Option<Arc<Loaded>>>,
    counters: Arc<Counters>,
}

/// What the decode thread is doing, as seen from the bridge threads.
#[derive(Default)]
struct Counters {
    /// Generations whose decoding has not ended yet (including ones whose reader is gone).
    running: AtomicUsize,
    /// Generations that ended because their reader went away.
    cancelled: AtomicUsize,
}

/// Counts a generation as running until its decoding has really ended.
struct Running(Arc<Counters>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Loaded {
    engine: Engine,
    id: String,
    /// Set once a one-token generation succeeded after the load; cleared when the
    /// engine thread is found stopped.
    healthy: AtomicBool,
}

/// The id a model is served under: its file name without `.gguf`.
pub fn model_id(path: &Path) -> String {
    let name = path
        .file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    name.strip_suffix(".gguf").map(str::to_owned).unwrap_or(name)
}

/// Maps the engine's errors once, into what an API caller can act on.
pub fn map_error(e: EngineError) -> BackendError {
    match e {
        EngineError::ContextOverflow { needed, limit } => BackendError::ContextOverflow { needed, limit },
        EngineError::NoChatTemplate { model } => BackendError::NoChatTemplate { model },
        EngineError::InvalidSampling(e) => e.into(),
        EngineError::InvalidSettings(message) => BackendError::InvalidRequest { param: None, message },
        EngineError::EngineStopped => BackendError::Unavailable {
            backend: "engine".into(),
            cause: e.to_string(),
        },
        other => BackendError::Failed {
            code: other.code(),
            message: other.to_string(),
        },
    }
}

fn join_error(e: tokio::task::JoinError) -> BackendError {
    BackendError::Failed {
        code: ErrorCode::Internal,
        message: format!("an engine task failed: {e}"),
    }
}

impl EngineBackend {
    /// A backend with nothing loaded; `config.model_path` is replaced by each `load`.
    pub fn new(config: EngineConfig) -> Self {
        Self {
            config,
            loaded: Mutex::new(None),
            counters: Arc::default(),
        }
    }

    fn current(&self) -> Option<Arc<Loaded>> {
        self.loaded.lock().ok().and_then(|guard| guard.clone())
    }

    fn set(&self, loaded: Option<Arc<Loaded>>) {
        if let Ok(mut guard) = self.loaded.lock() {
            *guard = loaded;
        }
    }

    /// Loads `path`, then proves the model can generate with a one-token greedy run.
    pub async fn load_path(&self, path: PathBuf) -> Result<(), BackendError> {
        // Free the old model before loading the next: two may not fit in memory.
        if let Some(old) = self.current() {
            self.set(None);
            // The engine thread is joined when the last reference drops: off the runtime.
            tokio::task::spawn_blocking(move || drop(old))
                .await
                .map_err(join_error)?;
        }
        let config = EngineConfig {
            model_path: path.clone(),
            ..self.config.clone()
        };
        let loaded = tokio::task::spawn_blocking(move || -> Result<Loaded, BackendError> {
            let engine = Engine::load(config).map_err(map_error)?;
            let probe = GenerationRequest {
                prompt: hearth_engine::Prompt::Text("Hello".into()),
                params: SamplingParams::greedy(1),
            };
            engine.generate_text(probe).map_err(map_error)?;
            engine.reset_cache().map_err(map_error)?;
            Ok(Loaded {
                engine,
                id: model_id(&path),
                healthy: AtomicBool::new(true),
            })
        })
        .await
        .map_err(join_error)??;
        tracing::info!(model = %loaded.id, "model loaded and probed");
        self.set(Some(Arc::new(loaded)));
        Ok(())
    }

    /// A backend serving an engine already loaded (and warmed up) by the caller.
    pub fn from_engine(engine: Engine) -> Self {
        let id = model_id(&engine.info().path);
        let backend = Self::new(EngineConfig::new(engine.info().path.clone()));
        backend.set(Some(Arc::new(Loaded {
            engine,
            id,
            healthy: AtomicBool::new(true),
        })));
        backend
    }

    /// Generations still decoding, including abandoned ones not yet stopped.
    pub fn running_generations(&self) -> usize {
        self.counters.running.load(Ordering::Acquire)
    }

    /// Generations stopped because their reader dropped the stream.
    pub fn cancelled_generations(&self) -> usize {
        self.counters.cancelled.load(Ordering::Acquire)
    }

    /// The engine's facts about the loaded model.
    pub fn info(&self) -> Option<hearth_engine::ModelInfo> {
        self.current().map(|l| l.engine.info().clone())
    }
}

/// Whether a request's `model` names the loaded model: its id, its file name, or nothing.
fn matches(requested: Option<&str>, loaded: &Loaded) -> bool {
    match requested {
        None | Some("") => true,
        Some(name) => name == loaded.id || name == loaded.engine.info().name,
    }
}

/// Cancels the generation when the stream that reads it is dropped (client gone).
struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl Backend for EngineBackend {
    fn name(&self) -> &str {
        "engine"
    }

    fn load<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.load_path(PathBuf::from(model)))
    }

    fn unload(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            if let Some(old) = self.current() {
                self.set(None);
                tokio::task::spawn_blocking(move || drop(old))
                    .await
                    .map_err(join_error)?;
            }
            Ok(())
        })
    }

    fn models(&self) -> BoxFuture<'_, Result<Vec<ModelDescriptor>, BackendError>> {
        Box::pin(async move {
            Ok(self
                .current()
                .map(|l| {
                    let info = l.engine.info();
                    ModelDescriptor {
                        id: l.id.clone(),
                        owned_by: "hearth".into(),
                        context_length: Some(info.n_ctx),
                        has_chat_template: Some(info.has_chat_template),
                        device: Some(info.device.clone()),
                        gpu_layers: Some(info.n_gpu_layers),
                        layers_total: Some(info.n_layer + 1),
                        placement_note: info.placement_note.clone(),
                    }
                })
                .into_iter()
                .collect())
        })
    }

    fn health(&self) -> BoxFuture<'_, Health> {
        Box::pin(async move {
            match self.current() {
                None => Health::not_ready("no model is loaded"),
                Some(l) if l.healthy.load(Ordering::Acquire) => Health::ready(l.id.clone()),
                Some(l) => Health {
                    ready: false,
                    model: Some(l.id.clone()),
                    reason: Some("the engine stopped; load the model again".into()),
                },
            }
        })
    }

    fn generate(&self, request: GenerateRequest) -> BoxFuture<'_, Result<EventStream, BackendError>> {
        Box::pin(async move {
            let loaded = self.current().ok_or(BackendError::NotLoaded)?;
            if !matches(request.model.as_deref(), &loaded) {
                return Err(BackendError::ModelNotFound {
                    model: request.model.unwrap_or_default(),
                });
            }
            let prompt = match request.prompt {
                Prompt::Chat(messages) => hearth_engine::Prompt::Chat(messages),
                Prompt::Text(text) => hearth_engine::Prompt::Text(text),
            };
            let engine_request = GenerationRequest {
                prompt,
                params: request.params,
            };
            let engine = Arc::clone(&loaded);
            // Blocks until the prompt is checked (and until an earlier generation ends).
            let generation = tokio::task::spawn_blocking(move || engine.engine.generate(engine_request))
                .await
                .map_err(join_error)?
                .map_err(|e| {
                    if matches!(e, EngineError::EngineStopped) {
                        loaded.healthy.store(false, Ordering::Release);
                    }
                    map_error(e)
                })?;
            let (tx, rx) = tokio::sync::mpsc::channel(BRIDGE_BUFFER);
            let cancel = generation.cancel.clone();
            self.counters.running.fetch_add(1, Ordering::AcqRel);
            let running = Running(Arc::clone(&self.counters));
            tokio::task::spawn_blocking(move || {
                let _running = running;
                for event in generation.events.iter() {
                    let last = !matches!(event, GenerationEvent::Delta { .. });
                    if tx.blocking_send(Ok(event)).is_err() {
                        // The reader is gone: stop decoding, and wait until the decode thread
                        // has really stopped, so `running_generations` tells the truth.
                        generation.cancel.cancel();
                        for event in generation.events.iter() {
                            if !matches!(event, GenerationEvent::Delta { .. }) {
                                break;
                            }
                        }
                        _running.0.cancelled.fetch_add(1, Ordering::AcqRel);
                        return;
                    }
                    if last {
                        return;
                    }
                }
                // The decode thread ended without a final event: it died.
                loaded.healthy.store(false, Ordering::Release);
                let _ = tx.blocking_send(Err(map_error(EngineError::EngineStopped)));
            });
            let guard = CancelOnDrop(cancel);
            let stream = futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
                let item = rx.recv().await?;
                Some((item, (rx, guard)))
            });
            Ok(Box::pin(stream) as EventStream)
        })
    }
}
