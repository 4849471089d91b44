//! Downloading one file of a repository: resumable across runs and restarts, checked
//! against the Hub's SHA-256 before it takes its final name.
//!
//! The file's first answer (`HEAD …/resolve/{revision}/{file}`, redirects not followed)
//! gives its version (`X-Linked-Etag`, the SHA-256 for LFS files, else `ETag`), its size
//! (`X-Linked-Size`, else `Content-Length`) and where the bytes are (the redirect). Bytes go
//! to `<name>.part`; a later run sends `Range: bytes=N-` when the part belongs to the same
//! version, and starts over when the server ignores the range (200) or the version
//! changed. A dropped connection is resumed in the same run after 1, 2 and 4 seconds.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_RANGE, ETAG, RANGE};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use url::Url;

use crate::client::{network, redirect_target, Hub};
use crate::error::HubError;
use crate::listing::{check_repo, file_name};
use crate::part::{available_space, PartFiles, PartRecord, Start};

/// What to download.
#[derive(Debug, Clone)]
pub struct PullTarget {
    pub repo: String,
    pub revision: String,
    /// The path inside the repository.
    pub file: String,
}

/// A file's version, size and where its bytes are, from its first answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub etag: String,
    pub size: u64,
    /// The SHA-256 the bytes must have (LFS files: the ETag is the hash).
    pub sha256: Option<String>,
    pub download_url: Url,
}

/// How far a download is.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub file: String,
    pub done: u64,
    pub total: u64,
    /// Over this run's transfer so far.
    pub bytes_per_sec: f64,
    /// Bytes that were already on disk when this run started.
    pub resumed_from: u64,
}

impl Progress {
    pub fn eta(&self) -> Option<Duration> {
        (self.bytes_per_sec > 0.0)
            .then(|| Duration::from_secs_f64(self.total.saturating_sub(self.done) as f64 / self.bytes_per_sec))
    }
}

/// A finished download.
#[derive(Debug, Clone, PartialEq)]
pub struct Pulled {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: Option<String>,
    pub resumed_from: u64,
    /// The server ignored a range or the version changed: the bytes on disk were dropped.
    pub restarted: bool,
    /// The file was already there with the announced size: nothing was downloaded.
    pub already_present: bool,
    /// Bytes received in this run.
    pub transferred: u64,
    pub elapsed: Duration,
}

/// Progress is reported at most this often (and once at the end).
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// `"abc"` and `W/"abc"` are both `abc`.
fn bare_etag(raw: &str) -> String {
    raw.trim().trim_start_matches("W/").trim_matches('"').to_owned()
}

fn sha256_of_etag(etag: &str) -> Option<String> {
    (etag.len() == 64 && etag.chars().all(|c| c.is_ascii_hexdigit())).then(|| etag.to_ascii_lowercase())
}

impl Hub {
    fn resolve_url(&self, target: &PullTarget) -> Result<Url, HubError> {
        check_repo(&target.repo)?;
        self.url(&format!("{}/resolve/{}/{}", target.repo, target.revision, target.file))
    }

