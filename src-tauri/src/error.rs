//! The one error every command returns: a stable `code` the UI can branch on and a
//! `message` that says what to do. Errors of the crates below are mapped here, once:
//! where a crate's words speak of flags or API routes, the app's words (Settings) are
//! written here, and the UI shows `message` as it is (it adds no words of its own).

use hearth_core::{BackendError, ErrorCode};
use hearth_manager::{ManagerError, SettingsError};
use hearth_store::StoreError;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, specta::Type, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("{message}")]
pub struct AppError {
    /// Machine-readable: the UI decides by it where the user can act.
    pub code: ErrorCode,
    /// For the user, with what to do about it.
    pub message: String,
    /// The settings field at fault (the view's camelCase name), for `invalid_settings`.
    pub field: Option<String>,
    /// A context overflow's tokens needed and the context's size.
    pub needed: Option<u32>,
    pub limit: Option<u32>,
    /// When a busy or restarting backend may be asked again.
    pub retry_after_secs: Option<u32>,
    /// The backend the error is about, when it is about one.
    pub backend: Option<String>,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            needed: None,
            limit: None,
            retry_after_secs: None,
            backend: None,
        }
    }

    /// A settings field with a bad value; `field` is the name the UI uses (camelCase).
    pub fn invalid_field(field: &str, problem: impl std::fmt::Display) -> Self {
        let mut e = Self::new(ErrorCode::InvalidSettings, format!("`{field}`: {problem}"));
        e.field = Some(field.to_owned());
        e
    }

    /// Something the UI asked for that does not exist (a session, a message).
    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorCode::NotFound,
            format!("{what} {id} does not exist (it may have been deleted): reload the list"),
        )
    }

    pub fn busy() -> Self {
        Self::new(
            ErrorCode::Busy,
            "A reply is being generated: wait for it or stop it, then try again",
        )
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::Internal, format!("{e}; see the log file for details"))
    }
}

impl From<BackendError> for AppError {
    fn from(e: BackendError) -> Self {
        let message = match &e {
            // By code: the embedded backend's resolver reports a missing file as a
            // `model_not_found` failure with the folder it looked in; Ollama and
            // OpenAI-compatible servers as `ModelNotFound`.
            _ if e.code() == ErrorCode::ModelNotFound => format!("Model file missing: choose another in Settings ({e})"),
            BackendError::NotLoaded => "No model is loaded yet: wait for loading to finish, or choose a model in Settings".into(),
            BackendError::NoChatTemplate { model } => format!(
                "{model} is a base model without a chat template: choose an instruction-tuned model in Settings"
            ),
            BackendError::ContextOverflow { needed, limit } => format!(
                "The conversation needs {needed} tokens but the context holds {limit}: start a new chat, or raise the context size in Settings"
            ),
            BackendError::Unavailable { backend, cause } => format!(
                "{backend} is not reachable ({cause}): start it, or check its URL in Settings, then retry"
            ),
            BackendError::Failed {
                code: ErrorCode::DecodeFailed,
                message,
            } => {
                format!("{message}: retry; if it happens again, lower the context size in Settings")
            }
            // The crates' own words already say what to do; a server that sent none
            // gets the app's words for its code.
            _ if e.to_string().trim().is_empty() => app_words(e.code()).to_owned(),
            _ => e.to_string(),
        };
        let mut error = Self::new(e.code(), message);
        error.with_details_of(&e);
        error
    }
}

impl AppError {
    /// Copies the figures of a backend error into the fields a caller reads.
    fn with_details_of(&mut self, e: &BackendError) {
        match e {
            BackendError::ContextOverflow { needed, limit } => {
                self.needed = Some(*needed);
                self.limit = Some(*limit);
            }
            BackendError::Busy {
                backend,
                retry_after_secs,
            } => {
                self.retry_after_secs = Some(*retry_after_secs);
                self.backend = Some(backend.clone());
            }
            BackendError::Unavailable { backend, .. } | BackendError::Crashed { backend, .. } => {
                self.backend = Some(backend.clone());
            }
            BackendError::InvalidRequest { param, .. } => self.field = param.clone(),
            _ => {}
        }
    }
}

/// A bare code, worded by the app (for an error that came with no words of its own).
impl From<ErrorCode> for AppError {
    fn from(code: ErrorCode) -> Self {
        Self::new(code, app_words(code))
    }
}

