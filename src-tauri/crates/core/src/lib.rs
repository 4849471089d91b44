//! Types every Hearth crate shares. Nothing here knows about llama.cpp, HTTP or
//! Tauri: the engine, the API server, the store and the UI all speak these.

pub mod backend;
mod error_code;
mod generation;
pub mod gpu_layers;
pub mod logging;
mod message;
pub mod paths;
pub mod resolve;
mod sampling;
pub mod stores;

pub use backend::{Backend, BackendError, Changes, EventStream, GenerateRequest, Health, ModelDescriptor, Prompt};
pub use error_code::ErrorCode;
pub use generation::{FinishReason, GenerationEvent, GenerationMetrics, PromptFormat};
pub use gpu_layers::fewer_gpu_layers;
pub use message::{ChatMessage, Role};
pub use resolve::{resolve_model, ResolveError};
pub use sampling::{SamplingParams, SamplingParamsError};

/// The most sequences one engine serves at once (`--parallel`, the app's setting).
pub const MAX_PARALLEL: u32 = 64;

/// `auto` sequences never plan more: on a CPU a batch of many sequences is no longer
/// cheap (each row costs compute), and four is what a person, an editor and a script
/// use at once.
pub const AUTO_PARALLEL_MOST: u32 = 4;
