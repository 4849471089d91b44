//! A Hub on 127.0.0.1 that speaks Hugging Face's protocol as its documentation and its
//! own client (`huggingface_hub`) use it, serving real files from disk: the tree listing
//! (`/api/models/{repo}/tree/{revision}`), model search (`/api/models?search=`), and
//! `…/resolve/{revision}/{file}`, which answers a model file as the Hub does, with a 302 to
//! its storage address carrying `X-Linked-Etag` (the SHA-256) and `X-Linked-Size`, where
//! ranges get 206. Gated repositories answer 401 without the token, unknown ones 404.
//!
//! Tests make it misbehave the ways real networks and servers do: a connection cut
//! after some bytes, a server that ignores ranges, a slow link, a new version of a file,
//! bytes that do not match their hash. Every request is logged with its `Range`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sha2::{Digest, Sha256};

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorized: bool,
    /// Body bytes sent (for file bytes; what was actually written before any cut).
    pub bytes_sent: u64,
}

#[derive(Debug, Clone)]
struct Served {
    disk: PathBuf,
    size: u64,
    sha256: String,
    /// Serve these bytes wrong (one flipped byte in the middle) while keeping the hash.
    corrupt: bool,
}

#[derive(Default)]
struct Inner {
    /// repo → path in repo → file.
    repos: BTreeMap<String, BTreeMap<String, Served>>,
    gated: BTreeMap<String, String>,
    ignore_range: bool,
    /// Cut the next file transfer after this many body bytes.
    cut_after: Option<u64>,
    /// Bytes per second for file bodies.
    throttle: Option<u64>,
    log: Vec<Logged>,
    downloads: BTreeSet<String>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running server. It stops when dropped.
pub struct LocalHub {
    pub url: String,
    shared: Shared,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// The SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

impl LocalHub {
    /// Starts an empty Hub on a free port of 127.0.0.1, on a thread of its own.
    pub fn start() -> std::io::Result<Self> {
        let shared: Shared = Arc::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        // Storage on another host name (as the Hub's CDN is), so a test sees what
        // travels to it: the same socket, reached as `localhost`.
        let storage = format!("http://localhost:{}", listener.local_addr()?.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = router(shared.clone(), storage);
        std::thread::Builder::new().name("local-hub".into()).spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the local hub");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("the local hub's socket");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        })?;
        Ok(Self {
            url,
            shared,
            _stop: stop,
        })
    }

    /// Serves the file at `disk` as `repo`'s `path` (hashing it once).
    pub fn add_file(&self, repo: &str, path: &str, disk: &Path) -> std::io::Result<String> {
        let sha256 = sha256_file(disk)?;
        let size = std::fs::metadata(disk)?.len();
        lock(&self.shared).repos.entry(repo.to_owned()).or_default().insert(
            path.to_owned(),
            Served {
                disk: disk.to_path_buf(),
                size,
                sha256: sha256.clone(),
                corrupt: false,
            },
        );
        Ok(sha256)
    }

    /// Requests for `repo` need `Authorization: Bearer <token>`.
    pub fn gate(&self, repo: &str, token: &str) {
        lock(&self.shared).gated.insert(repo.to_owned(), token.to_owned());
    }

    pub fn ignore_range(&self, ignore: bool) {
        lock(&self.shared).ignore_range = ignore;
    }

    /// The next file transfer stops after `bytes` body bytes, its connection dropped.
    pub fn cut_next_after(&self, bytes: u64) {
        lock(&self.shared).cut_after = Some(bytes);
    }

    /// File bodies go out at about this many bytes per second (`None`: as fast as possible).
    pub fn throttle(&self, bytes_per_sec: Option<u64>) {
        lock(&self.shared).throttle = bytes_per_sec;
    }

    /// Serves `repo`'s `path` with one byte wrong, under the hash of the right bytes.
    pub fn corrupt(&self, repo: &str, path: &str) {
        if let Some(file) = lock(&self.shared).repos.get_mut(repo).and_then(|r| r.get_mut(path)) {
            file.corrupt = true;
        }
    }

    pub fn log(&self) -> Vec<Logged> {
        lock(&self.shared).log.clone()
    }

    pub fn clear_log(&self) {
        lock(&self.shared).log.clear();
    }
}

fn router(shared: Shared, base: String) -> Router {
    Router::new()
        .route("/api/models", get(search))
        .route("/api/models/{owner}/{name}/tree/{revision}", get(tree))
        .route("/{owner}/{name}/resolve/{revision}/{*path}", get(resolve).head(resolve))
        .route("/cdn/{sha}", get(storage).head(storage))
        .with_state((shared, base))
}

type AppState = State<(Shared, String)>;

fn log(shared: &Shared, method: &Method, path: String, headers: &HeaderMap) -> usize {
    let mut inner = lock(shared);
    inner.log.push(Logged {
        method: method.to_string(),
        path,
        range: headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        authorized: headers.contains_key(header::AUTHORIZATION),
        bytes_sent: 0,
    });
    inner.log.len() - 1
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, [("x-error-code", code)], Json(json!({ "error": message }))).into_response()
}

/// `None` when the repository is open or the right token came; the 401 otherwise.
fn refused(inner: &Inner, repo: &str, headers: &HeaderMap) -> Option<Response> {
    let token = inner.gated.get(repo)?;
    let sent = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    (sent != Some(format!("Bearer {token}").as_str())).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "GatedRepo",
            &format!(
                "Access to model {repo} is restricted. You must have access to it and be authenticated to access it."
            ),
        )
    })
}

