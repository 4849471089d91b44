//! GGUF models other tools already keep on this machine: Ollama's store and LM Studio's
//! folders. They are listed and loaded where they lie (never copied), under the names
//! those tools show, so a user of either does not download the same gigabytes twice.
//!
//! - **Ollama** (`OLLAMA_MODELS`, else `~/.ollama/models`, else the system service's
//!   `/usr/share/ollama/.ollama/models`): `manifests/<host>/<namespace>/<model>/<tag>` is an
//!   OCI manifest; its layer of media type `application/vnd.ollama.image.model` names the
//!   GGUF blob `blobs/sha256-<hex>`. Ollama shows `model:tag` for the default registry's
//!   `library` namespace, `namespace/model:tag` for other namespaces on that registry and
//!   `host/namespace/model:tag` for other hosts (`hf.co/…`).
//! - **LM Studio** (the folder named in `~/.lmstudio-home-pointer`, else `~/.lmstudio`, then
//!   the older `~/.cache/lm-studio`): `models/<publisher>/<repository>/<file>.gguf`, shown as
//!   `publisher/repository/file.gguf`. Vision projectors (`mmproj-*`) are not chat models
//!   and are left out.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Which tool a model file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    /// Hearth's own models folder.
    Hearth,
    Ollama,
    LmStudio,
}

impl ModelSource {
    pub fn label(self) -> &'static str {
        match self {
            Self::Hearth => "hearth",
            Self::Ollama => "ollama",
            Self::LmStudio => "lm studio",
        }
    }
}

/// A model file another tool keeps, under the name that tool shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredModel {
    pub name: String,
    pub path: PathBuf,
    pub source: ModelSource,
}

const OLLAMA_MODEL_LAYER: &str = "application/vnd.ollama.image.model";
const OLLAMA_DEFAULT_REGISTRY: &str = "registry.ollama.ai";

fn home() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf())
}

fn env_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Ollama's models folder: `OLLAMA_MODELS`, else the first of the usual places that exists.
pub fn ollama_dir() -> Option<PathBuf> {
    if let Some(dir) = env_dir("OLLAMA_MODELS") {
        return Some(dir);
    }
    let user = home().map(|h| h.join(".ollama/models"));
    let service = Some(PathBuf::from("/usr/share/ollama/.ollama/models"));
    [user, service].into_iter().flatten().find(|d| d.is_dir())
}

/// LM Studio's models folders that exist: the one its home pointer names (or
/// `~/.lmstudio/models`) and the older `~/.cache/lm-studio/models`.
pub fn lmstudio_dirs() -> Vec<PathBuf> {
    let Some(home) = home() else { return Vec::new() };
    let pointed = std::fs::read_to_string(home.join(".lmstudio-home-pointer"))
        .ok()
        .map(|s| PathBuf::from(s.trim()))
        .filter(|p| !p.as_os_str().is_empty());
    let current = pointed.unwrap_or_else(|| home.join(".lmstudio"));
    let mut dirs: Vec<PathBuf> = [current.join("models"), home.join(".cache/lm-studio/models")]
        .into_iter()
        .filter(|d| d.is_dir())
        .collect();
    dirs.dedup();
    dirs
}

/// Every model the other tools keep, Ollama's first, each list sorted by name. A store
/// that cannot be read is skipped (a manifest that does not parse, with a warning): it is
/// someone else's folder.
pub fn foreign_models() -> Vec<StoredModel> {
    let mut all = Vec::new();
    if let Some(dir) = ollama_dir() {
        all.extend(ollama_models(&dir));
    }
    for dir in lmstudio_dirs() {
        all.extend(lmstudio_models(&dir));
    }
    all
}

/// The foreign model called exactly `name` (as `hearth models` shows it). For Ollama a
/// name without a tag means `:latest`, as in Ollama itself.
pub fn find_foreign(name: &str) -> Option<StoredModel> {
    let wanted = name.trim();
    let with_latest = (!wanted.contains(':')).then(|| format!("{wanted}:latest"));
    foreign_models()
        .into_iter()
        .find(|m| m.name == wanted || with_latest.as_deref() == Some(m.name.as_str()))
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Layer>,
}

#[derive(Deserialize)]
struct Layer {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
}

