//! The OpenAI-compatible client against a real HTTP server (hearth-api on 127.0.0.1
//! over the scripted backend), alone and as the backend of a second server (the shape
//! of `hearth serve` in front of its worker).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hearth_api::testing::{ScriptedBackend, SCRIPTED_MODEL, SCRIPTED_REPLY};
use hearth_api::{router, ApiConfig, Metrics};
use hearth_backends::OpenAiBackend;
use hearth_core::{Backend, BackendError, ChatMessage, GenerateRequest, GenerationEvent, Prompt, SamplingParams};

const TOKEN: &str = "test-token";

async fn server(backend: Arc<dyn Backend>, token: Option<&str>) -> (u16, Arc<Metrics>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let metrics = Arc::new(Metrics::new());
    let config = ApiConfig::new(port).with_token(token.map(str::to_owned));
    tokio::spawn(hearth_api::serve(
        listener,
        router(backend, config, Arc::clone(&metrics)),
        std::future::pending(),
    ));
    (port, metrics)
}

fn client(port: u16, token: Option<&str>) -> OpenAiBackend {
    OpenAiBackend::new(
        "test server",
        &format!("http://127.0.0.1:{port}/v1"),
        token.map(str::to_owned),
    )
    .expect("client")
}

fn chat(model: &str, text: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        model: Some(model.to_owned()),
        prompt: Prompt::Chat(vec![ChatMessage::user(text)]),
        params: SamplingParams::greedy(max_tokens),
    }
}

/// Reads a stream to its end: the text, and the final event or error.
async fn collect(backend: &dyn Backend, request: GenerateRequest) -> Result<(String, GenerationEvent), BackendError> {
    let mut events = backend.generate(request).await?;
    let mut text = String::new();
    while let Some(event) = events.next().await {
        match event? {
            GenerationEvent::Delta { text: t } => text.push_str(&t),
            last => return Ok((text, last)),
        }
    }
    panic!("the stream ended without a final event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_chat_and_text() {
    let (port, _) = server(Arc::new(ScriptedBackend::new()), Some(TOKEN)).await;
    let client = client(port, Some(TOKEN));
    let (text, last) = collect(&client, chat(SCRIPTED_MODEL, "hi", 100)).await.expect("chat");
    assert_eq!(text, SCRIPTED_REPLY);
    let GenerationEvent::Done { metrics } = last else {
        panic!("{last:?}")
    };
    assert_eq!((metrics.prompt_tokens, metrics.completion_tokens), (3, 5));
    let request = GenerateRequest {
        prompt: Prompt::Text("Once".into()),
        ..chat(SCRIPTED_MODEL, "", 2)
    };
    let (text, last) = collect(&client, request).await.expect("text");
    assert_eq!(text, "Hello from ");
    assert!(
        matches!(last, GenerationEvent::Done { metrics } if metrics.finish_reason == hearth_core::FinishReason::Length)
    );
    let models = client.models().await.expect("models");
    assert_eq!(models[0].id, SCRIPTED_MODEL);
    assert!(client.health().await.ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_typed() {
    let backend = Arc::new(ScriptedBackend::new());
    let (port, _) = server(backend.clone(), Some(TOKEN)).await;
    let client = client(port, Some(TOKEN));
    let e = collect(&client, chat("nope", "hi", 5))
        .await
        .expect_err("unknown model");
    assert_eq!(e, BackendError::ModelNotFound { model: "nope".into() });
    let e = collect(&client, chat(SCRIPTED_MODEL, "overflow", 5))
        .await
        .expect_err("overflow");
    // Hearth's own context error comes back typed, with both figures (as vLLM's does).
    assert_eq!(
        e,
        BackendError::ContextOverflow {
            needed: 5000,
            limit: 4096
        }
    );
    let e = collect(&client, chat(SCRIPTED_MODEL, "crash", 5))
        .await
        .expect_err("crash");
    assert!(matches!(e, BackendError::Crashed { .. }), "{e:?}");
    let wrong = self::client(port, Some("wrong"));
    let e = collect(&wrong, chat(SCRIPTED_MODEL, "hi", 5)).await.expect_err("token");
    assert!(matches!(&e, BackendError::Upstream { status: 401, .. }), "{e:?}");
    backend.set_ready(false);
    let health = client.health().await;
    assert_eq!(
        (health.ready, health.reason.as_deref()),
        (false, Some("scripted: not ready"))
    );
    // Nothing listens on a port just freed.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let e = collect(&self::client(free, None), chat(SCRIPTED_MODEL, "hi", 5))
        .await
        .expect_err("unreachable");
    assert!(matches!(e, BackendError::Unavailable { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_stops_the_server_side_generation() {
    let backend = Arc::new(ScriptedBackend::new());
    let (port, metrics) = server(backend.clone(), None).await;
    let client = client(port, None);
    let mut events = client
        .generate(chat(SCRIPTED_MODEL, "forever", 10_000))
        .await
        .expect("start");
    for _ in 0..3 {
        assert!(matches!(events.next().await, Some(Ok(GenerationEvent::Delta { .. }))));
    }
    assert_eq!(backend.live_streams(), 1);
    drop(events);
    // A hang's bound: the server sees the hang-up within a token or two (ms).
    let deadline = Instant::now() + Duration::from_secs(60);
    while backend.live_streams() != 0 || metrics.active_generations() != 0 {
        assert!(Instant::now() < deadline, "the server kept generating");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_passes_statuses_and_streams_through() {
    // inner server (scripted) <- client <- outer server <- client: `hearth serve` in front of a worker.
    let (inner, _) = server(Arc::new(ScriptedBackend::new()), Some(TOKEN)).await;
    let proxy: Arc<dyn Backend> = Arc::new(client(inner, Some(TOKEN)));
    let (outer, _) = server(proxy, None).await;
    let client = client(outer, None);
    let (text, _) = collect(&client, chat(SCRIPTED_MODEL, "hi", 100)).await.expect("chat");
    assert_eq!(text, SCRIPTED_REPLY);
    assert_eq!(
        collect(&client, chat("nope", "hi", 5)).await.expect_err("404"),
        BackendError::ModelNotFound { model: "nope".into() }
    );
    let e = collect(&client, chat(SCRIPTED_MODEL, "overflow", 5))
        .await
        .expect_err("400");
    // Through two hops the overflow keeps its type and figures.
    assert_eq!(
        e,
        BackendError::ContextOverflow {
            needed: 5000,
            limit: 4096
        }
    );
    let e = collect(&client, chat(SCRIPTED_MODEL, "crash", 5))
        .await
        .expect_err("crash");
    assert!(matches!(e, BackendError::Crashed { .. }), "{e:?}");
}
