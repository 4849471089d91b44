//! What the manager takes and reports: options, errors, counters, the stop signal,
//! and the reports of a load, a switch, a turn and the health check.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hearth_core::{BackendError, GenerationMetrics, Health};
use hearth_store::{MessageId, SessionId, StoreError};
use serde::Serialize;
use tokio::sync::Notify;

use crate::settings::{BackendKind, SettingsError};

/// Where the embedded engine's layers go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Placement {
    /// What the fit planner says fits in free GPU memory now.
    Auto,
    Cpu,
    GpuLayers(u32),
}

impl Placement {
    pub(crate) fn from_setting(value: &str) -> Placement {
        match value.trim().parse::<u32>() {
            Ok(0) => Placement::Cpu,
            Ok(n) => Placement::GpuLayers(n),
            Err(_) => Placement::Auto,
        }
    }

    pub(crate) fn worker_arg(self) -> String {
        match self {
            Placement::Auto => "auto".into(),
            Placement::Cpu => "0".into(),
            Placement::GpuLayers(n) => n.to_string(),
        }
    }
}

/// What the manager needs besides settings.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// The `hearth` executable, which runs the embedded engine as `hearth worker`.
    pub worker_program: PathBuf,
    /// Where installed GGUF files are looked up by name.
    pub models_dir: PathBuf,
    /// How long a worker may take to start and load.
    pub worker_ready_timeout: Duration,
}

impl ManagerOptions {
    pub fn new(worker_program: impl Into<PathBuf>) -> Self {
        Self {
            worker_program: worker_program.into(),
            models_dir: hearth_core::paths::models_dir(),
            worker_ready_timeout: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("{0} is not configured: add a [{0}] section with its url to the settings")]
    NotConfigured(BackendKind),
    #[error("{backend}: {error}")]
    Backend { backend: BackendKind, error: BackendError },
    #[error("no backend could answer ({})", summary(attempts))]
    AllFailed { attempts: Vec<(BackendKind, BackendError)> },
    #[error(
        "the reply from {backend} broke off ({error}); the {chars} characters received are saved, marked incomplete"
    )]
    Interrupted {
        backend: BackendKind,
        error: BackendError,
        chars: usize,
    },
    #[error("chat history: {0}")]
    Store(#[from] StoreError),
    #[error("there is no reply to regenerate: send a message first")]
    NothingToRegenerate,
    #[error("message {} is not in this conversation", .0 .0)]
    MessageNotFound(MessageId),
    #[error("message {} is a reply: only your own messages can be edited (regenerate a reply instead)", .0 .0)]
    NotAUserMessage(MessageId),
}

fn summary(attempts: &[(BackendKind, BackendError)]) -> String {
    attempts
        .iter()
        .map(|(kind, e)| format!("{kind}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ManagerError {
    /// The backend error behind this one, when there is exactly one.
    pub fn backend_error(&self) -> Option<&BackendError> {
        match self {
            ManagerError::Backend { error, .. } | ManagerError::Interrupted { error, .. } => Some(error),
            ManagerError::AllFailed { attempts } => attempts.last().map(|(_, e)| e),
            _ => None,
        }
    }
}

/// The seed's errors.count, retries and fallbacks, plus cooldowns started.
#[derive(Debug, Default)]
pub struct Counters {
    pub errors: AtomicU64,
    pub retries: Arc<AtomicU64>,
    pub fallbacks: AtomicU64,
    pub cooldowns: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CountersSnapshot {
    pub errors: u64,
    pub retries: u64,
    pub fallbacks: u64,
    pub cooldowns: u64,
}

/// Stops the reply in progress (the stop button, Esc, Ctrl-C).
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<(AtomicBool, Notify)>);

impl StopSignal {
    pub fn stop(&self) {
        self.0 .0.store(true, Ordering::Release);
        self.0 .1.notify_one();
    }

    pub(crate) fn reset(&self) {
        self.0 .0.store(false, Ordering::Release);
    }

    pub(crate) async fn stopped(&self) {
        while !self.0 .0.load(Ordering::Acquire) {
            self.0 .1.notified().await;
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    pub backend: BackendKind,
    pub model: String,
    pub load_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SwitchReport {
    pub from: BackendKind,
    pub to: BackendKind,
    pub model: String,
    /// From the call to the new backend being ready (loading included when it was not).
    pub switch_ms: f64,
    pub preserved_context: bool,
    /// Turns the next reply will see.
    pub messages_carried: usize,
}

/// One finished turn.
#[derive(Debug, Clone, Serialize)]
pub struct TurnReport {
    /// `None` when chat history is off (the database failed; see [`ManagerHealth::history`]).
    pub session: Option<SessionId>,
    /// Whether the reply reached the database.
    pub saved: bool,
    pub backend: BackendKind,
    pub model: String,
    pub text: String,
    pub metrics: GenerationMetrics,
    /// Retries made before the reply started, over every backend tried.
    pub retries: u32,
    /// Backends given up on before this one answered.
    pub fallbacks: u32,
    /// The user's message, as saved (`None` with history off).
    pub user_message: Option<MessageId>,
    /// The reply, as saved (`None` with history off, or when nothing came).
    pub message: Option<MessageId>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendStatus {
    pub backend: BackendKind,
    pub configured: bool,
    pub loaded_model: Option<String>,
    /// Where the loaded model runs, when its backend says (the embedded engine does).
    pub placement: Option<crate::ModelPlacement>,
    pub health: Option<Health>,
    pub cooling_secs: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManagerHealth {
    pub active: BackendKind,
    /// The active backend's readiness.
    pub ready: bool,
    pub reason: Option<String>,
    pub backends: Vec<BackendStatus>,
    /// Why chat history is off for this run, when it is.
    pub history: Option<String>,
}
