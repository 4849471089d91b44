//! What Ollama's errors mean to the caller: an error body or stream line mapped to a
//! `BackendError` it can act on, and what Hearth refuses before asking Ollama.

use hearth_core::{BackendError, ErrorCode};
use ollama_rs::error::InternalOllamaError;

/// A request with a logit bias: Ollama has no such option, and dropping it silently
/// would return a reply the caller did not ask for.
pub(super) fn no_logit_bias(backend: &str) -> BackendError {
    BackendError::InvalidRequest {
        param: Some("logit_bias".into()),
        message: format!(
            "{backend} is an Ollama server, and Ollama has no logit_bias: leave it out, or use the embedded engine or an OpenAI-compatible server"
        ),
    }
}

pub(super) fn truncated(text: &str, max_chars: usize) -> String {
    let mut shown: String = text.chars().take(max_chars).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown
}

/// The message of an error body: Ollama's `{"error": "…"}`, else the start of the body.
pub(super) fn error_message(status: Option<u16>, body: &str) -> String {
    match serde_json::from_str::<InternalOllamaError>(body) {
        Ok(e) => e.message,
        Err(_) => {
            let status = status.map_or_else(String::new, |s| format!("HTTP {s}: "));
            format!("{status}{}", truncated(body.trim(), 200))
        }
    }
}

/// Maps an error Ollama reported, as an HTTP error answer (`status`) or as an
/// `{"error": …}` line of a reply stream (`status` None), to what the caller can act on.
pub(super) fn ollama_error(backend: &str, status: Option<u16>, message: String, model: &str) -> BackendError {
    let lower = message.to_lowercase();
    // `model "x" not found, try pulling it first` (older versions: `model 'x' not found`).
    if lower.contains("model") && lower.contains("not found") {
        return BackendError::ModelNotFound {
            model: model.to_owned(),
        };
    }
    if let Some(e) = context_error(&lower, status, &message) {
        return e;
    }
    match status {
        Some(400) => BackendError::InvalidRequest { param: None, message },
        // OLLAMA_MAX_QUEUE reached: "server busy, please try again".
        Some(503) if lower.contains("busy") => BackendError::Busy {
            backend: backend.to_owned(),
            retry_after_secs: 1,
        },
        Some(status) => BackendError::Upstream {
            status,
            code: None,
            kind: None,
            param: None,
            message,
        },
        None => BackendError::Failed {
            code: ErrorCode::OllamaError,
            message,
        },
    }
}

/// Ollama words context errors differently across versions ("the input length exceeds the
/// context length", "prompt is too long"); the counts are kept when the message has both.
fn context_error(lower: &str, status: Option<u16>, message: &str) -> Option<BackendError> {
    let about_context = lower.contains("context") && (lower.contains("exceed") || lower.contains("too long"));
    if !about_context && !lower.contains("prompt is too long") {
        return None;
    }
    let numbers: Vec<u32> = lower
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    if let [needed, limit] = numbers[..] {
        if needed > limit {
            return Some(BackendError::ContextOverflow { needed, limit });
        }
    }
    let message = message.to_owned();
    Some(match status {
        Some(status) => BackendError::Upstream {
            status,
            code: Some(ErrorCode::ContextLengthExceeded.as_str().to_owned()),
            kind: None,
            param: None,
            message,
        },
        None => BackendError::Failed {
            code: ErrorCode::ContextLengthExceeded,
            message,
        },
    })
}
