use serde::{Deserialize, Serialize};

use crate::ErrorCode;

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// The model ended its turn, or a stop string appeared.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// The caller cancelled.
    Cancelled,
    /// Decoding failed part-way; the text so far is kept.
    Error,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
            FinishReason::Error => "error",
        }
    }
}

/// How a chat's prompt was written for the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptFormat {
    /// The model's own Jinja template (`tokenizer.chat_template` in its GGUF file).
    ModelTemplate,
    /// The template the user chose in its place.
    UserTemplate,
    /// llama.cpp's built-in format for the model's family: the fallback where the
    /// model's template could not be followed.
    Builtin,
}

/// Figures for one generation, measured by the engine that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationMetrics {
    /// Tokens in the whole prompt (conversation so far plus the new turn).
    pub prompt_tokens: u32,
    /// Prompt tokens actually evaluated; the rest came from the reused KV cache.
    pub prompt_tokens_evaluated: u32,
    pub completion_tokens: u32,
    /// How long loading the model took (the same for every reply of a load).
    pub load_ms: f64,
    /// From the request to the first text delta.
    pub ttft_ms: f64,
    pub prompt_tps: f64,
    pub decode_tps: f64,
    pub total_ms: f64,
    pub finish_reason: FinishReason,
    /// Tokens guessed from the conversation and verified in a batch with the next one
    /// (0 where the backend does not draft).
    #[serde(default)]
    pub draft_tokens: u32,
    /// How many of those guesses the sampler agreed with (each saved one decode step).
    #[serde(default)]
    pub draft_accepted: u32,
    /// The batches this reply's tokens were decoded in: element `n - 1` counts the tokens
    /// decoded in a step that decoded `n` sequences at once (empty where unknown, as
    /// for the servers Hearth calls).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decode_batch_sequences: Vec<u32>,
    /// The steps the prompt was read in: more than one where it was read in chunks
    /// (beside other replies, or longer than a batch). 0 where unknown.
    #[serde(default)]
    pub prompt_steps: u32,
    /// For a chat: how its prompt was written (`None` for plain text, or where the
    /// backend does not say, as for the servers Hearth calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_format: Option<PromptFormat>,
}

/// What a generation stream yields, in order: any number of `Delta`s, then exactly one
/// `Done` (or one `Error` when the generation could not run or failed part-way).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GenerationEvent {
    /// New text; always whole UTF-8 characters.
    Delta {
        text: String,
    },
    Done {
        metrics: GenerationMetrics,
    },
    /// The generation failed; `code` says why (`decode_failed`, `backend_crashed` …).
    Error {
        /// Absent in events from before errors carried a code: read as `generation_failed`.
        #[serde(default = "generation_failed")]
        code: ErrorCode,
        message: String,
    },
}

/// What an error event without a code (from before events carried one) means.
fn generation_failed() -> ErrorCode {
    ErrorCode::GenerationFailed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn an_error_event_carries_its_code_and_reads_old_events() {
        let event = GenerationEvent::Error {
            code: ErrorCode::DecodeFailed,
            message: "llama_decode returned 1".into(),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "error", "code": "decode_failed", "message": "llama_decode returned 1"})
        );
        assert_eq!(serde_json::from_value::<GenerationEvent>(json).unwrap(), event);
        let old: GenerationEvent = serde_json::from_str(r#"{"type":"error","message":"boom"}"#).unwrap();
        assert_eq!(
            old,
            GenerationEvent::Error {
                code: ErrorCode::GenerationFailed,
                message: "boom".into()
            }
        );
    }
}
