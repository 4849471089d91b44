//! EngineBackend on the real default models: probe at load, streaming, typed errors,
//! and cancellation when the event stream is dropped.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hearth_core::paths::{models_dir, DEFAULT_BASE_MODEL, DEFAULT_CHAT_MODEL};
use hearth_core::{Backend, BackendError, ChatMessage, GenerateRequest, GenerationEvent, Prompt, SamplingParams};
use hearth_engine::EngineConfig;
use hearth_engine_backend::EngineBackend;

fn model(name: &str) -> PathBuf {
    let path = models_dir().join(name);
    assert!(path.exists(), "{} is missing: run `make models`", path.display());
    path
}

fn backend() -> EngineBackend {
    EngineBackend::new(EngineConfig::new("").with_n_ctx(1024).with_threads(2))
}

fn chat(text: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        model: None,
        prompt: Prompt::Chat(vec![ChatMessage::user(text)]),
        params: SamplingParams::greedy(max_tokens),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_probes_streams_and_reports_errors() {
    let backend = backend();
    let health = backend.health().await;
    assert_eq!(
        (health.ready, health.reason.as_deref()),
        (false, Some("no model is loaded"))
    );
    assert!(matches!(
        backend.generate(chat("hi", 4)).await.err(),
        Some(BackendError::NotLoaded)
    ));
    backend
        .load(&model(DEFAULT_CHAT_MODEL).to_string_lossy())
        .await
        .expect("load");
    let health = backend.health().await;
    assert!(health.ready, "{health:?}");
    let models = backend.models().await.expect("models");
    assert_eq!(models[0].id, "SmolLM2-135M-Instruct-Q4_1");

    let mut events = backend.generate(chat("Name a colour.", 8)).await.expect("generate");
    let mut text = String::new();
    let mut done = None;
    while let Some(event) = events.next().await {
        match event.expect("event") {
            GenerationEvent::Delta { text: t } => text.push_str(&t),
            GenerationEvent::Done { metrics } => done = Some(metrics),
            GenerationEvent::Error { message, .. } => panic!("{message}"),
        }
    }
    let metrics = done.expect("a Done event");
    assert!(
        !text.is_empty() && metrics.completion_tokens >= 1 && metrics.completion_tokens <= 8,
        "{text:?} {metrics:?}"
    );

    let named = GenerateRequest {
        model: Some("SmolLM2-135M-Instruct-Q4_1.gguf".into()),
        ..chat("hi", 1)
    };
    assert!(
        backend.generate(named).await.is_ok(),
        "the file name names the model too"
    );
    let other = GenerateRequest {
        model: Some("llama-70b".into()),
        ..chat("hi", 1)
    };
    assert_eq!(
        backend.generate(other).await.err(),
        Some(BackendError::ModelNotFound {
            model: "llama-70b".into()
        })
    );
    let long = "word ".repeat(3000);
    let e = backend.generate(chat(&long, 4)).await.err();
    assert!(
        matches!(e, Some(BackendError::ContextOverflow { limit: 1024, .. })),
        "{e:?}"
    );
    let bad = GenerateRequest {
        params: SamplingParams {
            top_p: 0.0,
            ..SamplingParams::greedy(4)
        },
        ..chat("hi", 4)
    };
    assert!(
        matches!(backend.generate(bad).await.err(), Some(BackendError::InvalidRequest { param: Some(p), .. }) if p == "top_p")
    );

    backend.unload().await.expect("unload");
    assert!(!backend.health().await.ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_model_refuses_chat() {
    let backend = backend();
    backend
        .load(&model(DEFAULT_BASE_MODEL).to_string_lossy())
        .await
        .expect("load");
    let e = backend.generate(chat("hi", 4)).await.err();
    assert!(matches!(e, Some(BackendError::NoChatTemplate { .. })), "{e:?}");
    let text = GenerateRequest {
        prompt: Prompt::Text("Once upon a time".into()),
        ..chat("", 4)
    };
    assert!(backend.generate(text).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_stops_decoding() {
    let backend = backend();
    backend
        .load(&model(DEFAULT_CHAT_MODEL).to_string_lossy())
        .await
        .expect("load");
    // A continuation that does not end by itself: the whole context would take many seconds.
    let endless = GenerateRequest {
        model: None,
        prompt: Prompt::Text("1, 2, 3, 4, 5, 6, 7, 8,".into()),
        params: SamplingParams::greedy(1000),
    };
    let mut events = backend.generate(endless.clone()).await.expect("generate");
    for _ in 0..3 {
        assert!(matches!(events.next().await, Some(Ok(GenerationEvent::Delta { .. }))));
    }
    drop(events);
    // Decoding stops at the next token: long before the 1000 asked for.
    // A hang's bound: the drop is seen at the next decode step (tens of ms).
    let deadline = Instant::now() + Duration::from_secs(60);
    while backend.running_generations() != 0 {
        assert!(Instant::now() < deadline, "the dropped generation kept decoding");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(backend.cancelled_generations(), 1);
    // And the engine is free for the next request.
    let mut events = backend.generate(chat("hi", 2)).await.expect("generate");
    let mut finished = false;
    while let Some(event) = events.next().await {
        finished |= matches!(event.expect("event"), GenerationEvent::Done { .. });
    }
    assert!(finished);
    assert_eq!(backend.running_generations(), 0);
}
