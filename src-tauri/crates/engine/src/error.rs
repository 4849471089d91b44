use std::path::PathBuf;

use hearth_core::ErrorCode;

/// Everything that can go wrong in the engine, phrased so a user knows what to do.
///
/// llama.cpp's own errors are mapped here once, at the boundary; nothing above
/// the engine sees a llama-cpp-2 type.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The file is missing, unreadable or not a valid GGUF model (checked before
    /// llama.cpp sees it, because llama.cpp trusts headers and aborts on some).
    #[error(transparent)]
    InvalidModel(#[from] hearth_gguf::GgufError),

    /// llama.cpp refused a file that passed the header check.
    #[error("llama.cpp could not load {path}: {reason}. The file may use an architecture or quantization this build does not support; try another GGUF file")]
    LoadFailed { path: PathBuf, reason: String },

    #[error(
        "could not create an inference context of {n_ctx} tokens for {path}: {reason}. Try a smaller context size"
    )]
    ContextFailed { path: PathBuf, n_ctx: u32, reason: String },

    #[error("the prompt needs {needed} tokens but the context holds {limit}: shorten the conversation, start a new chat, or load the model with a larger context")]
    ContextOverflow { needed: u32, limit: u32 },

    #[error("{model} has no chat template (it is a base model): use plain completion (`hearth generate`) or choose an instruction-tuned model")]
    NoChatTemplate { model: String },

    #[error("the chat template of {model} could not format this conversation: {reason}")]
    TemplateFailed { model: String, reason: String },

    #[error("invalid settings: {0}")]
    InvalidSettings(String),

    #[error(transparent)]
    InvalidSampling(#[from] hearth_core::SamplingParamsError),

    #[error("decoding failed: {0}")]
    DecodeFailed(String),

    #[error("the engine thread has stopped; load the model again")]
    EngineStopped,

    /// A scratch file (the reference's log-probabilities in a two-pass evaluation).
    #[error("{0}: check that the temporary folder ($TMPDIR) has free space")]
    ScratchFile(String),
}

impl EngineError {
    /// A stable, machine-readable code for the UI and the HTTP API.
    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::InvalidModel(_) => ErrorCode::InvalidModel,
            EngineError::LoadFailed { .. } => ErrorCode::LoadFailed,
            EngineError::ContextFailed { .. } => ErrorCode::ContextFailed,
            // The same code as the API and every backend give it (OpenAI's).
            EngineError::ContextOverflow { .. } => ErrorCode::ContextLengthExceeded,
            EngineError::NoChatTemplate { .. } => ErrorCode::NoChatTemplate,
            EngineError::TemplateFailed { .. } => ErrorCode::TemplateFailed,
            EngineError::InvalidSettings(_) => ErrorCode::InvalidSettings,
            EngineError::InvalidSampling(_) => ErrorCode::InvalidSampling,
            EngineError::DecodeFailed(_) => ErrorCode::DecodeFailed,
            EngineError::EngineStopped => ErrorCode::EngineStopped,
            EngineError::ScratchFile(_) => ErrorCode::ScratchFile,
        }
    }
}
