//! The accept loop: HTTP/1.1 connections served by hyper with limits on how long a
//! client may take and how many connections may be open. `axum::serve` sets no timer
//! and no cap, so a client that sends its headers a byte a minute, stalls in its body,
//! or opens keep-alive connections and never uses them, holds a task and a socket for
//! ever; a few hundred of them exhaust the file descriptors, and the server cannot
//! accept the next client, not even for `/health`.
//!
//! Hyper's header-read timeout starts whenever the connection waits for a request's
//! head: when it opens and again after each response. It is therefore both the limit
//! on slow headers and the idle timeout between requests. The body timeout is applied
//! where bodies are read (`extract::JsonBody`), which answers 408. Neither applies to
//! responses, so a long streamed reply is never cut.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::extract::BodyReadTimeout;
use crate::hyper_replies::{Explained, HeadLimits};
use crate::refusal::Refusals;

/// The limits on a request head, stated in the 431 answer: hyper's own defaults (100
/// header fields, a 400 KiB read buffer), set explicitly so the message stays true.
const HEAD_LIMITS: HeadLimits = HeadLimits {
    max_headers: 100,
    max_bytes: 8192 + 4096 * 100,
};

/// How long a connection may take before it is closed, and how many may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// For a request's head to arrive, counted from when the connection opened or
    /// its previous response ended (so also the keep-alive idle timeout).
    pub header_read: Duration,
    /// For a request's whole body to arrive, counted from when its handler starts to
    /// read it; a body still short then gets 408 and its connection is closed.
    pub body_read: Duration,
    /// Connections open at once; one more is answered 503 and closed. At least 1.
    pub max_connections: usize,
    /// After `shutdown`, for requests in flight to finish before connections close.
    pub drain: Duration,
}

impl Default for ConnectionLimits {
    /// 30 s for headers and idle (hyper's default, enough for any local client; the
    /// OpenAI Python client keeps idle connections 5 s), 30 s for a body (the 4 MiB
    /// limit at 140 KB/s), 5 s to drain. 128 connections: far more than the generation
    /// slots and their queue can use, and below the 256 file descriptors macOS gives a
    /// process by default, with room for the process's own files, so a crowd of stalled
    /// clients meets the cap before the descriptor limit and the server keeps answering.
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(30),
            body_read: Duration::from_secs(30),
            max_connections: 128,
            drain: Duration::from_secs(5),
        }
    }
}

/// Serves `router` on `listener` with [`ConnectionLimits::default`] until `shutdown`
/// completes, then lets requests in flight finish for up to the drain time.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, ConnectionLimits::default(), shutdown).await
}

/// [`serve`] with chosen limits.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_headers(HEAD_LIMITS.max_headers)
        .max_buf_size(HEAD_LIMITS.max_bytes)
        // One buffer per write, so `Explained` sees each of hyper's answers whole.
        .writev(false);
    let router = router.layer(Extension(BodyReadTimeout(limits.body_read)));
    // A cap of 0 would refuse everyone: never what a caller means.
    let max_connections = limits.max_connections.max(1);
    let places = Arc::new(Semaphore::new(max_connections));
    let refusals = Refusals::new(max_connections);
    let connections = GracefulShutdown::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Reap the connections that ended, so the set holds only open ones.
        while tasks.try_join_next().is_some() {}
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    wait_after_accept_error(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // The place is held until the connection's task ends, after its socket is closed.
        let Ok(place) = Arc::clone(&places).try_acquire_owned() else {
            tracing::debug!(max_connections, "refusing a connection beyond the cap");
            refusals.refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let io = TokioIo::new(Explained::new(stream, HEAD_LIMITS));
        let connection = connections.watch(http.serve_connection(io, service));
        tasks.spawn(async move {
            let _place = place;
            if let Err(e) = connection.await {
                // A client gone, a timeout or a malformed request: the connection's own
                // business, logged for whoever debugs a client.
                tracing::debug!(error = %e, timeout = e.is_timeout(), "connection closed");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, connections.shutdown())
        .await
        .is_err()
    {
        tracing::info!(drain = ?limits.drain, "requests still running at shutdown were cut");
    }
    Ok(())
}

/// Per-connection failures (the client reset before accept) are not the listener's;
/// running out of file descriptors is, and passes when connections close.
async fn wait_after_accept_error(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::warn!(error = %e, "accepting a connection failed; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
