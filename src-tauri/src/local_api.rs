//! The desktop app's OpenAI-compatible API (as LM Studio and Jan offer): when the
//! settings turn it on, `hearth_api` serves on 127.0.0.1 the model the app has
//! loaded, through the app's own worker, so an editor or a script streams from it
//! while the user chats. Started at launch and restarted when its settings change;
//! the in-flight count reaches the tray and the dashboard through the app status.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hearth_api::{ApiConfig, Metrics};
use hearth_manager::{ApiSettings, BackendManager, ServedBackend};
use serde::Serialize;
use tokio::sync::{oneshot, watch, Mutex};
use tokio::task::JoinHandle;

use crate::error::{AppError, AppResult};

/// How many API requests may be in flight at once. The worker decodes as many as it has
/// sequences and queues the rest itself, so this only bounds what a runaway script opens.
const MOST_IN_FLIGHT: usize = 64;

/// The API as the UI shows it.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct ApiStatus {
    /// The base URL clients use (`http://127.0.0.1:8080/v1`) while it is serving.
    pub url: Option<String>,
    /// Whether clients must send the token.
    pub token_required: bool,
    /// Requests generating now.
    pub running: u32,
    /// Why it is not serving although turned on (the port is taken …).
    pub error: Option<String>,
}

struct Serving {
    settings: ApiSettings,
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

pub struct LocalApi {
    backend: Arc<ServedBackend>,
    serving: Mutex<Option<Serving>>,
    /// The last start's failure, until the next start.
    error: std::sync::Mutex<Option<String>>,
}

impl LocalApi {
    pub fn new(manager: Arc<BackendManager>) -> Self {
        Self {
            backend: Arc::new(ServedBackend::new(manager)),
            serving: Mutex::new(None),
            error: std::sync::Mutex::new(None),
        }
    }

    /// Changes whenever an API request starts or ends generating.
    pub fn watch_running(&self) -> watch::Receiver<usize> {
        self.backend.watch_running()
    }

    /// Where it listens, while it does.
    pub async fn addr(&self) -> Option<SocketAddr> {
        self.serving.lock().await.as_ref().map(|s| s.addr)
    }

    pub async fn status(&self) -> ApiStatus {
        let serving = self.serving.lock().await;
        ApiStatus {
            url: serving.as_ref().map(|s| format!("http://{}/v1", s.addr)),
            token_required: serving.as_ref().is_some_and(|s| s.settings.token.is_some()),
            running: u32::try_from(self.backend.running()).unwrap_or(u32::MAX),
            error: self
                .error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }

    /// Serves as `settings` say: starts, stops, or restarts on a new port or token. A
    /// port that cannot be bound is an error naming the field, and a server already
    /// running on another port keeps running.
    pub async fn apply(&self, settings: &ApiSettings) -> AppResult<()> {
        let mut serving = self.serving.lock().await;
        if serving.as_ref().is_some_and(|s| s.settings == *settings) {
            return Ok(());
        }
        if !settings.enabled {
            self.set_error(None);
            if let Some(old) = serving.take() {
                stop(old).await;
            }
            return Ok(());
        }
        // The same port must be let go before it is bound again; another port is bound
        // first, so that a failure leaves the old server as it was.
        let same_port = serving
            .as_ref()
            .is_some_and(|s| settings.port != 0 && s.addr.port() == settings.port);
        if same_port {
            if let Some(old) = serving.take() {
                stop(old).await;
            }
        }
        let started = self.start(settings).await;
        self.set_error(started.as_ref().err().map(|e| e.message.clone()));
        let new = started?;
        if let Some(old) = serving.replace(new) {
            stop(old).await;
        }
        Ok(())
    }

    /// Stops serving (the app is quitting); open streams get the server's drain time.
    pub async fn shut_down(&self) {
        if let Some(old) = self.serving.lock().await.take() {
            stop(old).await;
        }
    }

    async fn start(&self, settings: &ApiSettings) -> AppResult<Serving> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, settings.port));
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            AppError::invalid_field(
                "apiPort",
                format!(
                    "port {} cannot be used for the local API ({e}): another program may hold it; choose another port",
                    settings.port
                ),
            )
        })?;
        let local = listener.local_addr().map_err(AppError::internal)?;
        let mut config =
            ApiConfig::new(local.port()).with_token(settings.token.as_ref().map(|t| t.expose().to_owned()));
        config.max_concurrent = MOST_IN_FLIGHT;
        config
            .validate(&local)
            .map_err(|e| AppError::invalid_field("apiToken", e))?;
        let router = hearth_api::router(
            Arc::clone(&self.backend) as Arc<dyn hearth_core::Backend>,
            config,
            Arc::new(Metrics::new()),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(hearth_api::serve(listener, router, async {
            stopped.await.ok();
        }));
        tracing::info!(addr = %local, token = settings.token.is_some(), "local API serving");
        Ok(Serving {
            settings: settings.clone(),
            addr: local,
            stop,
            task,
        })
    }

    fn set_error(&self, error: Option<String>) {
        *self.error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = error;
    }
}

async fn stop(serving: Serving) {
    serving.stop.send(()).ok();
    match serving.task.await {
        Ok(Ok(())) => tracing::info!(addr = %serving.addr, "local API stopped"),
        Ok(Err(e)) => tracing::warn!(addr = %serving.addr, error = %e, "local API ended with an error"),
        Err(e) => tracing::warn!(addr = %serving.addr, error = %e, "local API task failed"),
    }
}
