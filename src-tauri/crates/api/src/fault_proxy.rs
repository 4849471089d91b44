//! A TCP proxy on loopback that breaks HTTP exchanges on purpose: the faults a client of
//! a model server meets (reset mid-stream, a server that stalls, a stream cut short,
//! 500, 429 with `Retry-After`), injected in front of a real server. The retry,
//! fallback and cooldown tests and `hearth bench switch` drive real clients through it.
//!
//! One request per connection: the proxy asks the server to close after each answer, so
//! every request meets the next queued fault. It records each request's line and body.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What happens to the next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forwarded unchanged.
    Pass,
    /// The connection is reset before any answer.
    Reset,
    /// The answer is forwarded up to the end of its first streamed event with text,
    /// then the connection is reset: a failure after the first token.
    ResetAfterFirstToken,
    /// The request is read and never answered.
    Stall,
    /// Only the status line and headers are forwarded, then the connection closes.
    CloseAfterHead,
    /// Answered here with this status (and `Retry-After`, when given), in OpenAI's error shape.
    Status { code: u16, retry_after: Option<u32> },
}

/// A request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// e.g. `POST /v1/chat/completions HTTP/1.1`.
    pub line: String,
    pub body: String,
    pub fault: Fault,
}

#[derive(Default)]
struct Shared {
    faults: Mutex<VecDeque<Fault>>,
    seen: Mutex<Vec<SeenRequest>>,
    connections: AtomicUsize,
}

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accept_shared = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            let mut open = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                accept_shared.connections.fetch_add(1, Ordering::AcqRel);
                let shared = Arc::clone(&accept_shared);
                // Owned by this task, so dropping the proxy also ends stalled connections.
                open.spawn(async move {
                    if let Err(e) = handle(client, upstream, &shared).await {
                        tracing::debug!(error = %e, "fault proxy connection ended");
                    }
                });
            }
        });
        Ok(FaultProxy { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues faults for the next requests, in order; after them, requests pass.
    pub fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        if let Ok(mut queue) = self.shared.faults.lock() {
            queue.extend(faults);
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Acquire)
    }

    /// Requests seen so far, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.shared.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Requests seen whose line contains `path` (e.g. `/chat/completions`).
    pub fn requests_to(&self, path: &str) -> Vec<SeenRequest> {
        self.requests().into_iter().filter(|r| r.line.contains(path)).collect()
    }
}

/// Reads one HTTP request (head and `Content-Length` body); `None` if the client left.
async fn read_request(client: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf.split_off(head_end);
    Ok(Some((head, body)))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The request head for the server: `Host` naming the server itself (as a reverse proxy
/// sends it; Hearth checks it against DNS rebinding) and `Connection: close`, so the
/// server ends the exchange after its answer.
fn for_upstream(head: &str, upstream: SocketAddr) -> String {
    let mut lines: Vec<String> = head
        .trim_end_matches("\r\n")
        .split("\r\n")
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("connection:") && !l.starts_with("host:")
        })
        .map(str::to_owned)
        .collect();
    lines.push(format!("Host: {upstream}"));
    lines.push("Connection: close".into());
    format!("{}\r\n\r\n", lines.join("\r\n"))
}

fn reset(stream: TcpStream) {
    // Linger 0: close with RST instead of FIN, as a crashed server's kernel would.
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn handle(mut client: TcpStream, upstream: SocketAddr, shared: &Shared) -> std::io::Result<()> {
    let Some((head, body)) = read_request(&mut client).await? else {
        return Ok(());
    };
    let fault = shared
        .faults
        .lock()
        .ok()
        .and_then(|mut q| q.pop_front())
        .unwrap_or(Fault::Pass);
    if let Ok(mut seen) = shared.seen.lock() {
        seen.push(SeenRequest {
            line: head.lines().next().unwrap_or_default().to_owned(),
            body: String::from_utf8_lossy(&body).into_owned(),
            fault: fault.clone(),
        });
    }
    match fault {
        Fault::Reset => {
            reset(client);
            return Ok(());
        }
        Fault::Stall => {
            // Hold the connection open and silent until the client or the proxy gives up.
            let mut sink = [0u8; 1024];
            while client.read(&mut sink).await? > 0 {}
            return Ok(());
        }
        Fault::Status { code, retry_after } => {
            let body = serde_json::json!({"error": {
                "message": format!("injected HTTP {code}"),
                "type": "server_error",
                "code": format!("injected_{code}"),
            }})
            .to_string();
            let retry = retry_after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
            let answer = format!(
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{retry}Connection: close\r\n\r\n{body}",
                body.len()
            );
            client.write_all(answer.as_bytes()).await?;
            client.shutdown().await?;
            return Ok(());
        }
        Fault::Pass | Fault::ResetAfterFirstToken | Fault::CloseAfterHead => {}
    }
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(for_upstream(&head, upstream).as_bytes()).await?;
    server.write_all(&body).await?;
    let mut seen = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut forwarded = 0;
    loop {
        let n = server.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&chunk[..n]);
        let cut = match fault {
            Fault::CloseAfterHead => find(&seen, b"\r\n\r\n").map(|i| i + 4),
            Fault::ResetAfterFirstToken => first_text_event_end(&seen),
            _ => None,
        };
        let upto = cut.unwrap_or(seen.len());
        client.write_all(&seen[forwarded..upto.max(forwarded)]).await?;
        forwarded = upto.max(forwarded);
        if cut.is_some() {
            client.flush().await?;
            if fault == Fault::CloseAfterHead {
                client.shutdown().await?;
            } else {
                reset(client);
            }
            return Ok(());
        }
    }
    client.shutdown().await?;
    Ok(())
}

/// The end of the first SSE event carrying text (`"content":"…"` or `"text":"…"`, non-empty).
fn first_text_event_end(bytes: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(bytes);
    let mut from = 0;
    while let Some(end) = text[from..].find("\n\n").map(|i| from + i + 2) {
        let event = &text[from..end];
        let has_text = ["\"content\":\"", "\"text\":\""].iter().any(|key| {
            event
                .find(key)
                .is_some_and(|i| !event[i + key.len()..].starts_with('"'))
        });
        if event.contains("data:") && has_text {
            return Some(end);
        }
        from = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cut_falls_after_the_first_event_with_text() {
        let stream = b"HTTP/1.1 200 OK\r\n\r\n1a\r\ndata: {\"delta\":{\"content\":\"\"}}\n\n\r\n20\r\ndata: {\"delta\":{\"content\":\"Hi\"}}\n\ndata: {\"delta\":{\"content\":\" there\"}}\n\n";
        let end = first_text_event_end(stream).expect("an event with text");
        assert!(String::from_utf8_lossy(&stream[..end]).ends_with("\"Hi\"}}\n\n"));
    }

    #[test]
    fn requests_name_the_server_and_ask_it_to_close() {
        let head = "POST /v1/x HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n";
        let upstream: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        assert_eq!(
            for_upstream(head, upstream),
            "POST /v1/x HTTP/1.1\r\nAccept: */*\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n"
        );
    }
}
