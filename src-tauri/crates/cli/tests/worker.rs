//! The supervisor with the real worker process (`hearth worker`) on the real model:
//! readiness, a SIGKILL mid-stream (a typed error naming the signal, automatic
//! restart), no orphans on unload or drop, the token kept out of argv.
//!
//! Time limits here are hang detectors (60 s for events that take milliseconds, 120 s
//! for a Vulkan load), never performance claims: a busy machine makes a test slower,
//! not red.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{alive, chat_model, hearth, sigkill, wait_gone, MODEL_ID};
use futures_util::StreamExt;
use hearth_backends::{Supervisor, WorkerConfig, WorkerState};
use hearth_core::{Backend, BackendError, ChatMessage, GenerateRequest, GenerationEvent, Prompt, SamplingParams};

/// Serves `backend` through the real API on a free port; returns its /health/ready URL.
async fn serve_api(backend: Arc<dyn Backend>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let router = hearth_api::router(
        backend,
        hearth_api::ApiConfig::new(port),
        Arc::new(hearth_api::Metrics::new()),
    );
    tokio::spawn(hearth_api::serve(listener, router, std::future::pending()));
    format!("http://127.0.0.1:{port}/health/ready")
}

fn config() -> WorkerConfig {
    let mut config = WorkerConfig::new(hearth());
    config.args = ["--threads", "2", "--ctx", "2048"].map(Into::into).to_vec();
    // A hang detector: the 135M model loads and answers its first token in about a second.
    config.ready_timeout = Duration::from_secs(60);
    config
}

fn endless() -> GenerateRequest {
    GenerateRequest {
        model: None,
        prompt: Prompt::Text("1, 2, 3, 4, 5, 6, 7, 8,".into()),
        params: SamplingParams::greedy(1500),
    }
}

fn short() -> GenerateRequest {
    GenerateRequest {
        model: Some(MODEL_ID.into()),
        prompt: Prompt::Chat(vec![ChatMessage::user("hi")]),
        params: SamplingParams::greedy(3),
    }
}

