//! The one error every command returns: a stable `code` the UI can branch on and a
//! `message` that says what to do. Errors of the crates below are mapped here, once:
//! where a crate's words speak of flags or API routes, the app's words (Settings) are
//! written here, and the UI shows `message` as it is (it adds no words of its own).

use hearth_core::BackendError;
use hearth_manager::{ManagerError, SettingsError};
use hearth_store::StoreError;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, specta::Type, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("{message}")]
pub struct AppError {
    /// Machine-readable: `model_not_found`, `invalid_settings`, `busy`, `backend_unavailable`, …
    pub code: String,
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
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
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
        let mut e = Self::new("invalid_settings", format!("`{field}`: {problem}"));
        e.field = Some(field.to_owned());
        e
    }

    /// Something the UI asked for that does not exist (a session, a message).
    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        Self::new(
            "not_found",
            format!("{what} {id} does not exist (it may have been deleted): reload the list"),
        )
    }

    pub fn busy() -> Self {
        Self::new(
            "busy",
            "A reply is being generated: wait for it or stop it, then try again",
        )
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new("internal", format!("{e}; see the log file for details"))
    }
}

impl From<BackendError> for AppError {
    fn from(e: BackendError) -> Self {
        let message = match &e {
            // By code: the embedded backend's resolver reports a missing file as a
            // `model_not_found` failure with the folder it looked in; Ollama and
            // OpenAI-compatible servers as `ModelNotFound`.
            _ if e.code() == "model_not_found" => format!("Model file missing: choose another in Settings ({e})"),
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
            BackendError::Failed { code, message } if code == "decode_failed" => {
                format!("{message}: retry; if it happens again, lower the context size in Settings")
            }
            // The crates' own words already say what to do.
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

impl From<ManagerError> for AppError {
    fn from(e: ManagerError) -> Self {
        match e {
            ManagerError::Settings(e) => e.into(),
            ManagerError::NotConfigured(kind) => Self::new(
                "not_configured",
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
                "nothing_to_regenerate",
                "There is no reply to regenerate: send a message first",
            ),
            ManagerError::MessageNotFound(id) => Self::not_found("message", id.0),
            ManagerError::NotAUserMessage(_) => Self::new(
                "invalid_request",
                "Only your own messages can be edited: use regenerate for a reply",
            ),
            // AllFailed and Interrupted already say what happened and what was kept.
            other => {
                let code = other
                    .backend_error()
                    .map_or("generation_failed", BackendError::code)
                    .to_owned();
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
            _ if e.is_history_disabling() => Self::new("history_unavailable", e.to_string()),
            _ => Self::new("history_error", e.to_string()),
        }
    }
}

impl From<SettingsError> for AppError {
    fn from(e: SettingsError) -> Self {
        let message = e
            .problems
            .iter()
            .map(|p| format!("`{}`: {}", crate::commands::settings::view_field(&p.key), p.message))
            .collect::<Vec<_>>()
            .join("; ");
        let mut error = Self::new("invalid_settings", message);
        error.field = e
            .problems
            .first()
            .map(|p| crate::commands::settings::view_field(&p.key));
        error
    }
}

impl From<hearth_gguf::GgufError> for AppError {
    fn from(e: hearth_gguf::GgufError) -> Self {
        Self::new("invalid_model", e.to_string())
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
        assert_eq!(e.code, "model_not_found");
        assert!(
            e.message.contains("Model file missing: choose another in Settings"),
            "{}",
            e.message
        );
        assert!(e.message.contains("x.gguf"), "{}", e.message);
        // And the one a server answers with (Ollama: not pulled; OpenAI: 404).
        let e: AppError = BackendError::ModelNotFound { model: "llama3".into() }.into();
        assert_eq!(e.code, "model_not_found");
        assert!(e.message.contains("choose another in Settings"), "{}", e.message);
    }

    #[test]
    fn store_errors_keep_their_advice() {
        let e: AppError = StoreError::NotFound {
            what: "session",
            id: "abc".into(),
        }
        .into();
        assert_eq!(e.code, "not_found");
        assert!(e.message.contains("abc"));
    }

    #[test]
    fn every_backend_error_says_what_to_do_in_the_app() {
        let unreachable: AppError = BackendError::Unavailable {
            backend: "ollama".into(),
            cause: "connection refused".into(),
        }
        .into();
        assert_eq!(unreachable.code, "backend_unavailable");
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
            code: "decode_failed".into(),
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
        let cases: Vec<(ManagerError, &str, &str)> = vec![
            (
                ManagerError::NotConfigured(BackendKind::Ollama),
                "not_configured",
                "enter its URL in Settings",
            ),
            (
                ManagerError::NothingToRegenerate,
                "nothing_to_regenerate",
                "send a message first",
            ),
            (ManagerError::MessageNotFound(id), "not_found", "message 7"),
            (ManagerError::NotAUserMessage(id), "invalid_request", "use regenerate"),
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
                "busy",
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
                "backend_crashed",
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
        assert_eq!(e.code, "invalid_settings");
        assert_eq!(e.field.as_deref(), Some("ctx"));
        assert_eq!(e.message, "`ctx`: must be at least 256; `ollamaUrl`: is not a URL");
        let through: AppError = ManagerError::Settings(SettingsError {
            file: "s.toml".into(),
            problems: vec![],
        })
        .into();
        assert_eq!(through.code, "invalid_settings");
        let invalid = AppError::invalid_field("temperature", "must be 0 or more");
        assert_eq!(
            (invalid.code.as_str(), invalid.field.as_deref()),
            ("invalid_settings", Some("temperature"))
        );
    }

    #[test]
    fn a_bad_model_file_and_a_request_error_keep_their_details() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("empty.gguf");
        std::fs::write(&path, b"").expect("write");
        let e: AppError = hearth_gguf::read(&path).expect_err("an empty file").into();
        assert_eq!(e.code, "invalid_model");
        let bad: AppError = BackendError::InvalidRequest {
            param: Some("top_p".into()),
            message: "top_p must be in (0, 1]".into(),
        }
        .into();
        assert_eq!(
            (bad.code.as_str(), bad.field.as_deref()),
            ("invalid_request", Some("top_p"))
        );
        let template: AppError = BackendError::NoChatTemplate { model: "gemma".into() }.into();
        assert!(
            template.message.contains("instruction-tuned model in Settings"),
            "{}",
            template.message
        );
        assert_eq!(AppError::busy().code, "busy");
        assert!(AppError::internal("boom").message.contains("see the log file"));
        let history: AppError = hearth_store::StoreError::InvalidInput("bad".into()).into();
        assert_eq!(history.code, "history_error");
    }
}
