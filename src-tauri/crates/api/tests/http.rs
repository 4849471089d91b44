//! The API over real sockets: a client that hangs up mid-stream cancels its
//! generation, and an oversized body gets 413 on the wire.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_api::testing::ScriptedBackend;
use hearth_api::{router, ApiConfig, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start() -> (u16, Arc<ScriptedBackend>, Arc<Metrics>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let backend = Arc::new(ScriptedBackend::new());
    let metrics = Arc::new(Metrics::new());
    let app = router(backend.clone(), ApiConfig::new(port), Arc::clone(&metrics));
    tokio::spawn(hearth_api::serve(listener, app, std::future::pending()));
    (port, backend, metrics)
}

fn request(port: u16, path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Waits until `done` holds, failing after `limit`.
async fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_mid_stream_cancels_the_generation() {
    let (port, backend, metrics) = start().await;
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let body = r#"{"model":"scripted","messages":[{"role":"user","content":"forever"}],"stream":true}"#;
    socket
        .write_all(request(port, "/v1/chat/completions", body).as_bytes())
        .await
        .expect("send");
    // Read until several content chunks arrived: the generation is running.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while String::from_utf8_lossy(&seen).matches("la ").count() < 5 {
        let n = socket.read(&mut buf).await.expect("read");
        assert!(n > 0, "the server closed the stream");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    assert_eq!((metrics.active_generations(), backend.live_streams()), (1, 1));
    drop(socket);
    wait_for(Duration::from_secs(5), "the generation to stop", || {
        metrics.active_generations() == 0 && backend.live_streams() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_megabyte_body_gets_413() {
    let (port, backend, _) = start().await;
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let size = 10 << 20;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.expect("send");
    let (mut reader, mut writer) = socket.into_split();
    // The server may answer and close before it has read everything: ignore write errors.
    let sender = tokio::spawn(async move {
        let chunk = vec![b'a'; 64 * 1024];
        for _ in 0..(size / chunk.len()) {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"code\":\"request_too_large\""), "{text}");
    sender.abort();
    assert_eq!(backend.started(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_before_a_whole_reply_cancels_it_too() {
    let (port, backend, metrics) = start().await;
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let body = r#"{"model":"scripted","messages":[{"role":"user","content":"forever"}]}"#;
    socket
        .write_all(request(port, "/v1/chat/completions", body).as_bytes())
        .await
        .expect("send");
    wait_for(Duration::from_secs(5), "the generation to start", || {
        backend.live_streams() == 1
    })
    .await;
    drop(socket);
    // hyper notices the closed connection and drops the handler, and with it the stream.
    wait_for(Duration::from_secs(5), "the generation to stop", || {
        metrics.active_generations() == 0 && backend.live_streams() == 0
    })
    .await;
}
