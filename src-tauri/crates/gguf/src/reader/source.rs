//! The bytes under the header parser: a reader that knows its position, the file size
//! and what it may still keep in memory, and refuses every read the file cannot hold.

use std::io::{self, BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::text::TextCheck;
use super::SEEK_THRESHOLD;
use crate::error::{GgufError, Section};

/// A reader that knows its position and the file size.
pub(super) struct Source<'p, R> {
    pub(super) r: R,
    pub(super) pos: u64,
    pub(super) size: u64,
    pub(super) path: &'p Path,
    /// Bytes still allowed to be kept in memory.
    pub(super) budget: u64,
}

pub(super) type Res<T> = Result<T, GgufError>;

impl<R: BufRead + Seek> Source<'_, R> {
    pub(super) fn path(&self) -> PathBuf {
        self.path.to_path_buf()
    }

    pub(super) fn corrupt(&self, detail: impl Into<String>) -> GgufError {
        GgufError::Corrupt {
            path: self.path(),
            offset: self.pos,
            detail: detail.into(),
        }
    }

    pub(super) fn truncated(&self, needed: u64, what: impl Into<String>) -> GgufError {
        GgufError::Truncated {
            path: self.path(),
            section: Section::Header,
            file_size: self.size,
            needed,
            what: what.into(),
        }
    }

    pub(super) fn remaining(&self) -> u64 {
        self.size.saturating_sub(self.pos)
    }

    /// Fails with `Truncated` unless `n` more bytes exist.
    pub(super) fn need(&self, n: u64, what: impl FnOnce() -> String) -> Res<()> {
        if n > self.remaining() {
            return Err(self.truncated(self.pos.saturating_add(n), what()));
        }
        Ok(())
    }

    pub(super) fn io_err(&self, e: io::Error, what: &str) -> GgufError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            // The file shrank while being read, or `file_size` was wrong.
            self.truncated(self.size.saturating_add(1), what.to_string())
        } else {
            GgufError::Io {
                path: self.path(),
                source: e,
            }
        }
    }

    pub(super) fn fill(&mut self, buf: &mut [u8], what: &str) -> Res<()> {
        let n = buf.len() as u64;
        self.need(n, || what.to_string())?;
        self.r.read_exact(buf).map_err(|e| self.io_err(e, what))?;
        self.pos += n;
        Ok(())
    }

    pub(super) fn array<const N: usize>(&mut self, what: &str) -> Res<[u8; N]> {
        let mut b = [0u8; N];
        self.fill(&mut b, what)?;
        Ok(b)
    }

    pub(super) fn u32(&mut self, what: &str) -> Res<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(super) fn u64(&mut self, what: &str) -> Res<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Skips `n` bytes, after checking they exist.
    pub(super) fn skip(&mut self, n: u64, what: &str) -> Res<()> {
        self.need(n, || what.to_string())?;
        if n >= SEEK_THRESHOLD {
            // `n` <= remaining < file size, which fits an i64 on every real
            // file system; fall back to an absolute seek otherwise.
            let target = self.pos + n;
            self.r.seek(SeekFrom::Start(target)).map_err(|e| self.io_err(e, what))?;
        } else {
            let mut left = n;
            while left > 0 {
                let available = match self.r.fill_buf() {
                    Ok(buf) => buf.len(),
                    Err(e) => return Err(self.io_err(e, what)),
                };
                if available == 0 {
                    return Err(self.io_err(io::ErrorKind::UnexpectedEof.into(), what));
                }
                let k = available.min(usize::try_from(left).unwrap_or(usize::MAX));
                self.r.consume(k);
                left -= k as u64;
            }
        }
        self.pos += n;
        Ok(())
    }

    /// Skips `n` bytes like [`skip`](Self::skip), but reads them all (no seek) through
    /// `check`.
    pub(super) fn skip_checked(&mut self, n: u64, what: &str, check: &mut TextCheck) -> Res<()> {
        self.need(n, || what.to_string())?;
        let mut left = n;
        while left > 0 {
            let buf = match self.r.fill_buf() {
                Ok(buf) => buf,
                Err(e) => return Err(self.io_err(e, what)),
            };
            if buf.is_empty() {
                return Err(self.io_err(io::ErrorKind::UnexpectedEof.into(), what));
            }
            let k = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            check.push(&buf[..k]);
            self.r.consume(k);
            left -= k as u64;
        }
        self.pos += n;
        Ok(())
    }

    pub(super) fn invalid(&self, key: &str, detail: String) -> GgufError {
        GgufError::Invalid {
            path: self.path(),
            key: key.to_string(),
            detail,
        }
    }

    /// Reserves `n` bytes of the memory budget; false when it is spent.
    pub(super) fn charge(&mut self, n: u64) -> bool {
        if n <= self.budget {
            self.budget -= n;
            true
        } else {
            false
        }
    }

    /// Reads a string's length and checks the bytes exist.
    pub(super) fn string_len(&mut self, what: &str) -> Res<u64> {
        let len = self.u64(what)?;
        self.need(len, || format!("{what} ({len} bytes)"))?;
        Ok(len)
    }

    /// Reads `len` bytes as text (lossy: GGUF does not promise UTF-8).
    pub(super) fn text(&mut self, len: u64, what: &str) -> Res<String> {
        // Callers cap `len` well below usize::MAX and the remaining size.
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
        self.fill(&mut buf, what)?;
        Ok(match String::from_utf8(buf) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }
}
