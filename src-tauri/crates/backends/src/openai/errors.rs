//! What an OpenAI-compatible server's errors mean, mapped once: an error answer (in
//! OpenAI's shape or vLLM's flat one, Hearth's own carrying its figures as fields), a
//! mid-stream error event, `Retry-After`.

use hearth_core::{BackendError, ErrorCode};
use serde_json::Value;

/// `Retry-After` in seconds (the delta form; an HTTP date is rare from model servers).
pub(super) fn retry_after_secs(headers: &reqwest::header::HeaderMap) -> Option<u32> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The first run of digits after `marker` in `text`.
fn number_after(text: &str, marker: &str) -> Option<u32> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let digits: String = rest.trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A context-length error as vLLM and OpenAI word it ("This model's maximum context
/// length is M tokens. However, you requested N tokens …"): they send no figures as data.
fn context_overflow(message: &str) -> Option<BackendError> {
    let needed = number_after(message, "requested")?;
    let limit = number_after(message, "maximum context length is")?;
    Some(BackendError::ContextOverflow { needed, limit })
}

/// Maps an error answer, in OpenAI's shape or vLLM's flat one, keeping status and code.
pub fn upstream_error(status: u16, body: &str) -> BackendError {
    let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let error = if value["error"].is_object() {
        &value["error"]
    } else {
        &value
    };
    let text = |key: &str| error[key].as_str().map(str::to_owned);
    let message =
        text("message").unwrap_or_else(|| format!("HTTP {status}: {}", body.chars().take(200).collect::<String>()));
    let code = text("code").or_else(|| error["code"].as_u64().map(|c| c.to_string()));
    match (status, code.as_deref()) {
        (404, Some("model_not_found")) => BackendError::ModelNotFound {
            model: text("model").unwrap_or_default(),
        },
        (503, Some("model_not_loaded")) => BackendError::NotLoaded,
        // Hearth's own API (a worker) sends the figures as fields.
        (400 | 413, Some("context_length_exceeded")) if error["needed"].is_u64() && error["limit"].is_u64() => {
            let figure = |key: &str| u32::try_from(error[key].as_u64().unwrap_or(0)).unwrap_or(u32::MAX);
            BackendError::ContextOverflow {
                needed: figure("needed"),
                limit: figure("limit"),
            }
        }
        // vLLM and OpenAI say it in words.
        (400 | 413 | 422, code) if code == Some("context_length_exceeded") || message.contains("context length") => {
            context_overflow(&message).unwrap_or(BackendError::Upstream {
                status,
                code: code.map(str::to_owned),
                kind: text("type"),
                param: text("param"),
                message,
            })
        }
        _ => BackendError::Upstream {
            status,
            code,
            kind: text("type"),
            param: text("param"),
            message,
        },
    }
}

/// A mid-stream `{"error": …}` event, mapped to what the caller can act on. Its code
/// is the server's (Hearth's worker sends `decode_failed`, `backend_crashed` …); one
/// Hearth does not know, or none, is `upstream_error`.
pub(super) fn stream_error(backend: &str, error: &Value) -> BackendError {
    let code = error["code"]
        .as_str()
        .map_or(ErrorCode::UpstreamError, ErrorCode::parse);
    let message = error["message"]
        .as_str()
        .unwrap_or("the server reported an error")
        .to_owned();
    match code {
        ErrorCode::BackendCrashed => BackendError::Crashed {
            backend: backend.to_owned(),
            cause: message,
        },
        ErrorCode::BackendUnavailable => BackendError::Unavailable {
            backend: backend.to_owned(),
            cause: message,
        },
        _ => BackendError::Failed { code, message },
    }
}
