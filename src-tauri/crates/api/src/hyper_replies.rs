//! hyper answers a request head it cannot take by itself, before any handler runs: 400
//! for a malformed request line or header, 414 for a URI too long, 431 for a head over
//! its size or header-count limit. Those answers have an empty body, where a client of
//! this API expects OpenAI's error JSON on every error. [`Explained`] wraps a
//! connection's socket and swaps such an answer, as hyper writes it, for the same
//! status with that JSON.
//!
//! A write is taken for one of hyper's answers when it is exactly a response head, with
//! one of those statuses and `content-length: 0`: the server makes hyper write each
//! flush as one buffer (`writev(false)`), hyper sends nothing after such an answer (it
//! closes the connection), and no handler of this API answers an error without a body.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::ApiError;
use crate::raw_reply::closing_response;

/// The limits on a request head hyper enforces, for the 431 message to state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimits {
    pub max_headers: usize,
    pub max_bytes: usize,
}

/// A socket whose writes of hyper's empty error answers become explained ones.
pub(crate) struct Explained<S> {
    inner: S,
    limits: HeadLimits,
    /// A replacement answer being written, and how much of it went out.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> Explained<S> {
    pub(crate) fn new(inner: S, limits: HeadLimits) -> Self {
        Self {
            inner,
            limits,
            pending: None,
        }
    }
}

impl<S: AsyncWrite + Unpin> Explained<S> {
    /// Writes what is left of a replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((reply, sent)) = self.pending.as_mut() {
            if *sent == reply.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &reply[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Explained<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Explained<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(reply) = explain(buf, this.limits) {
            this.pending = Some((reply, 0));
            // The replacement stands for all of hyper's bytes; what is not written yet is
            // written by the next call, flush or shutdown.
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// The explained answer for `written` when it is one of hyper's empty error answers,
/// keeping hyper's other header lines (its `date`).
fn explain(written: &[u8], limits: HeadLimits) -> Option<Vec<u8>> {
    let head = std::str::from_utf8(written.strip_suffix(b"\r\n\r\n")?).ok()?;
    if head.contains("\r\n\r\n") {
        return None;
    }
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let code = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))?
        .get(..3)?;
    let status = StatusCode::from_bytes(code.as_bytes()).ok()?;
    let error = ApiError::rejected_head(status, limits.max_headers, limits.max_bytes)?;
    let mut empty = false;
    let mut kept = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => empty = value.trim() == "0",
            // The explained answer sets these itself.
            "content-type" | "connection" | "transfer-encoding" => {}
            _ => kept.push(line),
        }
    }
    empty.then(|| closing_response(&error, &kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_headers: 100,
        max_bytes: 408 * 1024,
    };

    fn explained(written: &str) -> Option<String> {
        explain(written.as_bytes(), LIMITS).map(|r| String::from_utf8(r).expect("UTF-8"))
    }

    #[test]
    fn hypers_empty_error_answers_get_the_error_json() {
        let reply = explained("HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n")
            .expect("explained");
        let (head, body) = reply.split_once("\r\n\r\n").expect("head and body");
        assert!(
            head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\ndate: Thu"),
            "{head}"
        );
        assert!(!head.contains("content-length: 0"), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(json["error"]["code"], "request_header_fields_too_large");
        assert!(json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("100 header fields")));
        for status in ["400 Bad Request", "414 URI Too Long"] {
            assert!(explained(&format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n")).is_some());
        }
    }

    #[test]
    fn everything_else_passes_unchanged() {
        for written in [
            // The API's own errors have bodies.
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n",
            // Other statuses, bodies, partial heads.
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n",
            "data: HTTP/1.1 431 x\r\n\r\n",
            "",
        ] {
            assert_eq!(explained(written), None, "{written:?}");
        }
    }
}
