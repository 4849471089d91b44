//! Backends that live outside this process: any OpenAI-compatible server (vLLM,
//! llama-server, `hearth serve`) and Hearth's own engine worker, which the
//! [`Supervisor`] starts, watches, restarts and stops.

pub mod handshake;
pub mod measure;
mod openai;
mod supervisor;

pub use openai::{upstream_error, FailureClassifier, OpenAiBackend};
pub use supervisor::{Running, Supervisor, WorkerConfig, WorkerState};
