//! Backends that live outside this process: any OpenAI-compatible server (vLLM,
//! llama-server, `hearth serve`), a local Ollama, and Hearth's own engine worker,
//! which the [`Supervisor`] starts, watches, restarts and stops.

mod gpu_oom;
mod http;
pub mod measure;
pub mod ollama;
mod openai;
mod supervisor;

pub use ollama::{KeepAlive, OllamaBackend, OllamaOptions};
pub use openai::{upstream_error, FailureClassifier, OpenAiBackend};
pub use supervisor::{Running, Supervisor, WorkerConfig, WorkerState};
