//! The API over real sockets: a client that hangs up mid-stream cancels its
//! generation; an oversized body gets 413 on the wire; a head hyper refuses by itself
//! (too large, malformed) gets OpenAI's error JSON like every other error; a NUL in a
//! chat message is the client's mistake (400), not the server's.
//!
//! These tests run beside others on a busy machine: no wait here is bounded tighter than
//! `HANG`, which only a server that never acts reaches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_api::testing::ScriptedBackend;
use hearth_api::{router, ApiConfig, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The bound on every wait: what is waited for takes milliseconds, so reaching it means
/// the server never acted, not that the machine was slow.
const HANG: Duration = Duration::from_secs(60);

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
    wait_for(HANG, "the generation to stop", || {
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
    let _ = tokio::time::timeout(HANG, reader.read_to_end(&mut response)).await;
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
    wait_for(HANG, "the generation to start", || backend.live_streams() == 1).await;
    drop(socket);
    // hyper notices the closed connection and drops the handler, and with it the stream.
    wait_for(HANG, "the generation to stop", || {
        metrics.active_generations() == 0 && backend.live_streams() == 0
    })
    .await;
}

/// Sends `request` and reads the answer until the server closes (or resets) the
/// connection; the server may answer before it has read everything, so write errors
/// are ignored.
async fn raw_exchange(port: u16, request: Vec<u8>) -> String {
    let socket = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let (mut reader, mut writer) = socket.into_split();
    let sender = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(HANG, reader.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "no end to the answer in {HANG:?}: {}",
        String::from_utf8_lossy(&answer)
    );
    sender.abort();
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status line of an answer and its body's `error` object, checked for OpenAI's shape.
fn error_answer(answer: &str) -> (&str, serde_json::Value) {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("the body is not JSON ({e}): {answer}"));
    let error = json["error"].clone();
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
    assert!(error["type"].is_string() && error["code"].is_string(), "{answer}");
    assert!(error.get("param").is_some(), "{answer}");
    assert!(
        head.to_ascii_lowercase().contains("content-type: application/json"),
        "{answer}"
    );
    (head.lines().next().unwrap_or_default(), error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_too_large_get_431_in_openai_shape() {
    let (port, backend, _) = start().await;
    // Too many header fields...
    let mut many = format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-Filler-{i}: x\r\n"));
    }
    many.push_str("\r\n");
    // ...and one header field larger than the whole head may be.
    let huge = format!(
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Huge: {}\r\n\r\n",
        "x".repeat(1 << 20)
    );
    for request in [many, huge] {
        let answer = raw_exchange(port, request.into_bytes()).await;
        let (status, error) = error_answer(&answer);
        assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large", "{answer}");
        assert_eq!(error["code"], "request_header_fields_too_large", "{answer}");
        assert_eq!(error["type"], "invalid_request_error", "{answer}");
    }
    // The server still serves.
    let answer = raw_exchange(
        port,
        format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").into_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert_eq!(backend.started(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_head_gets_400_in_openai_shape() {
    let (port, _, _) = start().await;
    let request = format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nno colon here\r\n\r\n");
    let answer = raw_exchange(port, request.into_bytes()).await;
    let (status, error) = error_answer(&answer);
    assert_eq!(status, "HTTP/1.1 400 Bad Request", "{answer}");
    assert_eq!(error["code"], "malformed_request", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_a_chat_message_is_a_400_naming_the_message() {
    let (port, backend, _) = start().await;
    // JSON's \u0000: a valid string holding a NUL, which no chat template can take.
    let body = r#"{"model":"scripted","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi\u0000there"}]}"#;
    let request = request(port, "/v1/chat/completions", body).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    let answer = raw_exchange(port, request.into_bytes()).await;
    let (status, error) = error_answer(&answer);
    assert_eq!(status, "HTTP/1.1 400 Bad Request", "{answer}");
    assert_eq!(error["type"], "invalid_request_error", "{answer}");
    assert_eq!(error["param"], "messages[1].content", "{answer}");
    assert!(
        error["message"].as_str().unwrap_or_default().contains("NUL"),
        "{answer}"
    );
    assert_eq!(backend.started(), 0);
}