/// The app's words for each code: what happened and what to do in the app. Matched
/// exhaustively, so a new code cannot reach the UI without words.
pub(crate) fn app_words(code: ErrorCode) -> &'static str {
    use ErrorCode as C;
    match code {
        C::ModelNotFound => "Model file missing: choose another in Settings",
        C::ModelNotLoaded => "No model is loaded yet: wait for loading to finish, or choose a model in Settings",
        C::ModelLoading => "The model is still loading: send again when the status says Ready",
        C::ContextLengthExceeded => {
            "The conversation is longer than the context: start a new chat, or raise the context size in Settings"
        }
        C::NoChatTemplate => {
            "The model is a base model without a chat template: choose an instruction-tuned model in Settings"
        }
        C::InvalidRequest => "The request was refused as invalid: check what was entered and try again",
        C::Busy | C::Overloaded | C::RateLimitExceeded | C::TooManyConnections => {
            "The backend is busy: wait a moment, then try again"
        }
        C::BackendUnavailable => "The backend is not reachable: start it, or check its URL in Settings, then retry",
        C::BackendCrashed => "The backend stopped unexpectedly and is being restarted: retry",
        C::UpstreamError => "The backend's server reported an error: retry, or check the server's log",
        C::GenerationFailed | C::GenerationIncomplete => "The reply could not be completed: retry",
        C::Internal => "Something went wrong inside Hearth: retry; see the log file for details",
        C::InvalidModel => "The file is not a usable GGUF model: choose another in Settings",
        C::LoadFailed => "The model could not be loaded: choose another model in Settings",
        C::ContextFailed => "The context could not be created: lower the context size in Settings",
        C::TemplateFailed => {
            "The model's chat template could not format this conversation: start a new chat or choose another model"
        }
        C::InvalidSettings => "A setting has a value Hearth cannot use: correct it in Settings",
        C::InvalidSampling => "A sampling setting is out of range: correct it in Settings",
        C::DecodeFailed => "Decoding failed: retry; if it happens again, lower the context size in Settings",
        C::EngineStopped => "The engine has stopped: load the model again from Settings",
        C::ScratchFile => "A temporary file could not be written: free space in the temporary folder",
        C::OllamaError | C::OllamaBadResponse | C::OllamaBadChunk | C::OllamaRequest => {
            "Ollama reported an error: check that it runs and its URL in Settings, then retry"
        }
        C::NotFound => "That item does not exist (it may have been deleted): reload the list",
        C::UnsupportedMediaType | C::RequestTooLarge | C::MethodNotAllowed | C::MalformedRequest => {
            "The server refused the request's form: update Hearth or the server"
        }
        C::RequestHeaderFieldsTooLarge | C::UriTooLong | C::RequestTimeout => {
            "The server refused the request's size or timing: retry"
        }
        C::InvalidApiKey | C::Unauthorized => "The server refused the token: check the token in Settings",
        C::HostNotAllowed => "The server refused the host name: use localhost or an allowed host",
        C::NotConfigured => "The backend is not configured: enter its URL in Settings first",
        C::NothingToRegenerate => "There is no reply to regenerate: send a message first",
        C::HistoryUnavailable => "Chat history is unavailable: replies still work, but are not saved",
        C::HistoryError => "Chat history could not be read or written: retry; see the log file for details",
        C::SettingsNotSaved => "Settings could not be saved: check the folder's permissions",
        C::ExportFailed => "The export could not be saved: check the free space and permissions",
        C::ModelsUnreadable => "The models folder could not be read: check its permissions",
        C::ModelExists => "A model with that name is already installed: rename the file to import it",
        C::ImportFailed => "The model could not be imported: check the free space and permissions",
        C::DevicesUnavailable => "The devices could not be listed: retry; see the log file for details",
        C::DownloadsOff => "Downloads are turned off: turn them on in Settings",
        C::Network => "The network request failed: check the connection, then retry",
        C::DiskFull => "The disk is full: free some space, then retry",
        C::CorruptDownload => "The download arrived damaged: download it again",
        C::DownloadFailed => "The download failed: retry",
        C::Cancelled => "Stopped, as asked: start it again when you want",
        C::InvalidType => "That quantization type is not known: choose one from the list",
        C::AlreadyQuantized => "The model is already quantized: choose a full-precision model",
        C::QuantizeFailed => "Quantization failed: see the log file for details",
    }
}

