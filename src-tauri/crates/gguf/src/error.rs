//! Errors from reading a GGUF file.
//!
//! Each variant is a distinct thing the user can act on (pick another file,
//! download again, update Hearth), so the UI can branch on the variant while
//! the `Display` text is already a complete sentence naming the file and the
//! remedy.

use std::path::PathBuf;

/// Which part of the file a [`GgufError::Truncated`] ran out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    /// The header (magic, counts, metadata, tensor descriptions) is cut short.
    Header,
    /// The header is whole but the tensor data it describes runs past the end.
    TensorData,
}

/// Why a file could not be read as a GGUF model.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// Nothing exists at the path.
    #[error("{}: no such file; check the path, or download the model again", path.display())]
    NotFound { path: PathBuf },

    /// The path is a folder.
    #[error("{} is a folder, not a model file; choose the .gguf file inside it", path.display())]
    IsDirectory { path: PathBuf },

    /// The path is a device, pipe or socket: reading it could block forever.
    #[error("{} is not a regular file (a device, pipe or socket); choose a .gguf model file", path.display())]
    NotAFile { path: PathBuf },

    /// The file has no bytes at all.
    #[error("{} is empty (0 bytes): the download failed or was interrupted; download it again", path.display())]
    Empty { path: PathBuf },

    /// The file does not start with the GGUF magic.
    #[error("{}: this file {looks_like}, not a GGUF model; choose a .gguf model file (llama.cpp format)", path.display())]
    NotGguf {
        path: PathBuf,
        /// What the file appears to be instead, as a verb phrase
        /// ("starts with text", "is a ZIP archive ...").
        looks_like: String,
    },

    /// The GGUF version is not 2 or 3.
    #[error("{} is GGUF version {version}, which Hearth cannot read (only versions 2 and 3): {hint}", path.display())]
    UnsupportedVersion {
        path: PathBuf,
        version: u32,
        /// What to do about it (depends on whether the file is older or newer).
        hint: String,
    },

    /// The file ends before the structures it declares.
    #[error(
        "{} is cut short: the file is {file_size} bytes but it needs {needed} to hold {what}: the download was cut short; fetch it again",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        section: Section,
        file_size: u64,
        /// Bytes the file would need to hold what it declares.
        needed: u64,
        /// What did not fit ("its tensors", "the value of metadata 'X'").
        what: String,
    },

    /// The header holds values no valid model has.
    #[error("{} is damaged or not a valid model: {detail} (at byte {offset}); download it again or choose another file", path.display())]
    Corrupt {
        path: PathBuf,
        /// Byte offset near where the problem was found.
        offset: u64,
        detail: String,
    },

    /// The header reads, but holds a hyperparameter no model has or that the llama.cpp
    /// Hearth runs cannot load (0 layers, a million experts, a vocabulary entry that is
    /// not text). llama.cpp checks many of these with assertions that abort the whole
    /// process, so they are refused here, by name.
    #[error("{} is not a valid model: {detail}; download it again or choose another file", path.display())]
    Invalid {
        path: PathBuf,
        /// The metadata key holding the value ("llama.block_count").
        key: String,
        /// What is wrong, naming the key and the value ("llama.block_count is 0 ...").
        detail: String,
    },

    /// The operating system refused to read the file.
    #[error("{} could not be read ({source}); check that the file is readable and the disk is attached", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl GgufError {
    /// The file the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            GgufError::NotFound { path }
            | GgufError::IsDirectory { path }
            | GgufError::NotAFile { path }
            | GgufError::Empty { path }
            | GgufError::NotGguf { path, .. }
            | GgufError::UnsupportedVersion { path, .. }
            | GgufError::Truncated { path, .. }
            | GgufError::Corrupt { path, .. }
            | GgufError::Invalid { path, .. }
            | GgufError::Io { path, .. } => path,
        }
    }
}
