//! Types every Hearth crate shares. Nothing here knows about llama.cpp, HTTP or
//! Tauri: the engine, the API server, the store and the UI all speak these.

pub mod backend;
mod error_code;
mod generation;
pub mod handshake;
pub mod logging;
mod message;
pub mod paths;
mod sampling;
pub mod stores;

pub use backend::{Backend, BackendError, EventStream, GenerateRequest, Health, ModelDescriptor, Prompt};
pub use error_code::ErrorCode;
pub use generation::{FinishReason, GenerationEvent, GenerationMetrics};
pub use message::{ChatMessage, Role};
pub use sampling::{SamplingParams, SamplingParamsError};

/// The most sequences one engine serves at once (`--parallel`, the app's setting).
pub const MAX_PARALLEL: u32 = 64;
