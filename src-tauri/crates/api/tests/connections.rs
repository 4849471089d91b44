//! The server's limits on connections, over real sockets: a client that sends its
//! headers slowly or keeps a connection idle is cut off after the header timeout
//! without affecting anyone else; one that stalls in its body gets 408 after the body
//! timeout; connections beyond the cap are answered 503 at once; a streamed reply
//! longer than the header timeout is not cut; shutdown lets a stream in flight run for
//! the drain time, then cuts it.
//!
//! These tests run beside others on a busy machine, so none asserts that something
//! happened quickly: each wait ends at `HANG`, long enough that only a server that never
//! acts reaches it, and the timeouts are checked from below only, from an instant taken
//! before the server could start its timer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_api::testing::ScriptedBackend;
use hearth_api::{router, serve_with, ApiConfig, ConnectionLimits, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const HEADER_READ: Duration = Duration::from_secs(1);
const BODY_READ: Duration = Duration::from_secs(1);
/// The bound on every wait: sixty times the timeouts above, so reaching it means the
/// server never acted, not that the machine was slow.
const HANG: Duration = Duration::from_secs(60);

struct Server {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

fn limits(drain: Duration) -> ConnectionLimits {
    ConnectionLimits {
        header_read: HEADER_READ,
        body_read: BODY_READ,
        drain,
        ..ConnectionLimits::default()
    }
}

async fn start(limits: ConnectionLimits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let app = router(
        Arc::new(ScriptedBackend::new()),
        ApiConfig::new(port),
        Arc::new(Metrics::new()),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(serve_with(listener, app, limits, async {
        let _ = stopped.await;
    }));
    Server {
        port,
        stop: Some(stop),
        served,
    }
}

fn get(port: u16, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
}

fn chat(port: u16, content: &str, max_tokens: u32) -> String {
    let body = format!(
        r#"{{"model":"scripted","messages":[{{"role":"user","content":"{content}"}}],"stream":true,"max_tokens":{max_tokens}}}"#
    );
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A chat request whose head announces its whole body, of which only the first `sent`
/// bytes follow (a `Content-Length` larger than what comes).
fn short_body(port: u16, sent: usize) -> String {
    let body = format!(
        r#"{{"model":"scripted","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(100)
    );
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        &body[..sent]
    )
}

/// Reads until the peer closes (or resets) and returns what came; panics after `HANG`.
async fn read_until_closed(socket: &mut TcpStream) -> String {
    let deadline = tokio::time::Instant::now() + HANG;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&seen).into_owned(),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the connection was still open after {HANG:?}: {}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
}

/// One complete request on a fresh connection: the whole answer.
async fn exchange(port: u16, path: &str) -> String {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let request = get(port, path).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    // A server that refused the connection may have closed it already: what it said counts.
    let _ = socket.write_all(request.as_bytes()).await;
    read_until_closed(&mut socket).await
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or_default()
}

/// The error object of an answer's JSON body.
fn error_of(answer: &str) -> serde_json::Value {
    let (_, body) = answer.split_once("\r\n\r\n").unwrap_or_default();
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("the body is not JSON ({e}): {answer}"));
    let error = json["error"].clone();
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
    assert!(error["type"].is_string() && error.get("param").is_some(), "{answer}");
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_and_others_are_served_meanwhile() {
    let server = start(limits(Duration::from_secs(5))).await;
    // Taken before connecting: the server's header timer cannot start earlier.
    let began = Instant::now();
    let mut slow = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
    // Half a request head, then nothing more.
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("send");
    let waiting = tokio::spawn(async move { read_until_closed(&mut slow).await });
    // While it dawdles, a well-behaved client is served.
    assert_eq!(status_line(&exchange(server.port, "/health").await), "HTTP/1.1 200 OK");
    let answer = waiting.await.expect("the slow client");
    // Closed (read_until_closed bounds that by HANG), and not before the timeout: a lower
    // bound from an instant before the timer started cannot flake however slow the machine.
    assert!(began.elapsed() >= HEADER_READ, "cut after {:?}", began.elapsed());
    // Hyper answers a head that timed out with 408 where it can, or just closes.
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_timeout() {
    let server = start(limits(Duration::from_secs(5))).await;
    let mut socket = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
    socket
        .write_all(get(server.port, "/health").as_bytes())
        .await
        .expect("send");
    // The answer comes, and the connection stays open for another request...
    let mut buf = [0u8; 4096];
    let n = socket.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Taken before the second request: the idle timer starts after its answer.
    let began = Instant::now();
    socket
        .write_all(get(server.port, "/health").as_bytes())
        .await
        .expect("send a second request on the same connection");
    let n = socket.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // ...but not for ever once idle (bounded by HANG), and not before the timeout (a
    // lower bound from before the timer started: cannot flake).
    let rest = read_until_closed(&mut socket).await;
    assert!(began.elapsed() >= HEADER_READ, "closed after {:?}", began.elapsed());
    assert!(rest.is_empty() || rest.starts_with("HTTP/1.1 408"), "{rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_and_its_connection_is_closed() {
    let server = start(limits(Duration::from_secs(5))).await;
    // Taken before connecting: the server's body timer cannot start earlier.
    let began = Instant::now();
    // One client sends part of its body, the other none of it; both then stall.
    let mut part = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
    part.write_all(short_body(server.port, 20).as_bytes())
        .await
        .expect("send");
    let mut none = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
    none.write_all(short_body(server.port, 0).as_bytes())
        .await
        .expect("send");
    // Meanwhile others are served.
    assert_eq!(status_line(&exchange(server.port, "/health").await), "HTTP/1.1 200 OK");
    let (part, none) = tokio::join!(read_until_closed(&mut part), read_until_closed(&mut none));
    for answer in [part, none] {
        // Answered and closed (read_until_closed bounds that by HANG), in OpenAI's shape.
        assert_eq!(status_line(&answer), "HTTP/1.1 408 Request Timeout", "{answer}");
        let error = error_of(&answer);
        assert_eq!(error["code"], "request_timeout", "{answer}");
        assert_eq!(error["type"], "invalid_request_error", "{answer}");
        assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    }
    // Not before the timeout: a lower bound from before the timer started cannot flake.
    assert!(began.elapsed() >= BODY_READ, "answered after {:?}", began.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_get_503_and_the_server_keeps_answering() {
    const CAP: usize = 4;
    // Timeouts of HANG: the stalled clients keep their connections until they let go,
    // so which connections are beyond the cap does not depend on timing.
    let server = start(ConnectionLimits {
        header_read: HANG,
        body_read: HANG,
        max_connections: CAP,
        drain: Duration::from_secs(5),
    })
    .await;
    // CAP clients stall in their bodies. Connections are accepted in the order they were
    // made, so these hold every place.
    let mut stalled = Vec::new();
    for _ in 0..CAP {
        let mut socket = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
        socket
            .write_all(short_body(server.port, 20).as_bytes())
            .await
            .expect("send");
        stalled.push(socket);
    }
    // Every client beyond the cap, /health included, is answered (not left waiting for a
    // place) with a 503 that says why and when to retry, and closed.
    for _ in 0..6 {
        let answer = exchange(server.port, "/health").await;
        assert_eq!(status_line(&answer), "HTTP/1.1 503 Service Unavailable", "{answer}");
        assert_eq!(error_of(&answer)["code"], "too_many_connections", "{answer}");
        assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    }
    // Once the stalled clients let go, their places serve others again. (The server
    // notices each hang-up on its own time: ask until it has, at most until HANG.)
    drop(stalled);
    let deadline = Instant::now() + HANG;
    loop {
        let answer = exchange(server.port, "/health").await;
        if status_line(&answer) == "HTTP/1.1 200 OK" {
            break;
        }
        assert!(Instant::now() < deadline, "still refused after {HANG:?}: {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_longer_than_the_header_timeout_is_not_cut() {
    let server = start(limits(Duration::from_secs(5))).await;
    let began = Instant::now();
    let mut socket = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
    socket
        .write_all(chat(server.port, "forever", 4096).as_bytes())
        .await
        .expect("send");
    // "forever" streams until dropped: read until twice the header timeout has passed
    // and 50 tokens came. Only the stream ending early fails this; a slow machine just
    // reads for longer (up to HANG).
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while began.elapsed() < HEADER_READ * 2 || String::from_utf8_lossy(&seen).matches("la ").count() < 50 {
        assert!(began.elapsed() < HANG, "50 tokens did not come in {HANG:?}");
        let n = tokio::time::timeout(HANG, socket.read(&mut buf))
            .await
            .expect("a token within HANG")
            .expect("read");
        assert!(n > 0, "the stream was cut after {:?}", began.elapsed());
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_stream_run_for_the_drain_time_and_stops_accepting() {
    let drain = Duration::from_secs(2);
    let mut server = start(limits(drain)).await;
    let mut socket = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
    socket
        .write_all(chat(server.port, "forever", 4096).as_bytes())
        .await
        .expect("send");
    let mut first = [0u8; 16];
    socket.read_exact(&mut first).await.expect("the stream starts");
    // Taken before the signal: the drain timer cannot start earlier.
    let stopping = Instant::now();
    server.stop.take().expect("stop").send(()).expect("signal shutdown");
    // The stream in flight keeps going during the drain, then is cut ("forever" would
    // never end by itself; read_until_closed bounds the wait by HANG).
    let rest = read_until_closed(&mut socket).await;
    // A token every 5 ms: the 10 asked for need 50 ms of the 2 s drain, so only a stall
    // of nearly the whole drain could make this fail.
    assert!(rest.matches("la ").count() >= 10, "the stream stopped at once: {rest}");
    // A lower bound from before the timer started: cannot flake.
    assert!(stopping.elapsed() >= drain, "cut after {:?}", stopping.elapsed());
    tokio::time::timeout(HANG, server.served)
        .await
        .expect("the server returns after the drain")
        .expect("join")
        .expect("served");
    assert!(
        TcpStream::connect(("127.0.0.1", server.port)).await.is_err(),
        "still accepting after shutdown"
    );
}
