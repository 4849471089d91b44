//! What can go wrong getting a model, each worded with what to do about it.

use std::path::PathBuf;

/// Bytes in gigabytes with two decimals, as the error messages show them.
pub fn gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("downloads are turned off (`downloads.enabled = false` in settings, or HEARTH_DOWNLOADS=off): turn them on to get models from {endpoint}")]
    Disabled { endpoint: String },
    #[error("{repo} is gated or private and {endpoint} refused access ({status}): accept its terms on the Hub, then set HF_TOKEN to an access token of yours")]
    Unauthorized {
        repo: String,
        endpoint: String,
        status: u16,
    },
    #[error("{what} was not found on {endpoint} (404): check the repository name and the file (`hearth pull REPO` lists its files)")]
    NotFound { what: String, endpoint: String },
    #[error("{url} answered {status}: {detail}")]
    Status { url: String, status: u16, detail: String },
    #[error("cannot reach {url}: {detail}. Check the network connection, or HF_ENDPOINT if you use a mirror")]
    Network { url: String, detail: String },
    #[error("{url} answered something Hearth cannot use: {detail}")]
    BadResponse { url: String, detail: String },
    #[error("{file} needs {} free in {} but only {} is available: free some space or set HEARTH_MODELS_DIR to a bigger disk", gb(*needed), dir.display(), gb(*available))]
    NoSpace {
        file: String,
        dir: PathBuf,
        needed: u64,
        available: u64,
    },
    #[error("the downloaded bytes of {file} do not match the Hub's SHA-256 (expected {expected}, got {actual}); the partial file was removed: run the download again")]
    HashMismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{file}: the server sent {got} bytes where the Hub announced {expected}; the partial file was removed: run the download again")]
    SizeMismatch { file: String, expected: u64, got: u64 },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the download of {file} was stopped; run it again to resume from where it stopped")]
    Cancelled { file: String },
    #[error("{repo} has no GGUF file matching {wanted:?}{}", if candidates.is_empty() { String::new() } else { format!(": it has {}", candidates.join(", ")) })]
    NoMatch {
        repo: String,
        wanted: String,
        candidates: Vec<String>,
    },
    #[error("{wanted:?} matches several files in {repo} ({}): name one exactly", candidates.join(", "))]
    Ambiguous {
        repo: String,
        wanted: String,
        candidates: Vec<String>,
    },
    #[error("the header of {file} cannot be read: {source}")]
    Header {
        file: String,
        source: hearth_gguf::GgufError,
    },
}

impl HubError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    /// Worth another try a moment later: the connection dropped, timed out, or the
    /// server had a passing failure.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Network { .. } => true,
            Self::Status { status, .. } => matches!(status, 408 | 429 | 500 | 502 | 503 | 504),
            _ => false,
        }
    }
}
