//! The one model resolver: which GGUF file a name means, for every place that takes a
//! model by name (`--model`, the settings' model, a switch to another model, the device
//! picker's plans). In order: a file that exists; a model Ollama or LM Studio keeps, by
//! the name they show (`smollm2:135m`); a model in Hearth's models folder whose file
//! name contains the name (and the quantization, when given), case-insensitively, of
//! which exactly one must match.

use std::path::{Path, PathBuf};

use crate::ErrorCode;

/// Why no file was found; each says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("model {name:?} is not installed: cannot read {} ({cause}); `make models` installs the defaults", dir.display())]
    Unreadable { name: String, dir: PathBuf, cause: String },

    #[error("the model file {} does not exist: pick another with `hearth models`, or pass the path to a .gguf file", path.display())]
    Missing { path: PathBuf },

    #[error("no installed model matches {name:?} in {}: `hearth models` lists what is installed (`make models` installs the defaults; `hearth pull` gets others)", dir.display())]
    NoMatch { name: String, dir: PathBuf },

    #[error("{name:?} matches {} installed files ({}); name one exactly or give the quantization", files.len(), files.join(", "))]
    Ambiguous { name: String, files: Vec<String> },
}

impl ResolveError {
    /// Several files match: the request must say which, so it is the request's fault.
    pub fn code(&self) -> ErrorCode {
        match self {
            ResolveError::Ambiguous { .. } => ErrorCode::InvalidRequest,
            _ => ErrorCode::ModelNotFound,
        }
    }
}

/// The file `name` means among the models in `dir` (see the module comment).
pub fn resolve_model(dir: &Path, name: &str, quantization: Option<&str>) -> Result<PathBuf, ResolveError> {
    let name = name.trim();
    let as_path = Path::new(name);
    if as_path.is_file() {
        return Ok(as_path.to_path_buf());
    }
    if let Some(found) = crate::stores::find_foreign(name) {
        return Ok(found.path);
    }
    // A path (not a bare name) that is not there: nothing to search for.
    if as_path.components().count() > 1 {
        return Err(ResolveError::Missing {
            path: as_path.to_path_buf(),
        });
    }
    let wanted = name.trim_end_matches(".gguf").to_lowercase();
    let quant = quantization.map(str::to_lowercase);
    let installed = crate::paths::gguf_files_in(dir).map_err(|e| ResolveError::Unreadable {
        name: name.to_owned(),
        dir: dir.to_path_buf(),
        cause: e.to_string(),
    })?;
    let file_name = |p: &Path| {
        p.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    // A file name given whole is that file, even where other names contain it.
    if let Some(exact) = installed.iter().find(|p| file_name(p).eq_ignore_ascii_case(name)) {
        return Ok(exact.clone());
    }
    let mut matches: Vec<PathBuf> = installed
        .into_iter()
        .filter(|p| {
            let file = file_name(p).to_lowercase();
            file.contains(&wanted) && quant.as_ref().is_none_or(|q| file.contains(q.as_str()))
        })
        .collect();
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => Err(ResolveError::NoMatch {
            name: name.to_owned(),
            dir: dir.to_path_buf(),
        }),
        _ => Err(ResolveError::Ambiguous {
            name: name.to_owned(),
            files: matches.iter().map(|p| file_name(p)).collect(),
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
        let dir = dir_with(&[
            "Qwen3-0.6B-Q4_K_M.gguf",
            "Qwen3-0.6B-Q8_0.gguf",
            "Qwen3-0.6B-Q8_0.gguf.old.gguf",
            "notes.txt",
        ]);
        let found = |name, quant| resolve_model(dir.path(), name, quant);
        assert_eq!(
            found("qwen3", Some("q4_k_m")),
            Ok(dir.path().join("Qwen3-0.6B-Q4_K_M.gguf"))
        );
        // A whole file name is that file, though another name contains it.
        assert_eq!(
            found("qwen3-0.6b-q8_0.gguf", None),
            Ok(dir.path().join("Qwen3-0.6B-Q8_0.gguf"))
        );
        let ambiguous = found("qwen3", None).expect_err("three match");
        assert_eq!(ambiguous.code(), ErrorCode::InvalidRequest);
        assert!(
            ambiguous.to_string().contains("matches 3 installed files"),
            "{ambiguous}"
        );
        let missing = found("llama", None).expect_err("none");
        assert_eq!(missing.code(), ErrorCode::ModelNotFound);
        assert!(missing.to_string().contains("hearth models"), "{missing}");
        let path = dir.path().join("Qwen3-0.6B-Q8_0.gguf");
        let text = path.to_string_lossy().into_owned();
        assert_eq!(found(&text, Some("ignored")), Ok(path));
        let gone = dir.path().join("gone.gguf");
        let text = gone.to_string_lossy().into_owned();
        let e = found(&text, None).expect_err("not there");
        assert_eq!(e, ResolveError::Missing { path: gone });
        assert!(e.to_string().contains("does not exist"), "{e}");
    }

    #[test]
    fn an_unreadable_folder_is_named() {
        let dir = dir_with(&[]);
        let file = dir.path().join("not-a-folder");
        std::fs::write(&file, b"x").expect("write");
        let e = resolve_model(&file, "smol", None).expect_err("not a folder");
        assert!(matches!(e, ResolveError::Unreadable { .. }), "{e:?}");
        assert!(e.to_string().contains("cannot read"), "{e}");
    }
}
