//! Hearth's inference engine: llama.cpp (through llama-cpp-2) behind a small,
//! safe API. Load a GGUF model, format chats with the model's own template,
//! sample with the usual parameters, stream UTF-8-correct text from a dedicated
//! decode thread, cancel promptly, and measure every generation.
//!
//! Multi-turn chats reuse the KV cache of the conversation so far, so a
//! follow-up turn only evaluates its new tokens. The KV cache starts small and grows
//! with the conversation, up to the configured context size. Replies that repeat
//! the context are decoded several tokens per step (see `draft`).

mod chat_format;
mod config;
mod context;
mod decode_thread;
mod devices;
mod draft;
mod engine;
mod error;
mod eval;
mod generation;
mod llama_backend;
mod modules;
mod prompt;
mod quantize;
mod reply;
mod sampler;
mod scheduler;
mod stop;
mod trace;
mod utf8;

pub use config::{default_threads, EngineConfig, LayerFallback, LoadProgress, MAX_CONTEXT, MAX_PARALLEL};
pub use context::INITIAL_CONTEXT;
pub use devices::{devices, resolve_device, Device, DeviceChoice};
pub use draft::MAX_DRAFT;
pub use engine::{
    CancelToken, Engine, Generation, GenerationOutput, GenerationRequest, ModelInfo, Prompt, TracedOutput,
};
pub use error::EngineError;
pub use eval::{
    evaluate, log_sum_exp, score_against_spooled, score_position, spool_position, summarize, windows, EvalReport,
    PositionScore, Reference, ReferenceSpool, SpooledPosition, TAIL_CUT,
};
pub use llama_backend::gpu_offload_supported;
pub use modules::{gpu_modules, module_dirs, GpuModule, GPU_MODULES};
pub use quantize::{
    is_unquantized, quantize_file, QuantType, QuantizeError, QuantizeOptions, QuantizeProgress, QuantizeReport,
};
pub use scheduler::{StepPlan, DOCUMENT_CHUNK_DECODE_STEPS, MIN_PROMPT_CHUNK};
pub use trace::{TokenTrace, MAX_TRACE_TOP};
