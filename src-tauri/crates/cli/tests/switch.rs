//! Switching backends mid-conversation with real models: three turns on SmolLM2 in the
//! embedded engine (its worker process), then a switch to another backend, the
//! project's own `hearth serve` with Gemma 3 270M (a base model, reached as vLLM
//! would be); the next reply's prompt holds every earlier turn.

mod common;

use common::{base_model, chat_model, hearth, Serve, TOKEN};
use hearth_api::fault_proxy::FaultProxy;
use hearth_core::SamplingParams;
use hearth_manager::settings::{EmbeddedSettings, VllmSettings};
use hearth_manager::{BackendKind, BackendManager, ManagerOptions, Settings, StopSignal};
use hearth_store::{AsyncStore, Role, StoreOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_moves_to_another_backend_with_every_turn() {
    let gemma = Serve::start_model(&base_model(), &[]);
    let upstream = format!("127.0.0.1:{}", gemma.port).parse().expect("addr");
    // Passes everything through; it is here to record what the new backend was sent.
    let recorder = FaultProxy::start(upstream).await.expect("proxy");
    gemma.wait_ready_status(200, std::time::Duration::from_secs(120)).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let store = AsyncStore::open(dir.path().join("hearth.db"), StoreOptions::default())
        .await
        .expect("store");
    let settings = Settings {
        active: BackendKind::Embedded,
        embedded: EmbeddedSettings {
            model: chat_model().to_string_lossy().into_owned(),
            ctx: 2048,
            gpu_layers: "0".into(),
            threads: Some(1),
            ..EmbeddedSettings::default()
        },
        vllm: Some(VllmSettings {
            url: format!("{}/v1", recorder.url()),
            model: None,
            api_key: Some(hearth_manager::settings::Secret::new(TOKEN)),
            stall_timeout_ms: 60_000,
        }),
        ..Settings::default()
    };
    settings.validate().expect("valid settings");
    let manager = BackendManager::new(settings, ManagerOptions::new(hearth()), store);

    let questions = ["My name is Ada.", "Name a color.", "Name an animal."];
    let mut replies = Vec::new();
    for question in questions {
        let turn = manager
            .send(question, SamplingParams::greedy(24), &StopSignal::default(), |_| {})
            .await
            .expect("embedded turn");
        assert_eq!(turn.backend, BackendKind::Embedded);
        assert_eq!(turn.model, "SmolLM2-135M-Instruct-Q4_1");
        assert!(!turn.text.trim().is_empty());
        replies.push(turn.text);
    }

    let switch = manager.switch_backend(BackendKind::Vllm, true).await.expect("switch");
    assert_eq!((switch.from, switch.to), (BackendKind::Embedded, BackendKind::Vllm));
    assert_eq!(switch.model, "gemma-3-270m-Q4_K_M");
    assert_eq!(switch.messages_carried, 6);
    eprintln!("switch to a running server: {:.1} ms", switch.switch_ms);
    let health = manager.health().await;
    assert!(health.ready, "{health:?}");
    let embedded = health
        .backends
        .iter()
        .find(|b| b.backend == BackendKind::Embedded)
        .expect("embedded");
    assert_eq!(
        embedded.loaded_model, None,
        "the engine not in the fallback order is unloaded"
    );

    let turn = manager
        .send(
            "What is my name?",
            SamplingParams::greedy(16),
            &StopSignal::default(),
            |_| {},
        )
        .await
        .expect("turn on the new backend");
    assert_eq!(turn.backend, BackendKind::Vllm);
    assert_eq!(turn.model, "gemma-3-270m-Q4_K_M");

    // Gemma has no chat template: the conversation went as a transcript to /v1/completions.
    let sent = recorder.requests_to("/v1/completions");
    assert_eq!(sent.len(), 1, "{:?}", recorder.requests());
    let body: serde_json::Value = serde_json::from_str(&sent[0].body).expect("json");
    let prompt = body["prompt"].as_str().expect("a text prompt");
    for (question, reply) in questions.iter().zip(&replies) {
        assert!(
            prompt.contains(&format!("User: {question}")),
            "{question:?} missing from {prompt:?}"
        );
        assert!(prompt.contains(reply.trim()), "{reply:?} missing from {prompt:?}");
    }
    assert!(prompt.ends_with("User: What is my name?\nAssistant:"), "{prompt:?}");

    let saved = manager
        .store()
        .list_messages(turn.session.clone().expect("saved"))
        .await
        .expect("history");
    assert_eq!(saved.len(), 8, "four turns, each saved once");
    assert_eq!(saved[7].role, Role::Assistant);
    assert_eq!(saved[7].metadata.backend.as_deref(), Some("vllm"));
    assert_eq!(saved[5].metadata.backend.as_deref(), Some("embedded"));
}
