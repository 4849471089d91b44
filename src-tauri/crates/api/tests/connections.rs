//! The server's limits on connections, over real sockets: a client that sends its
//! headers slowly or keeps a connection idle is cut off after the header timeout
//! without affecting anyone else; a streamed reply longer than that timeout is not cut;
//! shutdown lets a stream in flight run for the drain time, and no longer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_api::testing::ScriptedBackend;
use hearth_api::{router, serve_with, ApiConfig, ConnectionLimits, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const HEADER_READ: Duration = Duration::from_millis(400);

struct Server {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(drain: Duration) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let app = router(
        Arc::new(ScriptedBackend::new()),
        ApiConfig::new(port),
        Arc::new(Metrics::new()),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = ConnectionLimits {
        header_read: HEADER_READ,
        drain,
    };
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

/// Reads until the peer closes; the time that took and what came.
async fn read_until_closed(socket: &mut TcpStream, limit: Duration) -> (Duration, String) {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + limit).into(), socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (start.elapsed(), String::from_utf8_lossy(&seen).into_owned()),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the connection was still open after {limit:?}: {}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
}

/// One complete request on a fresh connection: the status line of its answer.
async fn status_of(port: u16, path: &str) -> String {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let request = get(port, path).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.expect("send");
    let (_, answer) = read_until_closed(&mut socket, Duration::from_secs(5)).await;
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_and_others_are_served_meanwhile() {
    let server = start(Duration::from_secs(5)).await;
    let mut slow = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
    // Half a request head, then nothing more.
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("send");
    let waiting = tokio::spawn(async move { read_until_closed(&mut slow, Duration::from_secs(5)).await });
    // While it dawdles, a well-behaved client is served at once.
    assert_eq!(status_of(server.port, "/health").await, "HTTP/1.1 200 OK");
    let (after, answer) = waiting.await.expect("the slow client");
    assert!(after >= HEADER_READ - Duration::from_millis(50), "cut after {after:?}");
    // Hyper answers a head that timed out with 408 where it can, or just closes.
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_timeout() {
    let server = start(Duration::from_secs(5)).await;
    let mut socket = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
    socket
        .write_all(get(server.port, "/health").as_bytes())
        .await
        .expect("send");
    // The answer comes, and the connection stays open for another request...
    let mut buf = [0u8; 4096];
    let n = socket.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    socket
        .write_all(get(server.port, "/health").as_bytes())
        .await
        .expect("send a second request on the same connection");
    let n = socket.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // ...but not for ever once idle.
    let (after, rest) = read_until_closed(&mut socket, Duration::from_secs(5)).await;
    assert!(
        after >= HEADER_READ - Duration::from_millis(50),
        "closed after {after:?}"
    );
    assert!(rest.is_empty() || rest.starts_with("HTTP/1.1 408"), "{rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_longer_than_the_header_timeout_is_not_cut() {
    let server = start(Duration::from_secs(5)).await;
    let mut socket = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
    socket
        .write_all(chat(server.port, "forever", 4096).as_bytes())
        .await
        .expect("send");
    // "forever" streams a token every 5 ms: read for three header timeouts.
    let until = Instant::now() + HEADER_READ * 3;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        let n = socket.read(&mut buf).await.expect("read");
        assert!(
            n > 0,
            "the stream was cut after {:?}",
            HEADER_READ * 3 - (until - Instant::now())
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.matches("la ").count() > 50, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_stream_run_for_the_drain_time_and_stops_accepting() {
    let drain = Duration::from_millis(600);
    let mut server = start(drain).await;
    let mut socket = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
    socket
        .write_all(chat(server.port, "forever", 4096).as_bytes())
        .await
        .expect("send");
    let mut first = [0u8; 16];
    socket.read_exact(&mut first).await.expect("the stream starts");
    let stopping = Instant::now();
    server.stop.take().expect("stop").send(()).expect("signal shutdown");
    // The stream in flight keeps going during the drain, then is cut.
    let (closed_after, rest) = read_until_closed(&mut socket, Duration::from_secs(5)).await;
    assert!(rest.matches("la ").count() > 20, "the stream stopped at once: {rest}");
    assert!(
        closed_after >= drain - Duration::from_millis(100) && closed_after < drain + Duration::from_secs(2),
        "closed after {closed_after:?}"
    );
    server.served.await.expect("join").expect("served");
    assert!(stopping.elapsed() < drain + Duration::from_secs(2));
    assert!(
        TcpStream::connect(("127.0.0.1", server.port)).await.is_err(),
        "still accepting after shutdown"
    );
}
