//! Hearth's backend manager: settings (file + `HEARTH_*` environment), the backends
//! they name (embedded engine in its worker, Ollama, vLLM/OpenAI-compatible), runtime
//! switching that keeps the conversation, and retries, failover and cooldown.

mod conversation;
pub mod cooldown;
pub mod failover;
mod manager;
mod models;
pub mod placement;
pub mod registry;
mod reply_clock;
pub mod retry;
mod served;
pub mod settings;
pub mod transcript;
mod types;

pub use conversation::Conversation;
pub use failover::{Attempt, FailoverPolicy};
pub use manager::BackendManager;
pub use models::resolve_model_file;
pub use placement::ModelPlacement;
pub use registry::{BackendSpec, REGISTRY};
pub use retry::RetryPolicy;
pub use served::ServedBackend;
pub use settings::{ApiSettings, BackendKind, DownloadSettings, Settings, SettingsError};
pub use types::{
    BackendStatus, Counters, CountersSnapshot, InitReport, ManagerError, ManagerHealth, ManagerOptions, Placement,
    StopSignal, SwitchReport, TurnReport,
};