impl From<ManagerError> for AppError {
    fn from(e: ManagerError) -> Self {
        match e {
            ManagerError::Settings(e) => e.into(),
            ManagerError::NotConfigured(kind) => Self::new(
                ErrorCode::NotConfigured,
                format!("{kind} is not configured: enter its URL in Settings first"),
            ),
            ManagerError::Backend { backend, error } => {
                let mut inner = AppError::from(error);
                inner.message = format!("{backend}: {}", inner.message);
                inner.backend = Some(backend.to_string());
                inner
            }
            ManagerError::Store(e) => e.into(),
            ManagerError::NothingToRegenerate => Self::new(
                ErrorCode::NothingToRegenerate,
                "There is no reply to regenerate: send a message first",
            ),
            ManagerError::MessageNotFound(id) => Self::not_found("message", id.0),
            ManagerError::NotAUserMessage(_) => Self::new(
                ErrorCode::InvalidRequest,
                "Only your own messages can be edited: use regenerate for a reply",
            ),
            // AllFailed and Interrupted already say what happened and what was kept.
            other => {
                let code = other
                    .backend_error()
                    .map_or(ErrorCode::GenerationFailed, BackendError::code);
                let mut error = Self::new(code, other.to_string());
                if let Some(inner) = other.backend_error() {
                    error.with_details_of(inner);
                }
                error
            }
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::NotFound { what, id } => Self::not_found(what, id),
            _ if e.is_history_disabling() => Self::new(ErrorCode::HistoryUnavailable, e.to_string()),
            _ => Self::new(ErrorCode::HistoryError, e.to_string()),
        }
    }
}