async fn run_to_end(backend: &dyn Backend, request: GenerateRequest) -> Result<String, BackendError> {
    let mut events = backend.generate(request).await?;
    let mut text = String::new();
    while let Some(event) = events.next().await {
        match event? {
            GenerationEvent::Delta { text: t } => text.push_str(&t),
            GenerationEvent::Done { .. } => return Ok(text),
            GenerationEvent::Error { message, .. } => panic!("{message}"),
        }
    }
    panic!("no final event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_tells_the_truth_and_unload_ends_the_process() {
    let supervisor = Arc::new(Supervisor::new(config()));
    let ready_url = serve_api(Arc::clone(&supervisor) as Arc<dyn Backend>).await;
    let ready = || async {
        reqwest::get(&ready_url)
            .await
            .expect("GET /health/ready")
            .status()
            .as_u16()
    };
    assert_eq!(ready().await, 503, "not ready before the load");
    let health = supervisor.health().await;
    assert_eq!(
        (health.ready, health.reason.as_deref()),
        (false, Some("no model is loaded"))
    );
    assert!(matches!(
        supervisor.generate(short()).await.err(),
        Some(BackendError::NotLoaded)
    ));
    supervisor.load(&chat_model().to_string_lossy()).await.expect("load");
    assert_eq!(ready().await, 200, "ready after the load");
    let health = supervisor.health().await;
    assert!(health.ready, "{health:?}");
    assert_eq!(health.model.as_deref(), Some(MODEL_ID));
    let pid = supervisor.pid().expect("pid");
    assert!(alive(pid));
    // The token is in the worker's environment, never in its argv.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let token = environ
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"HEARTH_WORKER_TOKEN="))
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .expect("token in the environment");
    assert_eq!(token.len(), 64);
    let cmdline =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline")).into_owned();
    assert!(!cmdline.contains(&token), "the token leaked into argv: {cmdline}");
    assert_eq!(supervisor.models().await.expect("models")[0].id, MODEL_ID);
    assert!(!run_to_end(supervisor.as_ref(), short())
        .await
        .expect("generate")
        .is_empty());

    supervisor.unload().await.expect("unload");
    assert!(!alive(pid), "unload must end (and reap) the worker");
    assert_eq!(ready().await, 503, "not ready after the unload");
    assert!(!supervisor.health().await.ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_stream_is_a_typed_error_then_restarts() {
    let supervisor = Supervisor::spawn(config(), chat_model()).await.expect("spawn");
    let pid = supervisor.pid().expect("pid");
    let mut events = supervisor.generate(endless()).await.expect("generate");
    for _ in 0..3 {
        assert!(matches!(events.next().await, Some(Ok(GenerationEvent::Delta { .. }))));
    }
    sigkill(pid);
    // The error says the worker died of signal 9: the supervisor saw the exit, it did
    // not wait out a timeout. The 60 s only catches a stream that never ends.
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(60), events.next()).await {
            Ok(Some(Ok(GenerationEvent::Delta { .. }))) => continue,
            Ok(Some(Err(e))) => break e,
            other => panic!("expected a typed error, got {other:?}"),
        }
    };
    assert!(
        matches!(&error, BackendError::Crashed { cause, .. } if cause.contains("signal 9")),
        "{error:?}"
    );
    assert!(error.is_transient());
    drop(events);
    assert!(!alive(pid), "the killed worker must be reaped");
    // The next request waits for the automatic restart and succeeds.
    let text = run_to_end(supervisor.as_ref(), short())
        .await
        .expect("after the restart");
    assert!(!text.is_empty());
    let new_pid = supervisor.pid().expect("restarted");
    assert_ne!(new_pid, pid);
    assert!(supervisor.health().await.ready);
    // Dropping the supervisor kills the worker: no orphan. (Hang-sized: it goes in
    // milliseconds; an orphan never does.)
    drop(supervisor);
    wait_gone(new_pid, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_model_fails_the_load_with_its_reason() {
    let dir = std::env::temp_dir().join(format!("hearth-worker-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = dir.join("not-a-model.gguf");
    std::fs::write(&bad, b"this is not a GGUF file").expect("write");
    let supervisor = Supervisor::new(config());
    let error = supervisor.load(&bad.to_string_lossy()).await.expect_err("a bad model");
    assert!(
        matches!(
            &error,
            BackendError::Failed {
                code: hearth_core::ErrorCode::InvalidModel,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(matches!(supervisor.state(), WorkerState::Failed(_)));
    let health = supervisor.health().await;
    assert!(!health.ready && health.reason.is_some());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_worker_refuses_to_start_without_a_token() {
    let output = std::process::Command::new(hearth())
        .args(["worker", "--model"])
        .arg(chat_model())
        .env_remove("HEARTH_WORKER_TOKEN")
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("HEARTH_WORKER_TOKEN"));
}

#[test]
fn the_worker_reports_load_progress_before_its_answer() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(hearth())
        .args(["worker", "--threads", "2", "--ctx", "2048", "--model"])
        .arg(chat_model())
        .env("HEARTH_WORKER_TOKEN", "test-token-0123456789")
        .env("HEARTH_WORKER_PARENT", std::process::id().to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the worker");
    let stdout = child.stdout.take().expect("stdout");
    // The child protocol's lines, read as JSON: the wire format itself is the contract.
    let mut loaded = Vec::new();
    let mut answer = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("a line");
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if event["event"] == "progress" {
            assert_eq!(event["total"], 100, "percent: {line}");
            loaded.push(event["done"].as_u64().expect("done"));
        } else {
            answer = Some(event);
            break;
        }
    }
    drop(child.stdin.take());
    let _ = child.wait();
    let answer = answer.expect("an answer after the progress");
    assert_eq!(answer["event"], "done", "{answer}");
    assert!(answer["result"]["port"].as_u64().unwrap() > 0, "{answer}");
    assert_eq!(answer["result"]["pid"], child.id(), "{answer}");
    assert!(answer["result"]["model"].is_string(), "{answer}");
    assert!(loaded.len() >= 2, "progress lines: {loaded:?}");
    assert!(
        loaded.windows(2).all(|w| w[0] < w[1]),
        "one line per new percent, rising: {loaded:?}"
    );
    assert_eq!(loaded.last().copied(), Some(100), "{loaded:?}");
}

/// The real worker behind a shell script that, on the worker's first start, ends it the
/// way a GPU running out of memory mid-reply does once `trigger` exists: GGML's own
/// words on stderr, then an abort. The one part here that is not the real thing: a
/// GPU's memory cannot be exhausted on demand on a machine without one.
fn dies_of_gpu_oom_once(dir: &std::path::Path) -> std::path::PathBuf {
    let script = dir.join("worker.sh");
    let body = format!(
        r#"#!/bin/sh
if [ -e "{dir}/started" ]; then exec "{hearth}" "$@"; fi
touch "{dir}/started"
# The worker's stdin is the supervisor's pipe (a background job's would be /dev/null),
# and its parent is this script.
exec 3<&0
export HEARTH_WORKER_PARENT=$$
"{hearth}" "$@" 0<&3 &
pid=$!
while [ ! -e "{dir}/trigger" ]; do
    kill -0 $pid 2>/dev/null || exit 1
    sleep 0.05
done
echo "ggml_vulkan: Device memory allocation of size 268435456 failed." >&2
echo "ggml_vulkan: vk::Device::allocateMemory: ErrorOutOfDeviceMemory" >&2
kill -9 $pid
exit 134
"#,
        dir = dir.display(),
        hearth = hearth()
    );
    std::fs::write(&script, body).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Vulkan module and lavapipe: run by `make test` (test-vulkan)"]
async fn a_worker_whose_gpu_ran_out_of_memory_restarts_with_fewer_layers_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = WorkerConfig::new(dies_of_gpu_oom_once(dir.path()));
    config.args = [
        "--threads",
        "2",
        "--ctx",
        "512",
        "--device",
        "vulkan0",
        "--gpu-layers",
        "31",
    ]
    .map(Into::into)
    .to_vec();
    // A hang detector: a load on lavapipe (Vulkan on the CPU) takes a few seconds.
    config.ready_timeout = Duration::from_secs(120);
    let supervisor = Supervisor::spawn(config, chat_model()).await.expect("spawn");
    let model = supervisor.models().await.unwrap().remove(0);
    assert_eq!((model.device.as_deref(), model.gpu_layers), (Some("Vulkan0"), Some(31)));
    assert_eq!(model.placement_note, None);

    let mut events = supervisor.generate(endless()).await.expect("generate");
    assert!(matches!(events.next().await, Some(Ok(GenerationEvent::Delta { .. }))));
    std::fs::write(dir.path().join("trigger"), b"").unwrap();
    let error = loop {
        // Hang-sized: the injected crash ends the stream in milliseconds.
        match tokio::time::timeout(Duration::from_secs(60), events.next()).await {
            Ok(Some(Ok(GenerationEvent::Delta { .. }))) => continue,
            Ok(Some(Err(e))) => break e,
            other => panic!("expected the crash as an error, got {other:?}"),
        }
    };
    assert!(matches!(&error, BackendError::Crashed { .. }), "{error:?}");
    drop(events);

    // The restart has half the layers on the device, and the user is told why.
    let text = run_to_end(supervisor.as_ref(), short())
        .await
        .expect("after the restart");
    assert!(!text.is_empty());
    let model = supervisor.models().await.unwrap().remove(0);
    assert_eq!((model.device.as_deref(), model.gpu_layers), (Some("Vulkan0"), Some(15)));
    let note = model.placement_note.expect("a note for the user");
    assert!(
        note.contains("Vulkan0 ran out of memory during a reply with 31 layers on it: restarted with 15"),
        "{note}"
    );
}