/// The models in an Ollama store (`dir` holds `manifests/` and `blobs/`).
pub fn ollama_models(dir: &Path) -> Vec<StoredModel> {
    let manifests = dir.join("manifests");
    let mut found = Vec::new();
    for path in files_under(&manifests, 4) {
        let Ok(relative) = path.strip_prefix(&manifests) else {
            continue;
        };
        let parts: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let [host, namespace, model, tag] = parts.as_slice() else {
            continue;
        };
        let Some(blob) = ollama_model_blob(dir, &path) else {
            continue;
        };
        let name = match (host.as_str(), namespace.as_str()) {
            (OLLAMA_DEFAULT_REGISTRY, "library") => format!("{model}:{tag}"),
            (OLLAMA_DEFAULT_REGISTRY, ns) => format!("{ns}/{model}:{tag}"),
            (host, ns) => format!("{host}/{ns}/{model}:{tag}"),
        };
        found.push(StoredModel {
            name,
            path: blob,
            source: ModelSource::Ollama,
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// The GGUF blob a manifest names, when the manifest parses and the blob is there.
fn ollama_model_blob(store: &Path, manifest: &Path) -> Option<PathBuf> {
    let text = match std::fs::read_to_string(manifest) {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!(manifest = %manifest.display(), error = %e, "cannot read an Ollama manifest");
            return None;
        }
    };
    let parsed: Manifest = match serde_json::from_str(&text) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(manifest = %manifest.display(), error = %e, "an Ollama manifest is not JSON Hearth can read");
            return None;
        }
    };
    let layer = parsed.layers.iter().find(|l| l.media_type == OLLAMA_MODEL_LAYER)?;
    // Digests are `sha256:<hex>`; blob files are named `sha256-<hex>`.
    let file = layer.digest.replacen(':', "-", 1);
    if file.contains('/') || file.contains("..") {
        return None;
    }
    let blob = store.join("blobs").join(file);
    blob.is_file().then_some(blob)
}

/// The GGUF models in an LM Studio models folder (`publisher/repository/file.gguf`).
pub fn lmstudio_models(dir: &Path) -> Vec<StoredModel> {
    let mut found: Vec<StoredModel> = files_under(dir, 3)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("gguf")))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().to_ascii_lowercase().starts_with("mmproj"))
        })
        .filter_map(|p| {
            let relative = p.strip_prefix(dir).ok()?;
            (relative.components().count() == 3).then(|| StoredModel {
                name: relative.to_string_lossy().into_owned(),
                path: p.clone(),
                source: ModelSource::LmStudio,
            })
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// Regular files exactly `depth` folders below `root` (symbolic links followed), sorted.
fn files_under(root: &Path, depth: usize) -> Vec<PathBuf> {
    let mut level = vec![root.to_path_buf()];
    for _ in 1..depth {
        level = level
            .iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
    }
    let mut files: Vec<PathBuf> = level
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn manifest(digest: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:00","size":2}},
            "layers":[{{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:aa","size":1}},
                      {{"mediaType":"{OLLAMA_MODEL_LAYER}","digest":"{digest}","size":4}}]}}"#
        )
    }

    #[test]
    fn ollama_names_follow_ollama() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path();
        write(&store.join("blobs/sha256-1111"), "GGUF");
        write(&store.join("blobs/sha256-2222"), "GGUF");
        write(&store.join("blobs/sha256-3333"), "GGUF");
        write(
            &store.join("manifests/registry.ollama.ai/library/smollm2/135m"),
            &manifest("sha256:1111"),
        );
        write(
            &store.join("manifests/registry.ollama.ai/someone/tiny/q4"),
            &manifest("sha256:2222"),
        );
        write(
            &store.join("manifests/hf.co/owner/repo-GGUF/Q4_K_M"),
            &manifest("sha256:3333"),
        );
        // A manifest whose blob was removed, one that is not JSON, one without a model layer.
        write(
            &store.join("manifests/registry.ollama.ai/library/gone/latest"),
            &manifest("sha256:9999"),
        );
        write(
            &store.join("manifests/registry.ollama.ai/library/broken/latest"),
            "{not json",
        );
        write(
            &store.join("manifests/registry.ollama.ai/library/embed/latest"),
            r#"{"layers":[{"mediaType":"application/vnd.ollama.image.license","digest":"sha256:1111"}]}"#,
        );
        let models = ollama_models(store);
        let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["hf.co/owner/repo-GGUF:Q4_K_M", "smollm2:135m", "someone/tiny:q4"]
        );
        assert_eq!(models[1].path, store.join("blobs/sha256-1111"));
        assert!(models.iter().all(|m| m.source == ModelSource::Ollama));
    }

    #[test]
    fn lmstudio_lists_models_not_projectors() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            &root.join("lmstudio-community/Qwen3-8B-GGUF/Qwen3-8B-Q4_K_M.gguf"),
            "GGUF",
        );
        write(
            &root.join("lmstudio-community/Qwen3-8B-GGUF/mmproj-Qwen3-8B-F16.gguf"),
            "GGUF",
        );
        write(&root.join("lmstudio-community/Qwen3-8B-GGUF/README.md"), "#");
        write(&root.join("stray.gguf"), "GGUF");
        let models = lmstudio_models(root);
        assert_eq!(models.len(), 1);
        assert_eq!(models[0].name, "lmstudio-community/Qwen3-8B-GGUF/Qwen3-8B-Q4_K_M.gguf");
        assert_eq!(models[0].source, ModelSource::LmStudio);
    }

    #[test]
    fn a_missing_store_lists_nothing() {
        assert!(ollama_models(Path::new("/nonexistent/ollama")).is_empty());
        assert!(lmstudio_models(Path::new("/nonexistent/lmstudio")).is_empty());
    }
}