impl From<SettingsError> for AppError {
    fn from(e: SettingsError) -> Self {
        let message = e
            .problems
            .iter()
            .map(|p| {
                format!(
                    "`{}`: {}",
                    hearth_manager::settings::schema::view_name(&p.key),
                    p.message
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let mut error = Self::new(ErrorCode::InvalidSettings, message);
        error.field = e
            .problems
            .first()
            .map(|p| hearth_manager::settings::schema::view_name(&p.key));
        error
    }
}

impl From<hearth_gguf::GgufError> for AppError {
    fn from(e: hearth_gguf::GgufError) -> Self {
        Self::new(ErrorCode::InvalidModel, e.to_string())
    }
}

pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_model_says_where_to_fix_it() {
        // The error the embedded backend really produces for a model that is not there.
        let dir = tempfile::tempdir().expect("a temporary folder");
        let error = hearth_manager::resolve_model_file(dir.path(), "x.gguf", None).expect_err("nothing is installed");
        let e: AppError = ManagerError::Backend {
            backend: hearth_manager::BackendKind::Embedded,
            error,
        }
        .into();
        assert_eq!(e.code, ErrorCode::ModelNotFound);
        assert!(
            e.message.contains("Model file missing: choose another in Settings"),
            "{}",
            e.message
        );
        assert!(e.message.contains("x.gguf"), "{}", e.message);
        // And the one a server answers with (Ollama: not pulled; OpenAI: 404).
        let e: AppError = BackendError::ModelNotFound { model: "llama3".into() }.into();
        assert_eq!(e.code, ErrorCode::ModelNotFound);
        assert!(e.message.contains("choose another in Settings"), "{}", e.message);
    }

    #[test]
    fn store_errors_keep_their_advice() {
        let e: AppError = StoreError::NotFound {
            what: "session",
            id: "abc".into(),
        }
        .into();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(e.message.contains("abc"));
    }

    #[test]
    fn every_backend_error_says_what_to_do_in_the_app() {
        let unreachable: AppError = BackendError::Unavailable {
            backend: "ollama".into(),
            cause: "connection refused".into(),
        }
        .into();
        assert_eq!(unreachable.code, ErrorCode::BackendUnavailable);
        assert_eq!(unreachable.backend.as_deref(), Some("ollama"));
        assert!(
            unreachable.message.contains("check its URL in Settings"),
            "{}",
            unreachable.message
        );
        let overflow: AppError = BackendError::ContextOverflow {
            needed: 5000,
            limit: 4096,
        }
        .into();
        assert_eq!((overflow.needed, overflow.limit), (Some(5000), Some(4096)));
        assert!(
            overflow.message.contains("raise the context size in Settings"),
            "{}",
            overflow.message
        );
        let decode: AppError = BackendError::Failed {
            code: ErrorCode::DecodeFailed,
            message: "decoding failed: llama_decode returned 1".into(),
        }
        .into();
        assert!(
            decode
                .message
                .starts_with("decoding failed: llama_decode returned 1: retry"),
            "{}",
            decode.message
        );
    }

    #[test]
    fn manager_errors_get_a_code_and_the_app_s_words() {
        use hearth_manager::BackendKind;
        let id = hearth_store::MessageId(7);
        let cases: Vec<(ManagerError, ErrorCode, &str)> = vec![
            (
                ManagerError::NotConfigured(BackendKind::Ollama),
                ErrorCode::NotConfigured,
                "enter its URL in Settings",
            ),
            (
                ManagerError::NothingToRegenerate,
                ErrorCode::NothingToRegenerate,
                "send a message first",
            ),
            (ManagerError::MessageNotFound(id), ErrorCode::NotFound, "message 7"),
            (
                ManagerError::NotAUserMessage(id),
                ErrorCode::InvalidRequest,
                "use regenerate",
            ),
            (
                ManagerError::AllFailed {
                    attempts: vec![(
                        BackendKind::Vllm,
                        BackendError::Busy {
                            backend: "vllm".into(),
                            retry_after_secs: 3,
                        },
                    )],
                },
                ErrorCode::Busy,
                "no backend could answer",
            ),
            (
                ManagerError::Interrupted {
                    backend: BackendKind::Ollama,
                    error: BackendError::Crashed {
                        backend: "ollama".into(),
                        cause: "gone".into(),
                    },
                    chars: 12,
                },
                ErrorCode::BackendCrashed,
                "the 12 characters received are saved",
            ),
        ];
        for (error, code, words) in cases {
            let e = AppError::from(error);
            assert_eq!(e.code, code, "{e:?}");
            assert!(e.message.contains(words), "{code}: {}", e.message);
        }
        let busy: AppError = ManagerError::AllFailed {
            attempts: vec![(
                BackendKind::Vllm,
                BackendError::Busy {
                    backend: "vllm".into(),
                    retry_after_secs: 3,
                },
            )],
        }
        .into();
        assert_eq!(
            (busy.retry_after_secs, busy.backend.as_deref()),
            (Some(3), Some("vllm"))
        );
        let wrapped: AppError = ManagerError::Backend {
            backend: BackendKind::Ollama,
            error: BackendError::NotLoaded,
        }
        .into();
        assert_eq!(wrapped.backend.as_deref(), Some("ollama"));
        assert!(
            wrapped.message.starts_with("ollama: No model is loaded yet"),
            "{}",
            wrapped.message
        );
    }

    #[test]
    fn a_settings_error_names_the_field_the_ui_shows() {
        let e: AppError = SettingsError {
            file: "settings.toml".into(),
            problems: vec![
                hearth_manager::settings::Problem {
                    key: "embedded.ctx".into(),
                    message: "must be at least 256".into(),
                },
                hearth_manager::settings::Problem {
                    key: "ollama.url".into(),
                    message: "is not a URL".into(),
                },
            ],
        }
        .into();
        assert_eq!(e.code, ErrorCode::InvalidSettings);
        assert_eq!(e.field.as_deref(), Some("ctx"));
        assert_eq!(e.message, "`ctx`: must be at least 256; `ollamaUrl`: is not a URL");
        let through: AppError = ManagerError::Settings(SettingsError {
            file: "s.toml".into(),
            problems: vec![],
        })
        .into();
        assert_eq!(through.code, ErrorCode::InvalidSettings);
        let invalid = AppError::invalid_field("temperature", "must be 0 or more");
        assert_eq!(
            (invalid.code, invalid.field.as_deref()),
            (ErrorCode::InvalidSettings, Some("temperature"))
        );
    }

    #[test]
    fn a_bad_model_file_and_a_request_error_keep_their_details() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("empty.gguf");
        std::fs::write(&path, b"").expect("write");
        let e: AppError = hearth_gguf::read(&path).expect_err("an empty file").into();
        assert_eq!(e.code, ErrorCode::InvalidModel);
        let bad: AppError = BackendError::InvalidRequest {
            param: Some("top_p".into()),
            message: "top_p must be in (0, 1]".into(),
        }
        .into();
        assert_eq!(
            (bad.code, bad.field.as_deref()),
            (ErrorCode::InvalidRequest, Some("top_p"))
        );
        let template: AppError = BackendError::NoChatTemplate { model: "gemma".into() }.into();
        assert!(
            template.message.contains("instruction-tuned model in Settings"),
            "{}",
            template.message
        );
        assert_eq!(AppError::busy().code, ErrorCode::Busy);
        assert!(AppError::internal("boom").message.contains("see the log file"));
        let history: AppError = hearth_store::StoreError::InvalidInput("bad".into()).into();
        assert_eq!(history.code, ErrorCode::HistoryError);
    }

    #[test]
    fn every_code_has_the_app_s_words() {
        for &code in ErrorCode::ALL {
            let e = AppError::from(code);
            assert_eq!(e.code, code);
            // Words for a person, not the code again: longer than a word, and not the code's letters.
            assert!(e.message.split_whitespace().count() > 2, "{code}: {}", e.message);
            let letters = |s: &str| s.to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "");
            assert_ne!(letters(&e.message), letters(code.as_str()), "{code}");
        }
    }

    #[test]
    fn an_error_without_words_gets_the_app_s() {
        let e: AppError = BackendError::Failed {
            code: ErrorCode::OllamaError,
            message: String::new(),
        }
        .into();
        assert_eq!(e.message, app_words(ErrorCode::OllamaError));
    }
}