async fn search(
    State((shared, _)): AppState,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    log(
        &shared,
        &method,
        format!("/api/models?search={}", q.get("search").cloned().unwrap_or_default()),
        &headers,
    );
    let needle = q.get("search").map(|s| s.to_lowercase()).unwrap_or_default();
    let inner = lock(&shared);
    let found: Vec<_> = inner
        .repos
        .keys()
        .filter(|id| id.to_lowercase().contains(&needle))
        .map(|id| json!({ "_id": id, "id": id, "modelId": id, "downloads": 1, "likes": 0, "tags": ["gguf"] }))
        .collect();
    Json(found).into_response()
}

async fn tree(
    State((shared, _)): AppState,
    method: Method,
    headers: HeaderMap,
    UrlPath((owner, name, revision)): UrlPath<(String, String, String)>,
) -> Response {
    let repo = format!("{owner}/{name}");
    log(
        &shared,
        &method,
        format!("/api/models/{repo}/tree/{revision}"),
        &headers,
    );
    let inner = lock(&shared);
    let Some(files) = inner.repos.get(&repo) else {
        return error(StatusCode::NOT_FOUND, "RepoNotFound", "Repository not found");
    };
    if let Some(refusal) = refused(&inner, &repo, &headers) {
        return refusal;
    }
    let entries: Vec<_> = files
        .iter()
        .map(|(path, f)| {
            json!({ "type": "file", "oid": &f.sha256[..40], "size": f.size, "path": path,
                    "lfs": { "oid": f.sha256, "size": f.size, "pointerSize": 134 } })
        })
        .collect();
    Json(entries).into_response()
}

async fn resolve(
    State((shared, base)): AppState,
    method: Method,
    headers: HeaderMap,
    UrlPath((owner, name, revision, path)): UrlPath<(String, String, String, String)>,
) -> Response {
    let repo = format!("{owner}/{name}");
    log(&shared, &method, format!("/{repo}/resolve/{revision}/{path}"), &headers);
    let inner = lock(&shared);
    let Some(files) = inner.repos.get(&repo) else {
        return error(StatusCode::NOT_FOUND, "RepoNotFound", "Repository not found");
    };
    if let Some(refusal) = refused(&inner, &repo, &headers) {
        return refusal;
    }
    let Some(file) = files.get(&path) else {
        return error(
            StatusCode::NOT_FOUND,
            "EntryNotFound",
            &format!("{path} does not exist on \"{revision}\""),
        );
    };
    // As the Hub answers an LFS file: a redirect to the storage, the metadata on it.
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, format!("{base}/cdn/{}", file.sha256))
        .header("x-linked-etag", format!("\"{}\"", file.sha256))
        .header("x-linked-size", file.size)
        .header("x-repo-commit", "0".repeat(40))
        .header(header::ETAG, format!("\"{}\"", &file.sha256[..40]))
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `bytes=N-` or `bytes=N-M`, within `size`.
fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let (from, to) = value.strip_prefix("bytes=")?.split_once('-')?;
    let from: u64 = from.parse().ok()?;
    let to: u64 = if to.is_empty() {
        size - 1
    } else {
        to.parse::<u64>().ok()?.min(size - 1)
    };
    (from <= to && from < size).then_some((from, to))
}

