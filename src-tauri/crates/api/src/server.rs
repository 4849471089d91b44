//! The accept loop: HTTP/1.1 connections served by hyper with limits on how long a
//! client may take. `axum::serve` sets no timer, so a client that sends its headers a
//! byte a minute, or opens keep-alive connections and never uses them, holds a task
//! and a socket for ever; on a server that many clients share, that is a way to make
//! it refuse the next one.
//!
//! Hyper's header-read timeout starts whenever the connection waits for a request's
//! head: when it opens and again after each response. It is therefore both the limit
//! on slow headers and the idle timeout between requests. It does not apply to bodies
//! or to responses, so a long streamed reply is never cut.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// How long a connection may take before it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// For a request's head to arrive, counted from when the connection opened or
    /// its previous response ended (so also the keep-alive idle timeout).
    pub header_read: Duration,
    /// After `shutdown`, for requests in flight to finish before connections close.
    pub drain: Duration,
}

impl Default for ConnectionLimits {
    /// 30 s for headers and idle (hyper's default, enough for any local client; the
    /// OpenAI Python client keeps idle connections 5 s), 5 s to drain.
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(30),
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
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read);
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
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = connections.watch(http.serve_connection(TokioIo::new(stream), service));
        tasks.spawn(async move {
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
