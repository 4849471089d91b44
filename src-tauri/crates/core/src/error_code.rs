//! Every machine-readable error code Hearth sends: in the OpenAI-compatible API's
//! `error.code`, a child process's error answer, a generation stream's error event and the
//! app's errors to the UI. One enum, so a code is named, never spelled: the compiler
//! finds every place that produces one, and the UI gets the list (through specta)
//! and must say what to do for each.
//!
//! The wire strings are the snake_case names, the same as before the codes became
//! data; an unknown code from another server parses to [`ErrorCode::UpstreamError`]
//! (where the original string must be passed on, as a proxy does, the caller keeps
//! it beside the code: see `BackendError::Upstream`).

use serde::{Deserialize, Deserializer, Serialize};

/// Declares the enum and its wire strings from one list, so `ALL` and `as_str` cannot
/// miss a variant (a test checks each string against serde's).
macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $wire:literal, )*) => {
        /// A stable, machine-readable error code (the snake_case name on the wire).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, specta::Type)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as sent on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $wire,)*
                }
            }
        }
    };
}

error_codes! {
    // What a model backend fails with (`BackendError`).
    /// The model asked for is not installed, pulled or served.
    ModelNotFound = "model_not_found",
    /// No model is loaded yet.
    ModelNotLoaded = "model_not_loaded",
    /// The app's model is still loading.
    ModelLoading = "model_loading",
    ContextLengthExceeded = "context_length_exceeded",
    NoChatTemplate = "no_chat_template",
    InvalidRequest = "invalid_request",
    Busy = "busy",
    BackendUnavailable = "backend_unavailable",
    BackendCrashed = "backend_crashed",
    /// Another server's error whose code Hearth does not know (or that sent none).
    UpstreamError = "upstream_error",
    /// A generation stream that reported a failure without a code of its own.
    GenerationFailed = "generation_failed",
    /// A generation stream that ended without its final event.
    GenerationIncomplete = "generation_incomplete",
    Internal = "internal",
    // The embedded engine (`EngineError`).
    InvalidModel = "invalid_model",
    LoadFailed = "load_failed",
    ContextFailed = "context_failed",
    TemplateFailed = "template_failed",
    InvalidSettings = "invalid_settings",
    InvalidSampling = "invalid_sampling",
    DecodeFailed = "decode_failed",
    EngineStopped = "engine_stopped",
    ScratchFile = "scratch_file",
    // Ollama's client.
    OllamaError = "ollama_error",
    OllamaBadResponse = "ollama_bad_response",
    OllamaBadChunk = "ollama_bad_chunk",
    OllamaRequest = "ollama_request",
    // The HTTP API's own refusals.
    NotFound = "not_found",
    UnsupportedMediaType = "unsupported_media_type",
    RequestTooLarge = "request_too_large",
    InvalidApiKey = "invalid_api_key",
    HostNotAllowed = "host_not_allowed",
    MethodNotAllowed = "method_not_allowed",
    RateLimitExceeded = "rate_limit_exceeded",
    Overloaded = "overloaded",
    RequestTimeout = "request_timeout",
    TooManyConnections = "too_many_connections",
    RequestHeaderFieldsTooLarge = "request_header_fields_too_large",
    UriTooLong = "uri_too_long",
    MalformedRequest = "malformed_request",
    // The desktop app's own failures.
    NotConfigured = "not_configured",
    NothingToRegenerate = "nothing_to_regenerate",
    HistoryUnavailable = "history_unavailable",
    HistoryError = "history_error",
    SettingsNotSaved = "settings_not_saved",
    ExportFailed = "export_failed",
    ModelsUnreadable = "models_unreadable",
    ModelExists = "model_exists",
    ImportFailed = "import_failed",
    DevicesUnavailable = "devices_unavailable",
    DownloadsOff = "downloads_off",
    Unauthorized = "unauthorized",
    Network = "network",
    DiskFull = "disk_full",
    CorruptDownload = "corrupt_download",
    DownloadFailed = "download_failed",
    Cancelled = "cancelled",
    InvalidType = "invalid_type",
    AlreadyQuantized = "already_quantized",
    QuantizeFailed = "quantize_failed",
}

impl ErrorCode {
    /// The code a string names; a code Hearth does not know (another server's) is
    /// [`ErrorCode::UpstreamError`].
    pub fn parse(code: &str) -> ErrorCode {
        Self::known(code).unwrap_or(ErrorCode::UpstreamError)
    }

    /// The code a string names, if Hearth knows it.
    pub fn known(code: &str) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorCode {
    type Err = std::convert::Infallible;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(code))
    }
}

/// Lenient, because codes cross process boundaries: a code a newer or another
/// process sends reads as `upstream_error` instead of failing the whole message.
impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(Self::parse(&code))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The strings on the wire before the codes became an enum: clients of the API and
    /// the UI compare against them, so none may change.
    const WIRE: &[&str] = &[
        "model_not_found",
        "model_not_loaded",
        "model_loading",
        "context_length_exceeded",
        "no_chat_template",
        "invalid_request",
        "busy",
        "backend_unavailable",
        "backend_crashed",
        "upstream_error",
        "generation_failed",
        "generation_incomplete",
        "internal",
        "invalid_model",
        "load_failed",
        "context_failed",
        "template_failed",
        "invalid_settings",
        "invalid_sampling",
        "decode_failed",
        "engine_stopped",
        "scratch_file",
        "ollama_error",
        "ollama_bad_response",
        "ollama_bad_chunk",
        "ollama_request",
        "not_found",
        "unsupported_media_type",
        "request_too_large",
        "invalid_api_key",
        "host_not_allowed",
        "method_not_allowed",
        "rate_limit_exceeded",
        "overloaded",
        "request_timeout",
        "too_many_connections",
        "request_header_fields_too_large",
        "uri_too_long",
        "malformed_request",
        "not_configured",
        "nothing_to_regenerate",
        "history_unavailable",
        "history_error",
        "settings_not_saved",
        "export_failed",
        "models_unreadable",
        "model_exists",
        "import_failed",
        "devices_unavailable",
        "downloads_off",
        "unauthorized",
        "network",
        "disk_full",
        "corrupt_download",
        "download_failed",
        "cancelled",
        "invalid_type",
        "already_quantized",
        "quantize_failed",
    ];

    #[test]
    fn the_wire_strings_are_unchanged_for_every_variant() {
        let strings: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(strings, WIRE);
        for code in ErrorCode::ALL {
            // serde's name (what the API, the worker and the UI's bindings see) is as_str's.
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(code.to_string(), code.as_str());
        }
    }

    #[test]
    fn every_code_round_trips_through_its_string() {
        for &code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), code);
            assert_eq!(ErrorCode::known(code.as_str()), Some(code));
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
            let back: ErrorCode = serde_json::from_str(&serde_json::to_string(&code).unwrap()).unwrap();
            assert_eq!(back, code);
        }
    }

    #[test]
    fn another_server_s_unknown_code_is_an_upstream_error() {
        assert_eq!(ErrorCode::known("insufficient_quota"), None);
        assert_eq!(ErrorCode::parse("insufficient_quota"), ErrorCode::UpstreamError);
        assert_eq!(ErrorCode::parse("Model_Not_Found"), ErrorCode::UpstreamError);
        let read: ErrorCode = serde_json::from_str("\"injected_500\"").unwrap();
        assert_eq!(read, ErrorCode::UpstreamError);
    }
}
