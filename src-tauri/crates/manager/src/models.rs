//! Finding the model a backend should load: an installed GGUF file for the embedded
//! engine, a `name:tag` for Ollama.

use std::path::{Path, PathBuf};

use hearth_core::{BackendError, ErrorCode, ResolveError};

/// `name:quantization` for servers that tag models that way (Ollama), unless the name
/// already carries a tag.
pub(crate) fn with_quantization(name: &str, quantization: Option<&str>) -> String {
    match quantization {
        Some(q) if !name.contains(':') => format!("{name}:{q}"),
        _ => name.to_owned(),
    }
}

/// An installed GGUF file for a backend to load ([`hearth_core::resolve_model`]), its
/// failure as the backend error the API and the app report.
pub fn resolve_model_file(dir: &Path, name: &str, quantization: Option<&str>) -> Result<PathBuf, BackendError> {
    hearth_core::resolve_model(dir, name, quantization).map_err(|e| match e {
        ResolveError::Ambiguous { .. } => BackendError::InvalidRequest {
            param: Some("model".into()),
            message: e.to_string(),
        },
        _ => BackendError::Failed {
            code: ErrorCode::ModelNotFound,
            message: e.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in files {
            std::fs::write(dir.path().join(f), b"GGUF").expect("write");
        }
        dir
    }

    #[test]
    fn a_model_not_found_is_the_backends_error() {
        let dir = dir_with(&["Qwen3-0.6B-Q4_K_M.gguf", "Qwen3-0.6B-Q8_0.gguf"]);
        let found = |name, quant| resolve_model_file(dir.path(), name, quant);
        assert_eq!(
            found("qwen3", Some("q8_0")).expect("one match"),
            dir.path().join("Qwen3-0.6B-Q8_0.gguf")
        );
        let ambiguous = found("qwen3", None).expect_err("two match");
        assert_eq!(ambiguous.code(), ErrorCode::InvalidRequest);
        assert!(
            ambiguous.to_string().contains("matches 2 installed files"),
            "{ambiguous}"
        );
        let missing = found("llama", None).expect_err("none");
        assert_eq!(missing.code(), ErrorCode::ModelNotFound);
        assert!(missing.to_string().contains("hearth models"), "{missing}");
    }

    #[test]
    fn ollama_names_take_the_quantization_as_their_tag() {
        assert_eq!(
            with_quantization("llama3.2", Some("1b-instruct-q4_K_M")),
            "llama3.2:1b-instruct-q4_K_M"
        );
        assert_eq!(with_quantization("llama3.2:1b", Some("q8_0")), "llama3.2:1b");
        assert_eq!(with_quantization("llama3.2", None), "llama3.2");
    }
}
