//! Errors in OpenAI's shape (`{"error":{"message","type","param","code"}}`) with the
//! status code a client can act on. Every failure the API returns goes through here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hearth_core::{BackendError, ErrorCode};
use serde::Serialize;

/// An error response. `code` is also recorded in the errors metric.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    /// As sent: an [`ErrorCode`]'s string, or a proxied server's own code unchanged.
    pub code: String,
    pub param: Option<String>,
    pub message: String,
    pub retry_after_secs: Option<u32>,
    /// The figures behind the words, as data: a client reads these, never the message.
    /// Boxed: most errors carry none, and every `Result` of the API carries this type.
    pub details: Box<ErrorDetails>,
}

/// Fields an error carries beside OpenAI's four, for Hearth's own clients (the
/// manager reaching its worker): what a context overflow needed and had, which
/// backend was unavailable. Absent when they do not apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErrorDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needed: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

/// Marks a response as an error so the metrics layer can count it by code (as sent).
#[derive(Debug, Clone)]
pub(crate) struct CountedCode(pub String);

#[derive(Serialize)]
pub(crate) struct ErrorBody<'a> {
    pub error: ErrorObject<'a>,
}

#[derive(Serialize)]
pub(crate) struct ErrorObject<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub param: Option<&'a str>,
    pub code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u32>,
    #[serde(flatten)]
    pub details: &'a ErrorDetails,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::with_wire_code(status, kind, code.as_str().to_owned(), message)
    }

    /// With a code as another server sent it (kept as it was when passed on).
    fn with_wire_code(status: StatusCode, kind: &'static str, code: String, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            code,
            param: None,
            message: message.into(),
            retry_after_secs: None,
            details: Box::default(),
        }
    }

    pub fn invalid_request(param: Option<&str>, message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            ErrorCode::InvalidRequest,
            message,
        );
        e.param = param.map(str::to_owned);
        e
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            ErrorCode::UnsupportedMediaType,
            "the request body must be JSON, sent with `Content-Type: application/json`",
        )
    }

    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            ErrorCode::RequestTooLarge,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            ErrorCode::InvalidApiKey,
            "missing or wrong API token: send `Authorization: Bearer <token>`",
        )
    }

    pub fn host_not_allowed(host: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            ErrorCode::HostNotAllowed,
            format!("the Host header `{host}` is not allowed: use localhost or an allowed host name"),
        )
    }

    pub fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            ErrorCode::NotFound,
            format!("no route for {path}"),
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            ErrorCode::MethodNotAllowed,
            "method not allowed",
        )
    }

    pub fn queue_full(retry_after_secs: u32) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            ErrorCode::RateLimitExceeded,
            "too many requests are waiting for the model: retry later",
        );
        e.retry_after_secs = Some(retry_after_secs);
        e
    }

    pub fn overloaded(retry_after_secs: u32) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            ErrorCode::Overloaded,
            "the model stayed busy for too long: retry later",
        );
        e.retry_after_secs = Some(retry_after_secs);
        e
    }

    /// A request body that did not arrive in time; the connection is closed after it.
    pub fn body_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            ErrorCode::RequestTimeout,
            format!(
                "the request body did not arrive within {limit:?}: send the whole body (as many bytes as Content-Length says) without pausing"
            ),
        )
    }

    /// A connection beyond the server's cap, answered before its request is read.
    pub fn too_many_connections(max: usize) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            ErrorCode::TooManyConnections,
            format!("the server already has {max} connections open, its limit: close idle connections or retry later"),
        );
        e.retry_after_secs = Some(1);
        e
    }

    /// What hyper's own reply with `status` to a request head it could not take means,
    /// for the statuses it sends (`None` for others). `max_headers` and `max_head_bytes`
    /// are the limits on a head in force.
    pub(crate) fn rejected_head(status: StatusCode, max_headers: usize, max_head_bytes: usize) -> Option<Self> {
        let (code, message) = match status {
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
                ErrorCode::RequestHeaderFieldsTooLarge,
                format!(
                    "the request head is too large: at most {max_headers} header fields and {} KiB of request line and headers are accepted; send fewer or smaller headers",
                    max_head_bytes / 1024
                ),
            ),
            StatusCode::URI_TOO_LONG => (
                ErrorCode::UriTooLong,
                "the request URI is too long: shorten the path and query".to_owned(),
            ),
            StatusCode::BAD_REQUEST => (
                ErrorCode::MalformedRequest,
                "the request is not valid HTTP/1.1 (a malformed request line or header): check what the client sends"
                    .to_owned(),
            ),
            _ => return None,
        };
        Some(Self::new(status, "invalid_request_error", code, message))
    }

    /// For the body of an SSE `error` event (the status line was already sent).
    pub(crate) fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: ErrorObject {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: &self.code,
                retry_after: self.retry_after_secs,
                details: &self.details,
            },
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        let message = e.to_string();
        // An upstream server's code as it sent it: a proxy passes it on unchanged.
        let code = e.wire_code().to_owned();
        let invalid = |param: Option<String>| {
            let mut err = Self::with_wire_code(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                code.clone(),
                message.clone(),
            );
            err.param = param;
            err
        };
        match e {
            BackendError::ModelNotFound { .. } => {
                let mut err = Self::with_wire_code(StatusCode::NOT_FOUND, "invalid_request_error", code, message);
                err.param = Some("model".into());
                err
            }
            BackendError::ContextOverflow { needed, limit } => {
                let mut err = invalid(Some("messages".into()));
                err.details.needed = Some(needed);
                err.details.limit = Some(limit);
                err
            }
            BackendError::NoChatTemplate { .. } => invalid(Some("messages".into())),
            BackendError::InvalidRequest { param, .. } => invalid(param),
            BackendError::Busy { retry_after_secs, .. } => {
                let mut err = Self::with_wire_code(StatusCode::SERVICE_UNAVAILABLE, "server_error", code, message);
                err.retry_after_secs = Some(retry_after_secs);
                err
            }
            BackendError::NotLoaded | BackendError::Unavailable { .. } | BackendError::Crashed { .. } => {
                let backend = match &e {
                    BackendError::Unavailable { backend, .. } | BackendError::Crashed { backend, .. } => {
                        Some(backend.clone())
                    }
                    _ => None,
                };
                let mut err = Self::with_wire_code(StatusCode::SERVICE_UNAVAILABLE, "server_error", code, message);
                err.retry_after_secs = Some(1);
                err.details.backend = backend;
                err
            }
            BackendError::Upstream {
                status, kind, param, ..
            } => {
                // A proxied OpenAI-compatible server: keep its status, unless it is not an error status.
                let status = StatusCode::from_u16(status)
                    .ok()
                    .filter(|s| s.is_client_error() || s.is_server_error())
                    .unwrap_or(StatusCode::BAD_GATEWAY);
                let kind = match kind.as_deref() {
                    Some("invalid_request_error") => "invalid_request_error",
                    Some("authentication_error") => "authentication_error",
                    Some("rate_limit_error") => "rate_limit_error",
                    _ if status.is_client_error() => "invalid_request_error",
                    _ => "server_error",
                };
                let mut err = Self::with_wire_code(status, kind, code, message);
                err.param = param;
                if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
                    err.retry_after_secs = Some(1);
                }
                err
            }
            BackendError::Failed { .. } => {
                Self::with_wire_code(StatusCode::INTERNAL_SERVER_ERROR, "server_error", code, message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        // hyper closes a connection whose request body was not read to the end; say so.
        if self.status == StatusCode::REQUEST_TIMEOUT {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(CountedCode(self.code));
        response
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_overflow_carries_its_figures_as_fields() {
        let err = ApiError::from(BackendError::ContextOverflow {
            needed: 5000,
            limit: 4096,
        });
        let body = serde_json::to_value(err.body()).unwrap();
        assert_eq!(body["error"]["code"], "context_length_exceeded");
        assert_eq!(body["error"]["needed"], 5000);
        assert_eq!(body["error"]["limit"], 4096);
        assert!(body["error"].get("backend").is_none() && body["error"].get("retry_after").is_none());
        let busy = ApiError::queue_full(3);
        assert_eq!(serde_json::to_value(busy.body()).unwrap()["error"]["retry_after"], 3);
    }

    #[test]
    fn backend_errors_get_fitting_statuses() {
        let status = |e: BackendError| ApiError::from(e).status;
        assert_eq!(
            status(BackendError::ModelNotFound { model: "x".into() }),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(BackendError::ContextOverflow { needed: 9, limit: 4 }),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(status(BackendError::NotLoaded), StatusCode::SERVICE_UNAVAILABLE);
        let upstream = BackendError::Upstream {
            status: 404,
            code: Some("model_not_found".into()),
            kind: Some("invalid_request_error".into()),
            param: Some("model".into()),
            message: "no".into(),
        };
        let err = ApiError::from(upstream);
        assert_eq!(
            (err.status, err.code.as_str()),
            (StatusCode::NOT_FOUND, "model_not_found")
        );
        let weird = BackendError::Upstream {
            status: 200,
            code: None,
            kind: None,
            param: None,
            message: "?".into(),
        };
        assert_eq!(ApiError::from(weird).status, StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn a_proxied_server_s_own_code_is_passed_on_unchanged() {
        let foreign = ApiError::from(BackendError::Upstream {
            status: 429,
            code: Some("insufficient_quota".into()),
            kind: Some("rate_limit_error".into()),
            param: None,
            message: "out of credit".into(),
        });
        assert_eq!(foreign.code, "insufficient_quota");
        let body = serde_json::to_value(foreign.body()).expect("json");
        assert_eq!(body["error"]["code"], "insufficient_quota");
        let decode = ApiError::from(BackendError::Failed {
            code: ErrorCode::DecodeFailed,
            message: "llama_decode returned 1".into(),
        });
        assert_eq!(
            (decode.status, decode.code.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, "decode_failed")
        );
    }
}
