//! The one interface every model backend implements: the embedded engine (through
//! its worker process), Ollama, and any OpenAI-compatible server. The API server,
//! the CLI and the desktop shell talk to `dyn Backend` only, so a backend can be
//! swapped, restarted or faked in tests without their code changing.
//!
//! The trait returns boxed futures and streams (not `async fn`) so that it stays
//! object-safe: callers hold an `Arc<dyn Backend>`.

use std::future::Future;
use std::pin::Pin;

use futures_core::Stream;
use serde::{Deserialize, Serialize};

use crate::{ChatMessage, ErrorCode, GenerationEvent, SamplingParams, SamplingParamsError};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Ticks each time a backend's health or placement changed by itself: a worker
/// loading, crashing, restarting (maybe with fewer GPU layers). Whoever shows them
/// reads them again on a tick instead of asking on a timer.
pub type Changes = Pin<Box<dyn Stream<Item = ()> + Send>>;

/// A generation's events, in the order of [`GenerationEvent`]'s contract. An `Err`
/// item is a failure of the backend itself (its process died, the connection
/// broke) and is always the last item. Dropping the stream cancels the generation.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<GenerationEvent, BackendError>> + Send + 'static>>;

/// What to generate from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Prompt {
    /// A conversation, formatted by the model's own chat template.
    Chat(Vec<ChatMessage>),
    /// Raw text continued as-is (base models without a chat template).
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// The model asked for; `None` means whatever the backend has loaded.
    pub model: Option<String>,
    pub prompt: Prompt,
    pub params: SamplingParams,
}

/// A model a backend can serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDescriptor {
    pub id: String,
    pub owned_by: String,
    /// Context window in tokens, when the backend knows it.
    pub context_length: Option<u32>,
    /// Whether the model formats chats itself; `None` when unknown.
    pub has_chat_template: Option<bool>,
    /// Where it runs: "CPU" or llama.cpp's device name ("Vulkan0"); `None` when the
    /// backend does not say (Ollama, vLLM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Layers on that device (0 on the CPU), when the backend says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_layers: Option<u32>,
    /// Layers the model has, counting its output layer: what `gpu_layers` is out of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers_total: Option<u32>,
    /// Why the model runs elsewhere than asked (the GPU had no room for the layers
    /// asked for), in words, to tell the user once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_note: Option<String>,
}

/// Whether a backend can take a generation right now, and why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub ready: bool,
    /// The model loaded, if any.
    pub model: Option<String>,
    /// Why the backend is not ready (loading, crashed, no model loaded …).
    pub reason: Option<String>,
}

impl Health {
    pub fn ready(model: impl Into<String>) -> Self {
        Self {
            ready: true,
            model: Some(model.into()),
            reason: None,
        }
    }

    pub fn not_ready(reason: impl Into<String>) -> Self {
        Self {
            ready: false,
            model: None,
            reason: Some(reason.into()),
        }
    }
}

/// A model backend. Implementations are cheap to share (`Arc<dyn Backend>`).
pub trait Backend: Send + Sync + 'static {
    /// A short name for logs and errors ("engine", "worker", "ollama", a URL …).
    fn name(&self) -> &str;

    /// Loads `model` (a path for the local engine, a model name for servers),
    /// replacing any model loaded before. Returns once the model can generate.
    fn load<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<(), BackendError>>;

    /// Frees the loaded model (for the worker: the process ends, so all its memory returns).
    fn unload(&self) -> BoxFuture<'_, Result<(), BackendError>>;

    fn models(&self) -> BoxFuture<'_, Result<Vec<ModelDescriptor>, BackendError>>;

    fn health(&self) -> BoxFuture<'_, Health>;

    /// Starts a generation. Errors that can be known before decoding (unknown model,
    /// prompt too long, bad parameters, no chat template) come back here, not in the stream.
    fn generate(&self, request: GenerateRequest) -> BoxFuture<'_, Result<EventStream, BackendError>>;

    /// Its changes, for a backend whose state moves without being asked (the worker
    /// supervisor). `None` (the default): it changes only when told to (a load), or it
    /// is a server whose health must be asked.
    fn changes(&self) -> Option<Changes> {
        None
    }
}

/// Everything a backend can fail with, phrased so the caller knows what to do.
/// Each backend maps its own errors (llama.cpp, HTTP, process) into these once.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    #[error("model `{model}` is not available: use one of the models listed by GET /v1/models")]
    ModelNotFound { model: String },

    #[error("no model is loaded: load one first")]
    NotLoaded,

    #[error("the prompt needs {needed} tokens but the context holds {limit}: shorten the conversation or load the model with a larger context")]
    ContextOverflow { needed: u32, limit: u32 },

    #[error("{model} has no chat template (it is a base model): use plain completion (/v1/completions) or an instruction-tuned model")]
    NoChatTemplate { model: String },

    /// The request itself is wrong; `param` names the offending field when known.
    #[error("{message}")]
    InvalidRequest { param: Option<String>, message: String },

    #[error("{backend} is busy: retry in {retry_after_secs} s")]
    Busy { backend: String, retry_after_secs: u32 },

    /// The backend cannot be reached or is not running (starting, restarting, stopped).
    #[error("{backend} is unavailable: {cause}")]
    Unavailable { backend: String, cause: String },

    /// The backend's process died while serving this request; it is restarted.
    #[error("{backend} stopped unexpectedly ({cause}); it is being restarted, retry the request")]
    Crashed { backend: String, cause: String },

    /// An OpenAI-compatible server answered with an error; its status and code are kept
    /// so that a proxy (the worker behind `hearth serve`) passes them on unchanged:
    /// `code` is the server's own string, which may be one Hearth does not know.
    #[error("{message}")]
    Upstream {
        status: u16,
        code: Option<String>,
        kind: Option<String>,
        param: Option<String>,
        message: String,
    },

    /// Anything else, with a stable machine-readable code (e.g. the engine's `decode_failed`).
    #[error("{message}")]
    Failed { code: ErrorCode, message: String },
}