async fn storage(
    State((shared, _)): AppState,
    method: Method,
    headers: HeaderMap,
    UrlPath(sha): UrlPath<String>,
) -> Response {
    let index = log(&shared, &method, format!("/cdn/{sha}"), &headers);
    let (file, ignore_range, cut, throttle) = {
        let mut inner = lock(&shared);
        let file = inner
            .repos
            .values()
            .flat_map(|r| r.values())
            .find(|f| f.sha256 == sha)
            .cloned();
        let cut = if method == Method::GET {
            inner.cut_after.take()
        } else {
            None
        };
        (file, inner.ignore_range, cut, inner.throttle)
    };
    let Some(file) = file else {
        return error(StatusCode::NOT_FOUND, "NoSuchKey", "The specified key does not exist.");
    };
    lock(&shared).downloads.insert(sha.clone());
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| !ignore_range);
    let (status, from, to) = match range {
        Some(r) => match parse_range(r, file.size) {
            Some((from, to)) => (StatusCode::PARTIAL_CONTENT, from, to),
            None => {
                return Response::builder()
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{}", file.size))
                    .body(Body::empty())
                    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
            }
        },
        None => (StatusCode::OK, 0, file.size - 1),
    };
    let length = to - from + 1;
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, length)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{}\"", file.sha256));
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(header::CONTENT_RANGE, format!("bytes {from}-{to}/{}", file.size));
    }
    if method == Method::HEAD {
        return builder
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let body = Body::from_stream(file_body(file, from, length, cut, throttle, shared, index));
    builder
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The bytes `from..from+length` of the file in 64 KiB chunks, paced and cut as asked.
fn file_body(
    file: Served,
    from: u64,
    length: u64,
    cut: Option<u64>,
    throttle: Option<u64>,
    shared: Shared,
    index: usize,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    const CHUNK: u64 = 64 * 1024;
    let flip_at = file.corrupt.then_some(file.size / 2);
    futures_util::stream::unfold((0u64, None::<std::fs::File>), move |(sent, handle)| {
        let file = file.clone();
        let shared = shared.clone();
        async move {
            if sent >= length {
                return None;
            }
            if cut.is_some_and(|c| sent >= c) {
                return Some((
                    Err(std::io::Error::other("the local hub cut the connection")),
                    (length, None),
                ));
            }
            let mut handle = match handle {
                Some(h) => h,
                None => match std::fs::File::open(&file.disk) {
                    Ok(mut h) => {
                        if let Err(e) = h.seek(SeekFrom::Start(from)) {
                            return Some((Err(e), (length, None)));
                        }
                        h
                    }
                    Err(e) => return Some((Err(e), (length, None))),
                },
            };
            let mut n = CHUNK.min(length - sent);
            if let Some(c) = cut {
                n = n.min(c - sent);
            }
            let mut buf = vec![0u8; n as usize];
            if let Err(e) = handle.read_exact(&mut buf) {
                return Some((Err(e), (length, None)));
            }
            if let Some(at) = flip_at {
                let start = from + sent;
                if (start..start + n).contains(&at) {
                    buf[(at - start) as usize] ^= 0xff;
                }
            }
            if let Some(rate) = throttle {
                tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate.max(1) as f64)).await;
            }
            if let Some(entry) = lock(&shared).log.get_mut(index) {
                entry.bytes_sent += n;
            }
            Some((Ok(Bytes::from(buf)), (sent + n, Some(handle))))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_writes_them() {
        assert_eq!(parse_range("bytes=0-", 10), Some((0, 9)));
        assert_eq!(parse_range("bytes=4-6", 10), Some((4, 6)));
        assert_eq!(parse_range("bytes=4-60", 10), Some((4, 9)));
        assert_eq!(parse_range("bytes=10-", 10), None);
        assert_eq!(parse_range("items=0-1", 10), None);
    }
}
