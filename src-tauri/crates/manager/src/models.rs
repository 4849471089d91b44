//! Finding the model a backend should load: an installed GGUF file for the embedded
//! engine, a `name:tag` for Ollama.

use std::path::{Path, PathBuf};

use hearth_core::{BackendError, ErrorCode};

/// `name:quantization` for servers that tag models that way (Ollama), unless the name
/// already carries a tag.
pub(crate) fn with_quantization(name: &str, quantization: Option<&str>) -> String {
    match quantization {
        Some(q) if !name.contains(':') => format!("{name}:{q}"),
        _ => name.to_owned(),
    }
}

/// An installed GGUF file: a path, or the file whose name contains `name` (and
/// `quantization`, when given), case-insensitively; exactly one must match.
pub fn resolve_model_file(dir: &Path, name: &str, quantization: Option<&str>) -> Result<PathBuf, BackendError> {
    let as_path = Path::new(name);
    if as_path.is_file() {
        return Ok(as_path.to_path_buf());
    }
    if let Some(found) = hearth_core::stores::find_foreign(name) {
        return Ok(found.path);
    }
    let wanted = name.trim_end_matches(".gguf").to_ascii_lowercase();
    let quant = quantization.map(str::to_ascii_lowercase);
    let matches: Vec<PathBuf> = hearth_core::paths::gguf_files_in(dir)
        .map_err(|e| BackendError::Failed {
            code: ErrorCode::ModelNotFound,
            message: format!(
                "model {name:?} is not installed: cannot read {} ({e}); `make models` installs the defaults",
                dir.display()
            ),
        })?
        .into_iter()
        .filter(|p| {
            let file = p
                .file_name()
                .map(|f| f.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            file.contains(&wanted) && quant.as_ref().is_none_or(|q| file.contains(q.as_str()))
        })
        .collect();
    let mut matches = matches;
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => Err(BackendError::Failed {
            code: ErrorCode::ModelNotFound,
            message: format!(
                "no installed model matches {name:?} in {}: `hearth models` lists what is installed (`make models` installs the defaults)",
                dir.display()
            ),
        }),
        _ => Err(BackendError::InvalidRequest {
            param: Some("model".into()),
            message: format!(
                "{name:?} matches {} installed files ({}); name one exactly or give the quantization",
                matches.len(),
                matches
                    .iter()
                    .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
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
    fn installed_models_are_found_by_name_and_quantization() {
        let dir = dir_with(&["Qwen3-0.6B-Q4_K_M.gguf", "Qwen3-0.6B-Q8_0.gguf", "notes.txt"]);
        let found = |name, quant| resolve_model_file(dir.path(), name, quant);
        assert_eq!(
            found("qwen3", Some("q8_0")).expect("one match"),
            dir.path().join("Qwen3-0.6B-Q8_0.gguf")
        );
        assert_eq!(
            found("Qwen3-0.6B-Q4_K_M.gguf", None).expect("exact name"),
            dir.path().join("Qwen3-0.6B-Q4_K_M.gguf")
        );
        let ambiguous = found("qwen3", None).expect_err("two match");
        assert!(
            ambiguous.to_string().contains("matches 2 installed files"),
            "{ambiguous}"
        );
        let missing = found("llama", None).expect_err("none");
        assert_eq!(missing.code(), ErrorCode::ModelNotFound);
        assert!(missing.to_string().contains("hearth models"), "{missing}");
        let path = dir.path().join("Qwen3-0.6B-Q8_0.gguf");
        assert_eq!(found(&path.to_string_lossy(), Some("ignored")).expect("a path"), path);
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
