//! The model the app has loaded, as a [`Backend`] other programs may call: the desktop
//! app's local API serves through this, so an editor or a script uses the same worker
//! (and the same loaded model) as the chat window, decoding beside it.
//!
//! It never loads or unloads anything: the app's settings choose the model. It only
//! serves the model that is loaded, under that model's name, and counts the
//! generations running through it (the tray and the dashboard show the count).

use std::sync::Arc;

use futures_util::StreamExt;
use hearth_core::backend::BoxFuture;
use hearth_core::{Backend, BackendError, EventStream, GenerateRequest, Health, ModelDescriptor};
use tokio::sync::watch;

use crate::BackendManager;

/// The backend name API errors carry ("hearth is unavailable: …").
const NAME: &str = "hearth";

pub struct ServedBackend {
    manager: Arc<BackendManager>,
    running: Arc<watch::Sender<usize>>,
}

/// Counts one generation while it lives (dropping its stream ends it, however it ends).
struct Running(Arc<watch::Sender<usize>>);

impl Running {
    fn start(counter: &Arc<watch::Sender<usize>>) -> Self {
        counter.send_modify(|n| *n += 1);
        Self(Arc::clone(counter))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl ServedBackend {
    pub fn new(manager: Arc<BackendManager>) -> Self {
        Self {
            manager,
            running: Arc::new(watch::channel(0).0),
        }
    }

    /// Generations running through this backend now.
    pub fn running(&self) -> usize {
        *self.running.borrow()
    }

    /// Changes whenever a generation starts or ends.
    pub fn watch_running(&self) -> watch::Receiver<usize> {
        self.running.subscribe()
    }

    async fn loaded(&self) -> Result<(Arc<dyn Backend>, String), BackendError> {
        self.manager.serving().await.ok_or_else(|| BackendError::Unavailable {
            backend: NAME.into(),
            cause: "no model is loaded yet: wait for Hearth to finish loading, or pick a model in its Settings".into(),
        })
    }
}

impl Backend for ServedBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn load<'a>(&'a self, _model: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async {
            Err(BackendError::InvalidRequest {
                param: Some("model".into()),
                message: "Hearth's API serves the model chosen in the app: pick another in its Settings".into(),
            })
        })
    }

    fn unload(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        // The app owns the model: an API server stopping leaves it loaded for the chat.
        Box::pin(async { Ok(()) })
    }

    fn models(&self) -> BoxFuture<'_, Result<Vec<ModelDescriptor>, BackendError>> {
        Box::pin(async {
            let Ok((backend, model)) = self.loaded().await else {
                return Ok(Vec::new());
            };
            // A server backend (Ollama) lists all it has; only the loaded one is served.
            let listed = backend.models().await?;
            let described = listed.into_iter().find(|m| m.id == model);
            Ok(vec![described.unwrap_or(ModelDescriptor {
                id: model,
                owned_by: NAME.into(),
                context_length: None,
                has_chat_template: None,
                device: None,
                gpu_layers: None,
                layers_total: None,
                placement_note: None,
            })])
        })
    }

    fn health(&self) -> BoxFuture<'_, Health> {
        Box::pin(async {
            match self.loaded().await {
                Ok((backend, _)) => backend.health().await,
                Err(e) => Health::not_ready(e.to_string()),
            }
        })
    }

    fn generate(&self, mut request: GenerateRequest) -> BoxFuture<'_, Result<EventStream, BackendError>> {
        Box::pin(async move {
            let (backend, model) = self.loaded().await?;
            match &request.model {
                Some(asked) if *asked != model => return Err(BackendError::ModelNotFound { model: asked.clone() }),
                _ => request.model = Some(model),
            }
            let stream = backend.generate(request).await?;
            let running = Running::start(&self.running);
            let counted = stream.map(move |event| {
                let _counted = &running;
                event
            });
            Ok(Box::pin(counted) as EventStream)
        })
    }
}