    /// The file's version, size and download address (`HEAD` on its resolve address).
    pub async fn file_meta(&self, target: &PullTarget) -> Result<FileMeta, HubError> {
        let what = format!("{} in {} at {}", target.file, target.repo, target.revision);
        let mut url = self.resolve_url(target)?;
        let mut identity = HeaderMap::new();
        identity.insert(reqwest::header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        for _ in 0..5 {
            let response = self.send(Method::HEAD, &url, identity.clone()).await?;
            let headers = response.headers().clone();
            let linked_etag = header(&headers, "x-linked-etag").map(bare_etag);
            let linked_size = header(&headers, "x-linked-size").and_then(|s| s.parse().ok());
            if response.status().is_redirection() {
                let next = redirect_target(&url, &response)?;
                // The Hub's redirect to its storage carries the metadata; a redirect
                // without it (a renamed repository) is followed.
                if let Some(etag) = linked_etag {
                    return meta(&url, etag, linked_size, next);
                }
                url = next;
                continue;
            }
            let response = self.check_status(response, &target.repo, &what).await?;
            let etag = linked_etag.or_else(|| header(response.headers(), ETAG.as_str()).map(bare_etag));
            let size = linked_size
                .or_else(|| header(response.headers(), CONTENT_LENGTH.as_str()).and_then(|s| s.parse().ok()));
            let etag = etag.ok_or_else(|| HubError::BadResponse {
                url: url.to_string(),
                detail: "no ETag: the file's version cannot be told".into(),
            })?;
            return meta(&url, etag, size, url.clone());
        }
        Err(HubError::BadResponse {
            url: url.to_string(),
            detail: "too many redirects".into(),
        })
    }

    /// Downloads `target` into `dest_dir` under its file name. `cancel` stops it between
    /// two chunks, keeping what arrived for the next run.
    pub async fn pull(
        &self,
        target: &PullTarget,
        dest_dir: &Path,
        cancel: &AtomicBool,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<Pulled, HubError> {
        let started = Instant::now();
        let meta = self.file_meta(target).await?;
        let name = file_name(&target.file).to_owned();
        std::fs::create_dir_all(dest_dir).map_err(HubError::io(dest_dir))?;
        let files = PartFiles::for_dest(&dest_dir.join(&name));
        if std::fs::metadata(&files.dest).is_ok_and(|m| m.len() == meta.size) {
            return Ok(Pulled {
                path: files.dest,
                bytes: meta.size,
                sha256: meta.sha256,
                resumed_from: 0,
                restarted: false,
                already_present: true,
                transferred: 0,
                elapsed: started.elapsed(),
            });
        }
        let start = files.prepare(&PartRecord {
            etag: meta.etag.clone(),
            size: meta.size,
            repo: target.repo.clone(),
            revision: target.revision.clone(),
            file: target.file.clone(),
        })?;
        let resumed_from = match start {
            Start::Resume(n) => n,
            Start::Fresh | Start::Discarded => 0,
        };
        let needed = meta.size - resumed_from;
        let available = available_space(dest_dir)?;
        if available < needed {
            return Err(HubError::NoSpace {
                file: name,
                dir: dest_dir.to_path_buf(),
                needed,
                available,
            });
        }
        let mut transfer = Transfer {
            hub: self,
            target,
            meta: &meta,
            files: &files,
            name: name.clone(),
            offset: resumed_from,
            hasher: hash_prefix(&files.part, resumed_from).await?,
            restarted: start == Start::Discarded,
            resumed_from,
            transferred: 0,
            run_started: Instant::now(),
        };
        transfer.run_resuming(cancel, on_progress).await?;
        transfer.verify()?;
        files.finish()?;
        Ok(Pulled {
            path: files.dest.clone(),
            bytes: meta.size,
            sha256: meta.sha256.clone(),
            resumed_from,
            restarted: transfer.restarted,
            already_present: false,
            transferred: transfer.transferred,
            elapsed: started.elapsed(),
        })
    }
}

fn meta(url: &Url, etag: String, size: Option<u64>, download_url: Url) -> Result<FileMeta, HubError> {
    let size = size.ok_or_else(|| HubError::BadResponse {
        url: url.to_string(),
        detail: "no size (X-Linked-Size or Content-Length)".into(),
    })?;
    Ok(FileMeta {
        sha256: sha256_of_etag(&etag),
        etag,
        size,
        download_url,
    })
}

/// The hash of the first `len` bytes already on disk, to go on from.
async fn hash_prefix(part: &Path, len: u64) -> Result<Sha256, HubError> {
    if len == 0 {
        return Ok(Sha256::new());
    }
    let part = part.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let file = std::fs::File::open(&part).map_err(HubError::io(&part))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file.take(len));
        let mut hasher = Sha256::new();
        std::io::copy(&mut reader, &mut hasher).map_err(HubError::io(&part))?;
        Ok(hasher)
    })
    .await
    .map_err(|e| HubError::Io {
        path: PathBuf::new(),
        source: std::io::Error::other(e),
    })?
}

/// One download in progress: the bytes so far and their running hash.
struct Transfer<'a> {
    hub: &'a Hub,
    target: &'a PullTarget,
    meta: &'a FileMeta,
    files: &'a PartFiles,
    name: String,
    offset: u64,
    hasher: Sha256,
    restarted: bool,
    resumed_from: u64,
    transferred: u64,
    run_started: Instant,
}

