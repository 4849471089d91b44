//! The real `hearth serve` binary with its worker and the real model, over HTTP:
//! the official OpenAI Python client, bad requests, a client hanging up, the worker
//! killed mid-stream, readiness, no orphan when `hearth serve` itself is SIGKILLed,
//! and the token read from a file (kept out of `ps`).
//!
//! Time limits here are hang detectors, not performance claims: each waits for an
//! event and fails only if it never comes (60 s on a 135M model that answers in well
//! under a second), so a busy machine makes a test slower, never red.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{alive, sigkill, wait_gone, wait_idle, Serve, MODEL_ID, TOKEN};
use futures_util::StreamExt;
use serde_json::{json, Value};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// `HEARTH_TEST_PYTHON`, else the repository's `.venv`, else `python3`; it must have `openai`.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("HEARTH_TEST_PYTHON") {
        return p.into();
    }
    let venv = repo_root().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post(serve: &Serve, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", serve.url))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("send")
}

async fn metric(serve: &Serve, name: &str) -> Option<f64> {
    let text = client()
        .get(format!("{}/metrics", serve.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_client() {
    // Undrafted, so that the script's repeated requests run in the same batch shapes.
    let serve = Serve::start(&["--draft", "0"]);
    serve.wait_ready_status(200, Duration::from_secs(60)).await;
    let python = python();
    let output = tokio::process::Command::new(&python)
        .arg(repo_root().join("tests/openai_client.py"))
        .env("HEARTH_URL", &serve.url)
        .env("HEARTH_TOKEN", TOKEN)
        .env("HEARTH_MODEL", MODEL_ID)
        .output()
        .await
        .unwrap_or_else(|e| panic!("could not run {}: {e}", python.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named 'openai'"),
        "{} lacks the openai package: `pip install openai` into a venv and set HEARTH_TEST_PYTHON (or use .venv)",
        python.display()
    );
    assert!(
        output.status.success(),
        "{}\n{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("all checks passed"));
}

/// Sends raw bytes as a request body and returns the status line and body (no client-side checks).
fn raw_post(port: u16, headers: &str, body: &[u8]) -> (u16, String) {
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    // A hang detector: the answer comes in milliseconds.
    socket.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).expect("head");
    // The server may answer (413) and close before reading everything.
    let _ = socket.write_all(body);
    let mut response = Vec::new();
    let _ = socket.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_4xx_from_the_real_server() {
    let serve = Serve::start(&[]);
    serve.wait_ready_status(200, Duration::from_secs(60)).await;
    let worker = serve.worker_pid();
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (json!({"model": MODEL_ID, "messages": msgs, "max_tokens": -5}), 400),
        (
            json!({"model": MODEL_ID, "messages": msgs, "max_tokens": 1u64 << 40}),
            400,
        ),
        (
            json!({"model": MODEL_ID, "messages": msgs, "max_tokens": 1_000_000}),
            400,
        ),
        (json!({"model": MODEL_ID, "messages": msgs, "temperature": -1}), 400),
        (json!({"model": MODEL_ID, "messages": "hi"}), 400),
        (
            json!({"model": MODEL_ID, "messages": [{"role": "user", "content": 5}]}),
            400,
        ),
        (json!({"model": "no-such-model", "messages": msgs}), 404),
        // 4000 words do not fit a 2048-token context: refused before decoding, by the worker.
        (
            json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "word ".repeat(4000)}]}),
            400,
        ),
    ];
    for (body, expected) in cases {
        let response = post(&serve, "/v1/chat/completions", body.clone()).await;
        let status = response.status().as_u16();
        let error: Value = response.json().await.expect("JSON error");
        assert_eq!(status, expected, "{body}: {error}");
        assert!(
            error["error"]["message"].is_string() && error["error"]["code"].is_string(),
            "{error}"
        );
    }
    let overflow = post(
        &serve,
        "/v1/chat/completions",
        json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "word ".repeat(4000)}]}),
    )
    .await;
    assert_eq!(
        overflow.json::<Value>().await.expect("json")["error"]["code"],
        "context_length_exceeded"
    );

    let auth = format!("Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n");
    let port = serve.port;
    let raw = |headers: String, body: Vec<u8>| tokio::task::spawn_blocking(move || raw_post(port, &headers, &body));
    let (status, text) = raw(auth.clone(), b"{\"model\": ".to_vec()).await.expect("join");
    assert_eq!(status, 400, "{text}");
    let (status, text) = raw(auth.clone(), b"{\"model\": \"\xff\xfe\"}".to_vec())
        .await
        .expect("join");
    assert_eq!(status, 400, "{text}");
    let (status, text) = raw(
        auth.clone(),
        format!(r#"{{"model":"{MODEL_ID}","messages":[],"temperature":NaN}}"#).into_bytes(),
    )
    .await
    .expect("join");
    assert_eq!(status, 400, "{text}");
    let (status, text) = raw(auth.clone(), vec![b'a'; 10 << 20]).await.expect("join");
    assert_eq!(status, 413, "{text}");
    let (status, _) = raw("Content-Type: application/json\r\n".into(), b"{}".to_vec())
        .await
        .expect("join");
    assert_eq!(status, 401);
    let (status, _) = raw(
        "Authorization: Bearer nope\r\nContent-Type: application/json\r\n".into(),
        b"{}".to_vec(),
    )
    .await
    .expect("join");
    assert_eq!(status, 401);
    let foreign = client()
        .get(format!("{}/v1/models", serve.url))
        .bearer_auth(TOKEN)
        .header("Host", format!("evil.example:{}", serve.port))
        .send()
        .await
        .expect("send");
    assert_eq!(foreign.status().as_u16(), 403);

    // Nothing crashed: the same worker answers a good request.
    let ok = post(
        &serve,
        "/v1/chat/completions",
        json!({"model": MODEL_ID, "messages": msgs, "max_tokens": 2}),
    )
    .await;
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(serve.worker_pid(), worker);
    assert!(metric(&serve, "hearth_errors_total{code=\"request_too_large\"}")
        .await
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_mid_stream_stops_decoding() {
    let serve = Serve::start(&[]);
    serve.wait_ready_status(200, Duration::from_secs(60)).await;
    let worker = serve.worker_pid();
    let body = json!({"model": MODEL_ID, "prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "max_tokens": 1500, "temperature": 0, "stream": true});
    let response = post(&serve, "/v1/completions", body).await;
    assert_eq!(response.status().as_u16(), 200);
    let mut chunks = response.bytes_stream();
    let mut received = 0;
    while received < 5 {
        let chunk = chunks.next().await.expect("a chunk").expect("bytes");
        received += String::from_utf8_lossy(&chunk).matches("data: ").count();
    }
    assert_eq!(metric(&serve, "hearth_active_generations").await, Some(1.0));
    drop(chunks);
    // Both the server's slot and the worker's decoding are released. (Hang-sized: the
    // release takes milliseconds; only a slot that is never released reaches 60 s.)
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&serve, "hearth_active_generations").await != Some(0.0) {
        assert!(Instant::now() < deadline, "the active-generations gauge stayed up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_idle(worker, Duration::from_secs(60)).await;
    let ok = post(
        &serve,
        "/v1/chat/completions",
        json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
    )
    .await;
    assert_eq!(ok.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_killed_mid_stream_then_ready_again() {
    let serve = Serve::start(&[]);
    serve.wait_ready_status(200, Duration::from_secs(60)).await;
    let worker = serve.worker_pid();
    let body = json!({"model": MODEL_ID, "prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "max_tokens": 1500, "temperature": 0, "stream": true});
    let response = post(&serve, "/v1/completions", body).await;
    let mut chunks = response.bytes_stream();
    let mut text = String::new();
    while text.matches("data: ").count() < 3 {
        text.push_str(&String::from_utf8_lossy(
            &chunks.next().await.expect("chunk").expect("bytes"),
        ));
    }
    sigkill(worker);
    // The stream ends with an OpenAI-shaped error event naming the crash, then [DONE].
    // That the crash was seen (not a timeout) is what the code says; the 60 s only
    // catches a stream that never ends.
    while !text.contains("data: [DONE]") {
        match tokio::time::timeout(Duration::from_secs(60), chunks.next()).await {
            Ok(Some(Ok(bytes))) => text.push_str(&String::from_utf8_lossy(&bytes)),
            other => panic!("the stream did not end cleanly: {other:?}"),
        }
    }
    assert!(text.contains("\"code\":\"backend_crashed\""), "{text}");
    // Not ready while the worker is down, ready again after the automatic restart.
    // (The restart reloads the model, so 503 lasts at least that long: a slower
    // machine only widens the window this waits for.)
    serve.wait_ready_status(503, Duration::from_secs(60)).await;
    serve.wait_ready_status(200, Duration::from_secs(60)).await;
    assert!(!alive(worker));
    assert_ne!(serve.worker_pid(), worker);
    let ok = post(
        &serve,
        "/v1/chat/completions",
        json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
    )
    .await;
    assert_eq!(ok.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_serve_with_sigkill_leaves_no_worker() {
    let mut serve = Serve::start(&[]);
    serve.wait_ready_status(200, Duration::from_secs(60)).await;
    let worker = serve.worker_pid();
    sigkill(serve.pid());
    let _ = serve.child.wait();
    // The kernel's parent-death signal (and the closed stdin pipe) end the worker.
    // (Hang-sized: it goes in milliseconds; an orphan never does.)
    wait_gone(worker, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_mode_serves_too() {
    let serve = Serve::start(&["--in-process"]);
    serve.wait_ready_status(200, Duration::from_secs(60)).await;
    assert!(
        common::children_of(serve.pid()).is_empty(),
        "--in-process must not start a worker"
    );
    let ok = post(
        &serve,
        "/v1/chat/completions",
        json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
    )
    .await;
    assert_eq!(ok.status().as_u16(), 200);
    let body: Value = ok.json().await.expect("json");
    assert_eq!(body["object"], "chat.completion");
}

#[test]
fn a_public_address_without_a_token_is_refused() {
    let output = std::process::Command::new(common::hearth())
        .args(["serve", "--host", "0.0.0.0", "--port", "0", "--model"])
        .arg(common::chat_model())
        .env_remove("HEARTH_API_TOKEN")
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("without a token"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_serve_and_its_worker() {
    let mut serve = Serve::start(&[]);
    serve.wait_ready_status(200, Duration::from_secs(60)).await;
    let worker = serve.worker_pid();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(serve.pid()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill -TERM");
    // Hang-sized: the shutdown takes well under a second (no stream is open to drain).
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = serve.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "hearth serve did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
    assert!(!alive(worker), "the worker outlived hearth serve");
}

/// Streams a chat completion: when its first and last content chunks came.
async fn timed_stream(serve: &Serve, question: &str) -> (Instant, Instant, usize) {
    let body = json!({
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 64,
        "temperature": 0,
        "stream": true
    });
    let response = post(serve, "/v1/chat/completions", body).await;
    assert_eq!(response.status(), 200);
    let mut chunks = response.bytes_stream();
    let (mut first, mut last, mut count) = (None, Instant::now(), 0);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.expect("read the stream");
        let content = String::from_utf8_lossy(&chunk).matches("\"content\":\"").count();
        if content > 0 {
            first.get_or_insert_with(Instant::now);
            last = Instant::now();
            count += content;
        }
    }
    (first.expect("no content arrived"), last, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_parallel_2_two_clients_stream_at_once() {
    let serve = Serve::start(&["--parallel", "2", "--draft", "0"]);
    serve.wait_ready_status(200, Duration::from_secs(60)).await;
    let health: Value = client()
        .get(format!("{}/health", serve.url))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("JSON");
    assert_eq!(health["slots"], 2, "{health}");
    let (a, b) = tokio::join!(
        timed_stream(&serve, "Write a short story about a fisherman and the sea."),
        timed_stream(&serve, "Explain how a bicycle stays upright.")
    );
    assert!(a.2 > 10 && b.2 > 10, "{} and {} chunks", a.2, b.2);
    // Both replies were streaming at the same time: each began before the other ended.
    assert!(
        a.0 < b.1 && b.0 < a.1,
        "the replies took turns instead of streaming together"
    );
    assert_eq!(metric(&serve, "hearth_slots").await, Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_can_come_from_a_file_and_stays_out_of_ps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    // The first line, trimmed, is the token; what follows is ignored.
    std::fs::write(&file, format!("  {TOKEN}  \nnot the token\n")).expect("write");
    let serve =
        common::Serve::start_without_token(&common::chat_model(), &["--token-file", file.to_str().expect("utf-8")]);
    serve.wait_ready_status(200, Duration::from_secs(60)).await;
    let models = |token: Option<&str>| {
        let request = client().get(format!("{}/v1/models", serve.url));
        let request = match token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        async move { request.send().await.expect("send").status().as_u16() }
    };
    assert_eq!(models(None).await, 401);
    assert_eq!(models(Some("not the token")).await, 401);
    assert_eq!(models(Some(TOKEN)).await, 200);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", serve.pid())).expect("cmdline");
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(TOKEN),
        "the token is in argv"
    );
}

#[test]
fn token_file_mistakes_are_refused_and_a_readable_one_is_warned_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n\nsecond line\n").expect("write");
    let missing = dir.path().join("missing");
    let given = dir.path().join("given");
    std::fs::write(&given, "secret\n").expect("write");
    std::fs::set_permissions(&given, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
    // A port in use stops the server right after it read the token: the warning
    // about a file others can read is out by then.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--port", "0", "--token-file", empty.to_str().expect("utf-8")],
            "no token on its first line",
        ),
        (
            &["--port", "0", "--token-file", missing.to_str().expect("utf-8")],
            "cannot read the token file",
        ),
        (
            &[
                "--port",
                "0",
                "--token-file",
                given.to_str().expect("utf-8"),
                "--token",
                "other",
            ],
            "both give a token",
        ),
        (
            &["--port", &port, "--token-file", given.to_str().expect("utf-8")],
            "other users can read the token file",
        ),
    ];
    for (args, words) in cases {
        let output = std::process::Command::new(common::hearth())
            .args(["serve", "--model"])
            .arg(common::chat_model())
            .args(args)
            .env_remove("HEARTH_API_TOKEN")
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(words), "{args:?}: {stderr}");
    }
}

#[test]
fn help_warns_that_a_token_on_the_command_line_is_visible() {
    let output = std::process::Command::new(common::hearth())
        .args(["serve", "--help"])
        .output()
        .expect("run");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for words in [
        "Every local user can read it in `ps`",
        "prefer --token-file or the HEARTH_API_TOKEN environment variable",
        "--token-file <PATH>",
    ] {
        assert!(help.contains(words), "{words:?} missing from:\n{help}");
    }
}

/// `--chat-template-file` gives a base model (Gemma 3 270M has no template) chats; the
/// file's template, not a guess, writes them. An unreadable file stops the start with
/// what to give instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_template_file_gives_a_base_model_chats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("template.jinja");
    std::fs::write(
        &file,
        "{% for m in messages %}{{ m.role | upper }}: {{ m.content }}\n{% endfor %}ASSISTANT:",
    )
    .expect("write");
    let file = file.to_string_lossy().into_owned();
    let serve = Serve::start_model(&common::base_model(), &["--draft", "0", "--chat-template-file", &file]);
    serve.wait_ready_status(200, Duration::from_secs(60)).await;
    let auth = format!("Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n");
    let port = serve.port;
    let model = common::base_model()
        .file_stem()
        .expect("stem")
        .to_string_lossy()
        .into_owned();
    let body =
        json!({"model": model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3, "temperature": 0})
            .to_string()
            .into_bytes();
    let (status, text) = tokio::task::spawn_blocking(move || raw_post(port, &auth, &body))
        .await
        .expect("join");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"usage\""), "{text}");
    drop(serve);

    let output = tokio::process::Command::new(common::hearth())
        .args([
            "serve",
            "--port",
            "0",
            "--token",
            TOKEN,
            "--chat-template-file",
            "/nonexistent/t.jinja",
            "--model",
        ])
        .arg(common::base_model())
        .output()
        .await
        .expect("run hearth serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read the chat template file /nonexistent/t.jinja"),
        "{stderr}"
    );
}
