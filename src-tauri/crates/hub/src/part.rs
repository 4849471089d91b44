//! The partial file of a download and the record beside it that says which version of
//! the file its bytes belong to, so a later run resumes it only when the Hub still
//! serves the same bytes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::HubError;

/// `<name>.part` (the bytes so far) and `<name>.part.json` (what they belong to).
#[derive(Debug, Clone)]
pub struct PartFiles {
    pub dest: PathBuf,
    pub part: PathBuf,
    pub record: PathBuf,
}

impl PartFiles {
    pub fn for_dest(dest: &Path) -> Self {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            dest: dest.to_path_buf(),
            part: dest.with_file_name(format!("{name}.part")),
            record: dest.with_file_name(format!("{name}.part.json")),
        }
    }
}

/// What the bytes of a part file are: the Hub's ETag and size of the file they were
/// downloaded from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub etag: String,
    pub size: u64,
    pub repo: String,
    pub revision: String,
    pub file: String,
}

/// How a download starts: where the bytes already on disk leave off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Fresh,
    /// The part file holds this many bytes of the same version of the file.
    Resume(u64),
    /// A part file was there but belonged to another version (or to nothing known):
    /// it was removed.
    Discarded,
}

impl PartFiles {
    /// Keeps the part file when its record names `want`, otherwise removes it; then
    /// writes `want` as the record.
    pub fn prepare(&self, want: &PartRecord) -> Result<Start, HubError> {
        let existing = std::fs::read_to_string(&self.record)
            .ok()
            .and_then(|text| serde_json::from_str::<PartRecord>(&text).ok());
        let part_len = std::fs::metadata(&self.part).map(|m| m.len()).ok();
        let start = match (existing, part_len) {
            (Some(record), Some(len)) if record.etag == want.etag && record.size == want.size && len <= want.size => {
                Start::Resume(len)
            }
            (_, Some(_)) => {
                tracing::info!(part = %self.part.display(), "the partial file belongs to another version of the file: starting over");
                remove_if_present(&self.part)?;
                Start::Discarded
            }
            (_, None) => Start::Fresh,
        };
        let text = serde_json::to_string_pretty(want).map_err(|e| HubError::Io {
            path: self.record.clone(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(&self.record, text).map_err(HubError::io(&self.record))?;
        Ok(start)
    }

    /// Removes the part file and its record (a download that cannot be finished as it is).
    pub fn discard(&self) -> Result<(), HubError> {
        remove_if_present(&self.part)?;
        remove_if_present(&self.record)
    }

    /// Puts the finished part file in place: flushed to disk, renamed in one step (so
    /// the final name never holds a file that is not complete), the record removed.
    pub fn finish(&self) -> Result<(), HubError> {
        let file = std::fs::File::open(&self.part).map_err(HubError::io(&self.part))?;
        file.sync_all().map_err(HubError::io(&self.part))?;
        std::fs::rename(&self.part, &self.dest).map_err(HubError::io(&self.dest))?;
        if let Some(dir) = self.dest.parent() {
            // The rename itself survives a power cut only once the folder is flushed.
            if let Ok(dir) = std::fs::File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        remove_if_present(&self.record)
    }
}

fn remove_if_present(path: &Path) -> Result<(), HubError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(HubError::io(path)(e)),
        _ => Ok(()),
    }
}

/// Removes what a stopped download of `file` (a path in a repository) left in `dir`.
pub fn discard_partial(dir: &Path, file: &str) -> Result<(), HubError> {
    let name = crate::listing::file_name(file);
    PartFiles::for_dest(&dir.join(name)).discard()
}

/// Bytes the current user may still write in the file system that holds `dir`.
pub fn available_space(dir: &Path) -> Result<u64, HubError> {
    hearth_core::paths::available_space(dir).map_err(HubError::io(dir))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(etag: &str) -> PartRecord {
        PartRecord {
            etag: etag.into(),
            size: 10,
            repo: "o/r".into(),
            revision: "main".into(),
            file: "m.gguf".into(),
        }
    }

    #[test]
    fn a_part_is_kept_only_for_the_same_version() {
        let dir = tempfile::tempdir().unwrap();
        let files = PartFiles::for_dest(&dir.path().join("m.gguf"));
        assert_eq!(files.part, dir.path().join("m.gguf.part"));
        assert_eq!(files.prepare(&record("a")).unwrap(), Start::Fresh);
        std::fs::write(&files.part, b"12345").unwrap();
        assert_eq!(files.prepare(&record("a")).unwrap(), Start::Resume(5));
        assert_eq!(files.prepare(&record("b")).unwrap(), Start::Discarded);
        assert!(!files.part.exists());
        // A part without a record is of unknown origin: discarded too.
        std::fs::write(&files.part, b"12345").unwrap();
        std::fs::remove_file(&files.record).unwrap();
        assert_eq!(files.prepare(&record("b")).unwrap(), Start::Discarded);
        // Longer than the file: not the same bytes.
        std::fs::write(&files.part, b"123456789012").unwrap();
        assert_eq!(files.prepare(&record("b")).unwrap(), Start::Discarded);
    }

    #[test]
    fn finishing_renames_and_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let files = PartFiles::for_dest(&dir.path().join("m.gguf"));
        files.prepare(&record("a")).unwrap();
        std::fs::write(&files.part, b"0123456789").unwrap();
        files.finish().unwrap();
        assert_eq!(std::fs::read(&files.dest).unwrap(), b"0123456789");
        assert!(!files.part.exists() && !files.record.exists());
    }

    #[test]
    fn a_stopped_download_can_be_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let files = PartFiles::for_dest(&dir.path().join("m.gguf"));
        files.prepare(&record("a")).unwrap();
        std::fs::write(&files.part, b"123").unwrap();
        discard_partial(dir.path(), "sub/m.gguf").unwrap();
        assert!(!files.part.exists() && !files.record.exists());
        discard_partial(dir.path(), "never.gguf").unwrap();
    }

    #[test]
    fn free_space_is_read() {
        let dir = tempfile::tempdir().unwrap();
        assert!(available_space(dir.path()).unwrap() > 0);
        assert!(available_space(Path::new("/nonexistent/dir")).is_err());
    }
}
