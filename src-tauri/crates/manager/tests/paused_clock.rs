//! The retry schedule through the manager, on tokio's paused clock: 1 s, 2 s, 4 s, then
//! the next backend; and no retry once text has reached the caller.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{history, manager, roles};
use hearth_api::testing::{ScriptedBackend, SCRIPTED_MODEL};
use hearth_core::backend::BoxFuture;
use hearth_core::{Backend, BackendError, EventStream, GenerateRequest, Health, ModelDescriptor, SamplingParams};
use hearth_manager::settings::{RetrySettings, VllmSettings};
use hearth_manager::{BackendKind, ManagerError, Settings, StopSignal};
use hearth_store::Role;
use tokio::time::Instant;

/// Fails every start with `Unavailable` (as a refused connection does), noting when.
struct Down {
    calls: Mutex<Vec<Instant>>,
}

impl Backend for Down {
    fn name(&self) -> &str {
        "down"
    }
    fn load<'a>(&'a self, _model: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async { Ok(()) })
    }
    fn unload(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async { Ok(()) })
    }
    fn models(&self) -> BoxFuture<'_, Result<Vec<ModelDescriptor>, BackendError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn health(&self) -> BoxFuture<'_, Health> {
        Box::pin(async { Health::not_ready("down") })
    }
    fn generate(&self, _request: GenerateRequest) -> BoxFuture<'_, Result<EventStream, BackendError>> {
        Box::pin(async {
            if let Ok(mut calls) = self.calls.lock() {
                calls.push(Instant::now());
            }
            Err(BackendError::Unavailable {
                backend: "down".into(),
                cause: "connection refused".into(),
            })
        })
    }
}

fn settings() -> Settings {
    Settings {
        active: BackendKind::Vllm,
        fallback: vec![BackendKind::Embedded],
        vllm: Some(VllmSettings {
            url: "http://127.0.0.1:9/v1".into(),
            model: None,
            api_key: None,
            stall_timeout_ms: 1000,
        }),
        retry: RetrySettings::default(),
        ..Settings::default()
    }
}

#[tokio::test(start_paused = true)]
async fn retries_wait_1_2_4_seconds_then_the_next_backend_answers() {
    let fixture = manager(settings()).await;
    let down = Arc::new(Down {
        calls: Mutex::new(Vec::new()),
    });
    fixture
        .manager
        .install(BackendKind::Vllm, Arc::clone(&down) as _, "m")
        .await
        .expect("install");
    let started = Instant::now();
    let turn = fixture
        .manager
        .send("hello", SamplingParams::greedy(16), &StopSignal::default(), |_| {})
        .await
        .expect("the fallback answers");
    let at: Vec<f64> = down
        .calls
        .lock()
        .expect("calls")
        .iter()
        .map(|t| t.duration_since(started).as_secs_f64())
        .collect();
    assert_eq!(at, [0.0, 1.0, 3.0, 7.0], "tries at 0 s and after waits of 1, 2 and 4 s");
    assert_eq!(
        (turn.backend, turn.retries, turn.fallbacks),
        (BackendKind::Embedded, 3, 1)
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(7),
        "no wait after the last retry"
    );
}

#[tokio::test(start_paused = true)]
async fn a_crash_after_the_first_token_ends_the_reply_at_once() {
    let fixture = manager(settings()).await;
    let crashing = Arc::new(ScriptedBackend::new());
    fixture
        .manager
        .install(BackendKind::Vllm, Arc::clone(&crashing) as _, SCRIPTED_MODEL)
        .await
        .expect("install");
    let started = Instant::now();
    // The scripted backend crashes after two words when the prompt says "crash".
    let err = fixture
        .manager
        .send(
            "please crash",
            SamplingParams::greedy(16),
            &StopSignal::default(),
            |_| {},
        )
        .await
        .expect_err("crashed");
    assert!(
        matches!(&err, ManagerError::Interrupted { backend: BackendKind::Vllm, error: BackendError::Crashed { .. }, chars } if *chars > 0),
        "{err}"
    );
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no backoff after text reached the caller"
    );
    assert_eq!(crashing.started(), 1);
    assert_eq!(fixture.fallback.started(), 0);
    let saved = history(&fixture.manager).await;
    assert_eq!(roles(&saved), [Role::User, Role::Assistant]);
    assert!(saved[1].metadata.incomplete);
}