impl BackendError {
    /// A stable, machine-readable code for the UI and the HTTP API.
    /// An upstream server's code Hearth does not know is `UpstreamError` here; its
    /// string stays in `Upstream::code` (see [`BackendError::wire_code`]).
    pub fn code(&self) -> ErrorCode {
        match self {
            BackendError::ModelNotFound { .. } => ErrorCode::ModelNotFound,
            BackendError::NotLoaded => ErrorCode::ModelNotLoaded,
            BackendError::ContextOverflow { .. } => ErrorCode::ContextLengthExceeded,
            BackendError::NoChatTemplate { .. } => ErrorCode::NoChatTemplate,
            BackendError::InvalidRequest { .. } => ErrorCode::InvalidRequest,
            BackendError::Busy { .. } => ErrorCode::Busy,
            BackendError::Unavailable { .. } => ErrorCode::BackendUnavailable,
            BackendError::Crashed { .. } => ErrorCode::BackendCrashed,
            BackendError::Upstream { code, .. } => code.as_deref().map_or(ErrorCode::UpstreamError, ErrorCode::parse),
            BackendError::Failed { code, .. } => *code,
        }
    }

    /// The code to send on: an upstream server's own string as it was, else [`Self::code`]'s.
    pub fn wire_code(&self) -> &str {
        match self {
            BackendError::Upstream { code: Some(code), .. } => code,
            other => other.code().as_str(),
        }
    }

    /// Whether retrying the same request later may succeed (the manager's retry policy
    /// retries only these).
    pub fn is_transient(&self) -> bool {
        match self {
            BackendError::Busy { .. } | BackendError::Unavailable { .. } | BackendError::Crashed { .. } => true,
            BackendError::Upstream { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

impl From<SamplingParamsError> for BackendError {
    fn from(e: SamplingParamsError) -> Self {
        BackendError::InvalidRequest {
            param: Some(e.field.to_owned()),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_errors_name_the_param() {
        let err = SamplingParams {
            temperature: -1.0,
            ..Default::default()
        }
        .validate()
        .expect_err("invalid");
        let err = BackendError::from(err);
        assert_eq!(err.code(), ErrorCode::InvalidRequest);
        assert!(matches!(&err, BackendError::InvalidRequest { param: Some(p), .. } if p == "temperature"));
        assert!(!err.is_transient());
    }

    #[test]
    fn only_availability_errors_are_transient() {
        let crashed = BackendError::Crashed {
            backend: "worker".into(),
            cause: "signal 9".into(),
        };
        assert!(crashed.is_transient());
        assert_eq!(crashed.code(), ErrorCode::BackendCrashed);
        let upstream = |status| BackendError::Upstream {
            status,
            code: None,
            kind: None,
            param: None,
            message: String::new(),
        };
        assert!(upstream(503).is_transient());
        assert!(!upstream(404).is_transient());
        assert!(!BackendError::ContextOverflow { needed: 10, limit: 5 }.is_transient());
    }

    #[test]
    fn an_upstream_code_is_passed_on_as_it_was() {
        let upstream = |code: Option<&str>| BackendError::Upstream {
            status: 429,
            code: code.map(str::to_owned),
            kind: None,
            param: None,
            message: "slow down".into(),
        };
        let foreign = upstream(Some("insufficient_quota"));
        assert_eq!(foreign.code(), ErrorCode::UpstreamError);
        assert_eq!(foreign.wire_code(), "insufficient_quota");
        let known = upstream(Some("model_not_found"));
        assert_eq!(
            (known.code(), known.wire_code()),
            (ErrorCode::ModelNotFound, "model_not_found")
        );
        assert_eq!(upstream(None).wire_code(), "upstream_error");
        let failed = BackendError::Failed {
            code: ErrorCode::DecodeFailed,
            message: "x".into(),
        };
        assert_eq!(failed.wire_code(), "decode_failed");
    }

    #[test]
    fn prompts_round_trip_through_json() {
        let prompt = Prompt::Chat(vec![ChatMessage::user("hi")]);
        let json = serde_json::to_string(&prompt).expect("serialize");
        assert_eq!(serde_json::from_str::<Prompt>(&json).expect("parse"), prompt);
    }
}