impl Transfer<'_> {
    /// Runs the transfer, resuming it after a transient failure.
    async fn run_resuming(
        &mut self,
        cancel: &AtomicBool,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<(), HubError> {
        // Delays 1 s, 2 s, 4 s between tries, each resuming where the last stopped.
        let mut delays = tokio_retry::strategy::ExponentialBackoff::from_millis(2)
            .factor(500)
            .take(3);
        loop {
            match self.run(cancel, on_progress).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() => match delays.next() {
                    Some(delay) => {
                        tracing::warn!(file = %self.name, at = self.offset, error = %e, ?delay, "download interrupted; resuming");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// One request: from `offset` to the end, or to the first failure.
    async fn run(
        &mut self,
        cancel: &AtomicBool,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<(), HubError> {
        if self.offset == self.meta.size {
            return Ok(());
        }
        let response = self.request().await?;
        let url = response.url().clone();
        self.accept_start(&response)?;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(self.offset == 0)
            .append(self.offset > 0)
            .open(&self.files.part)
            .await
            .map_err(HubError::io(&self.files.part))?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, &mut file);
        let mut stream = response.bytes_stream();
        let mut last_report = Instant::now();
        let outcome = loop {
            if cancel.load(Ordering::Relaxed) {
                break Err(HubError::Cancelled {
                    file: self.name.clone(),
                });
            }
            let Some(chunk) = stream.next().await else { break Ok(()) };
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => break Err(network(&url, &e)),
            };
            if self.offset + chunk.len() as u64 > self.meta.size {
                break Err(HubError::SizeMismatch {
                    file: self.name.clone(),
                    expected: self.meta.size,
                    got: self.offset + chunk.len() as u64,
                });
            }
            if let Err(e) = out.write_all(&chunk).await {
                break Err(HubError::io(&self.files.part)(e));
            }
            self.hasher.update(&chunk);
            self.offset += chunk.len() as u64;
            self.transferred += chunk.len() as u64;
            if last_report.elapsed() >= PROGRESS_EVERY {
                last_report = Instant::now();
                on_progress(&self.progress());
            }
        };
        // What arrived stays on disk, counted in `offset`, for the next try or run.
        out.flush().await.map_err(HubError::io(&self.files.part))?;
        on_progress(&self.progress());
        if let Err(HubError::SizeMismatch { .. }) = &outcome {
            self.files.discard()?;
        }
        outcome
    }

    /// Asks for the bytes from `offset` on (a range when there are some already).
    async fn request(&self) -> Result<reqwest::Response, HubError> {
        let mut extra = HeaderMap::new();
        if self.offset > 0 {
            let range =
                HeaderValue::from_str(&format!("bytes={}-", self.offset)).map_err(|e| HubError::BadResponse {
                    url: self.meta.download_url.to_string(),
                    detail: e.to_string(),
                })?;
            extra.insert(RANGE, range);
        }
        let what = format!("{} in {}", self.target.file, self.target.repo);
        self.hub
            .send_following(Method::GET, &self.meta.download_url, extra, &self.target.repo, &what)
            .await
    }

    /// Checks where the answer's bytes start: a range must start at `offset`; a whole
    /// file instead of a range starts the transfer over.
    fn accept_start(&mut self, response: &reqwest::Response) -> Result<(), HubError> {
        match response.status() {
            StatusCode::PARTIAL_CONTENT => {
                let from = header(response.headers(), CONTENT_RANGE.as_str())
                    .and_then(|r| r.strip_prefix("bytes "))
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.parse::<u64>().ok());
                if from != Some(self.offset) {
                    return Err(HubError::BadResponse {
                        url: response.url().to_string(),
                        detail: format!("asked for bytes from {}, got Content-Range {from:?}", self.offset),
                    });
                }
            }
            _ if self.offset > 0 => {
                tracing::info!(file = %self.name, had = self.offset, "the server ignored the range and sent the whole file: starting over");
                self.offset = 0;
                self.hasher = Sha256::new();
                self.restarted = true;
            }
            _ => {}
        }
        Ok(())
    }

    fn progress(&self) -> Progress {
        let secs = self.run_started.elapsed().as_secs_f64();
        Progress {
            file: self.name.clone(),
            done: self.offset,
            total: self.meta.size,
            bytes_per_sec: if secs > 0.0 {
                self.transferred as f64 / secs
            } else {
                0.0
            },
            resumed_from: self.resumed_from,
        }
    }

    /// The whole file arrived and hashes to what the Hub announced; otherwise the part
    /// file goes (its bytes are wrong somewhere, and no range can tell where).
    fn verify(&self) -> Result<(), HubError> {
        if self.offset != self.meta.size {
            self.files.discard()?;
            return Err(HubError::SizeMismatch {
                file: self.name.clone(),
                expected: self.meta.size,
                got: self.offset,
            });
        }
        if let Some(expected) = &self.meta.sha256 {
            let actual = format!("{:x}", self.hasher.clone().finalize());
            if &actual != expected {
                self.files.discard()?;
                return Err(HubError::HashMismatch {
                    file: self.name.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_read_as_the_hub_writes_them() {
        let hash = "a".repeat(64);
        assert_eq!(bare_etag(&format!("\"{hash}\"")), hash);
        assert_eq!(bare_etag("W/\"abc\""), "abc");
        assert_eq!(sha256_of_etag(&hash), Some(hash.clone()));
        assert_eq!(sha256_of_etag("abc"), None);
    }

    #[test]
    fn time_left_follows_the_rate() {
        let mut p = Progress {
            file: "f".into(),
            done: 50,
            total: 150,
            bytes_per_sec: 10.0,
            resumed_from: 0,
        };
        assert_eq!(p.eta(), Some(Duration::from_secs(10)));
        p.bytes_per_sec = 0.0;
        assert_eq!(p.eta(), None);
    }
}
