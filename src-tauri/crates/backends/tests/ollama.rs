//! OllamaBackend against a fake Ollama on 127.0.0.1 (tests/common/ollama_server.rs)
//! and, when OLLAMA_HOST is set, against a real one.

#[path = "common/ollama_server.rs"]
mod ollama_server;

use std::time::Duration;

use futures_util::StreamExt;
use hearth_backends::{KeepAlive, OllamaBackend, OllamaOptions};
use hearth_core::{
    Backend, BackendError, ChatMessage, EventStream, FinishReason, GenerateRequest, GenerationEvent, Health, Prompt,
    SamplingParams,
};
use ollama_server::{chat_line, done_line, generate_line, FakeOllama, Part, Reply};
use serde_json::json;
use tokio::sync::oneshot;

const MODEL: &str = "llama3.2:latest";
const NUM_CTX: u32 = 8192;

type Item = Result<GenerationEvent, BackendError>;

fn backend(url: &str) -> OllamaBackend {
    let options = OllamaOptions {
        num_ctx: NUM_CTX,
        keep_alive: None,
    };
    OllamaBackend::new("ollama", url, options).expect("backend")
}

fn chat(model: &str, text: &str) -> GenerateRequest {
    GenerateRequest {
        model: Some(model.to_owned()),
        prompt: Prompt::Chat(vec![ChatMessage::user(text)]),
        params: SamplingParams::greedy(64),
    }
}

/// Every item of a generation, to the end of the stream; a stream that hangs fails the test.
async fn items(stream: EventStream) -> Vec<Item> {
    tokio::time::timeout(Duration::from_secs(60), stream.collect::<Vec<_>>())
        .await
        .expect("the stream hung")
}

async fn generate(backend: &OllamaBackend, request: GenerateRequest) -> Vec<Item> {
    items(backend.generate(request).await.expect("generate")).await
}

fn text_of(items: &[Item]) -> String {
    items
        .iter()
        .filter_map(|item| match item {
            Ok(GenerationEvent::Delta { text }) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn free_port() -> u16 {
    // Nothing listens on a port just freed.
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_streams_text_and_maps_ollamas_metrics() {
    let server = FakeOllama::start(&[(MODEL, Some(131_072))]).await;
    let items = generate(&backend(&server.url), chat(MODEL, "hi")).await;
    assert_eq!(text_of(&items), "Hello from Ollama");
    assert_eq!(items.len(), 4, "{items:?}");
    let Some(Ok(GenerationEvent::Done { metrics })) = items.last() else {
        panic!("{items:?}")
    };
    assert_eq!(
        (
            metrics.prompt_tokens,
            metrics.prompt_tokens_evaluated,
            metrics.completion_tokens
        ),
        (20, 20, 5)
    );
    assert_eq!((metrics.prompt_tps, metrics.decode_tps), (80.0, 50.0));
    assert_eq!((metrics.load_ms, metrics.total_ms), (500.0, 2000.0));
    assert_eq!(metrics.finish_reason, FinishReason::Stop);
    assert!(metrics.ttft_ms > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_split_across_reads_is_put_back_together() {
    let server = FakeOllama::start(&[(MODEL, None)]).await;
    let split = chat_line(MODEL, "wörld").into_bytes();
    // Cut inside the two bytes of "ö".
    let cut = split.iter().position(|&b| b == 0xC3).expect("ö") + 1;
    let mut first = format!("{}\n", chat_line(MODEL, "Hello ")).into_bytes();
    first.extend_from_slice(&split[..cut]);
    let mut second = split[cut..].to_vec();
    // The rest of the line and two more objects in one write.
    second.extend(
        format!(
            "\n{}\n{}\n",
            chat_line(MODEL, "!"),
            done_line(MODEL, "/api/chat", "stop")
        )
        .bytes(),
    );
    let (go, wait) = oneshot::channel();
    server.script(Reply::Stream(vec![
        Part::Bytes(first),
        Part::Wait(wait),
        Part::Bytes(second),
    ]));

    let mut stream = backend(&server.url).generate(chat(MODEL, "hi")).await.expect("start");
    let delta = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("hung");
    assert_eq!(delta, Some(Ok(GenerationEvent::Delta { text: "Hello ".into() })));
    // Only now does the server send the rest of the half line the client holds.
    go.send(()).expect("the server waits");
    let rest = items(stream).await;
    assert_eq!(text_of(&rest), "wörld!");
    assert_eq!(rest.len(), 3, "{rest:?}");
    assert!(
        matches!(rest.last(), Some(Ok(GenerationEvent::Done { .. }))),
        "{rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_line_ends_the_stream_with_a_typed_error() {
    let server = FakeOllama::start(&[(MODEL, None)]).await;
    let backend = backend(&server.url);
    let truncated = r#"{"model":"llama3.2:latest","message":{"role":"assistant","content":"B"#;
    for (bad, why) in [
        (truncated, "EOF"),
        (r#"{"status":"thinking"}"#, "neither `done` nor `error`"),
    ] {
        server.script(Reply::Stream(vec![
            Part::line(&chat_line(MODEL, "A")),
            Part::line(bad),
            Part::line(&chat_line(MODEL, "C")),
            Part::line(&done_line(MODEL, "/api/chat", "stop")),
        ]));
        let items = generate(&backend, chat(MODEL, "hi")).await;
        // Nothing after the bad line: not "C", not a Done that would pass for a whole reply.
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(text_of(&items), "A");
        match &items[1] {
            Err(BackendError::Failed { code, message })
                if *code == hearth_core::ErrorCode::OllamaBadChunk
                    && message.contains(bad)
                    && message.contains(why) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_line_mid_stream_is_typed() {
    let server = FakeOllama::start(&[(MODEL, None)]).await;
    let backend = backend(&server.url);
    let cuda = "an error was encountered while running the model: CUDA error: out of memory";
    let overflow = "the input length (9000 tokens) exceeds the context length (8192)";
    server.script(Reply::Stream(vec![
        Part::line(&chat_line(MODEL, "A")),
        Part::line(&json!({ "error": cuda }).to_string()),
        Part::line(&done_line(MODEL, "/api/chat", "stop")),
    ]));
    server.script(Reply::Stream(vec![Part::line(
        &json!({ "error": overflow }).to_string(),
    )]));
    let items = generate(&backend, chat(MODEL, "hi")).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(
        items[1],
        Ok(GenerationEvent::Error {
            code: hearth_core::ErrorCode::OllamaError,
            message: cuda.into()
        })
    );
    let items = generate(&backend, chat(MODEL, "hi")).await;
    assert_eq!(
        items,
        vec![Err(BackendError::ContextOverflow {
            needed: 9000,
            limit: 8192
        })]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_model_is_model_not_found_before_the_stream() {
    let server = FakeOllama::start(&[(MODEL, None)]).await;
    let backend = backend(&server.url);
    let e = backend.generate(chat("nope", "hi")).await.err().expect("unknown model");
    assert_eq!(e, BackendError::ModelNotFound { model: "nope".into() });
    assert_eq!(server.requests("/api/chat").len(), 1);
    let e = backend.load("nope").await.expect_err("unknown model");
    assert_eq!(e, BackendError::ModelNotFound { model: "nope".into() });
    let no_model = GenerateRequest {
        model: None,
        ..chat(MODEL, "hi")
    };
    assert_eq!(backend.generate(no_model).await.err(), Some(BackendError::NotLoaded));
    let bad_params = GenerateRequest {
        params: SamplingParams::greedy(0),
        ..chat(MODEL, "hi")
    };
    let e = backend.generate(bad_params).await.err().expect("max_tokens 0");
    assert!(matches!(&e, BackendError::InvalidRequest { param: Some(p), .. } if p == "max_tokens"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_error_answers_are_typed() {
    let server = FakeOllama::start(&[(MODEL, None)]).await;
    let backend = backend(&server.url);
    let body = |message: &str| json!({ "error": message }).to_string();
    server.script(Reply::Status(400, body("json: cannot unmarshal string into options")));
    server.script(Reply::Status(
        500,
        body("llama runner process has terminated: exit status 2"),
    ));
    server.script(Reply::Status(
        503,
        body("server busy, please try again.  maximum pending requests exceeded"),
    ));
    server.script(Reply::Status(502, "<html>bad gateway</html>".into()));
    let mut errors = Vec::new();
    for _ in 0..4 {
        errors.push(backend.generate(chat(MODEL, "hi")).await.err().expect("error answer"));
    }
    assert!(
        matches!(&errors[0], BackendError::InvalidRequest { message, .. } if message.contains("unmarshal")),
        "{errors:?}"
    );
    assert!(!errors[0].is_transient());
    assert!(
        matches!(&errors[1], BackendError::Upstream { status: 500, message, .. } if message.contains("runner")),
        "{errors:?}"
    );
    assert!(errors[1].is_transient());
    assert!(matches!(&errors[2], BackendError::Busy { .. }), "{errors:?}");
    assert!(
        matches!(&errors[3], BackendError::Upstream { status: 502, message, .. } if message.contains("bad gateway")),
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_ends_before_done_is_an_error() {
    let server = FakeOllama::start(&[(MODEL, None)]).await;
    let backend = backend(&server.url);
    // After the first text the body ends cleanly but without the final chunk, or the
    // connection is cut; the server waits for the test so the text is out first.
    let cases = [
        (None, "Ollama closed the stream before the reply was complete"),
        (Some(Part::Cut), "broke"),
    ];
    for (end, expected) in cases {
        let (go, wait) = oneshot::channel();
        server.script(Reply::Stream(
            [Part::line(&chat_line(MODEL, "A")), Part::Wait(wait)]
                .into_iter()
                .chain(end)
                .collect(),
        ));
        let mut stream = backend.generate(chat(MODEL, "hi")).await.expect("start");
        let first = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("hung");
        assert_eq!(first, Some(Ok(GenerationEvent::Delta { text: "A".into() })));
        go.send(()).expect("the server waits");
        let rest = items(stream).await;
        match &rest[..] {
            [Err(e @ BackendError::Unavailable { cause, .. })] if cause.contains(expected) => assert!(e.is_transient()),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_and_health() {
    let server = FakeOllama::start(&[(MODEL, Some(131_072)), ("tiny:1b", Some(2048)), ("odd:latest", None)]).await;
    let backend = backend(&server.url);
    let models = backend.models().await.expect("models");
    let summary: Vec<_> = models.iter().map(|m| (m.id.as_str(), m.context_length)).collect();
    // num_ctx, capped at what the model was trained for; unknown when /api/show does not say.
    assert_eq!(
        summary,
        vec![(MODEL, Some(NUM_CTX)), ("tiny:1b", Some(2048)), ("odd:latest", None)]
    );
    assert!(models
        .iter()
        .all(|m| m.has_chat_template == Some(true) && m.owned_by == "ollama"));
    assert_eq!(server.requests("/api/show").len(), 3);

    // Ollama loads models on demand, so it can serve before any load.
    let health = backend.health().await;
    assert!(health.ready && health.model.is_none(), "{health:?}");
    backend
        .load("llama3.2")
        .await
        .expect("load (the :latest tag is implied)");
    assert_eq!(backend.health().await, Health::ready(MODEL));
    server.remove_model(MODEL);
    let health = backend.health().await;
    assert!(!health.ready);
    let reason = health.reason.expect("reason");
    assert!(
        reason.contains("is not pulled") && reason.contains("`ollama pull llama3.2:latest`"),
        "{reason}"
    );

    let empty = FakeOllama::start(&[]).await;
    let health = self::backend(&empty.url).health().await;
    assert!(!health.ready && health.reason.is_some_and(|r| r.contains("has no models")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_ollama_is_reported_as_such() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let backend = backend(&url);
    let health = backend.health().await;
    assert!(!health.ready);
    let reason = health.reason.expect("reason");
    assert!(
        reason.contains(&format!("Ollama at {url} is not reachable")),
        "{reason}"
    );
    for e in [
        backend.models().await.expect_err("models"),
        backend.load(MODEL).await.expect_err("load"),
        backend.generate(chat(MODEL, "hi")).await.err().expect("generate"),
    ] {
        assert!(
            matches!(&e, BackendError::Unavailable { cause, .. } if cause.contains(&url)),
            "{e:?}"
        );
        assert!(e.is_transient());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn num_ctx_and_every_sampling_option_are_sent() {
    let server = FakeOllama::start(&[(MODEL, None)]).await;
    let options = OllamaOptions {
        num_ctx: NUM_CTX,
        keep_alive: Some(KeepAlive::Indefinitely),
    };
    let backend = OllamaBackend::new("ollama", &server.url, options).expect("backend");
    let params = SamplingParams {
        temperature: 0.5,
        top_k: 30,
        top_p: 0.75,
        min_p: 0.125,
        repeat_penalty: 1.5,
        repeat_last_n: 128,
        seed: 4_000_000_000,
        max_tokens: 77,
        stop: vec!["\nUser:".into()],
        frequency_penalty: 0.25,
        presence_penalty: -0.5,
        logit_bias: Vec::new(),
    };
    let messages = vec![
        ChatMessage::system("Be brief."),
        ChatMessage::user("hi"),
        ChatMessage::assistant("Hello."),
        ChatMessage::user("again"),
    ];
    server.script(Reply::Stream(vec![
        Part::line(&chat_line(MODEL, "Hi")),
        Part::line(&done_line(MODEL, "/api/chat", "length")),
    ]));
    let request = GenerateRequest {
        model: Some(MODEL.into()),
        prompt: Prompt::Chat(messages),
        params,
    };
    let items = generate(&backend, request).await;
    assert!(
        matches!(items.last(), Some(Ok(GenerationEvent::Done { metrics })) if metrics.finish_reason == FinishReason::Length),
        "{items:?}"
    );
    let body = &server.requests("/api/chat")[0];
    assert_eq!(
        (&body["model"], &body["stream"], &body["keep_alive"]),
        (&json!(MODEL), &json!(true), &json!(-1))
    );
    let roles: Vec<_> = body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| (m["role"].clone(), m["content"].clone()))
        .collect();
    assert_eq!(
        roles,
        [
            ("system", "Be brief."),
            ("user", "hi"),
            ("assistant", "Hello."),
            ("user", "again")
        ]
        .map(|(r, c)| (json!(r), json!(c)))
    );
    // The values are exact in f32, so they compare exactly after the round trip.
    assert_eq!(
        body["options"],
        json!({
            "num_ctx": NUM_CTX, "temperature": 0.5, "top_k": 30, "top_p": 0.75, "min_p": 0.125,
            "repeat_penalty": 1.5, "repeat_last_n": 128, "seed": 4_000_000_000u32, "num_predict": 77,
            "stop": ["\nUser:"], "frequency_penalty": 0.25, "presence_penalty": -0.5,
        })
    );

    // With no stop strings none are sent, so the Modelfile's stay in force.
    generate(&backend, chat(MODEL, "hi")).await;
    let body = &server.requests("/api/chat")[1];
    assert_eq!(
        (&body["options"]["num_ctx"], &body["options"]["temperature"]),
        (&json!(NUM_CTX), &json!(0.0))
    );
    assert!(body["options"].get("stop").is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_prompts_go_raw_to_generate() {
    let server = FakeOllama::start(&[(MODEL, None)]).await;
    server.script(Reply::Stream(vec![
        Part::line(&generate_line(MODEL, "Once")),
        Part::line(&generate_line(MODEL, " upon")),
        Part::line(&done_line(MODEL, "/api/generate", "length")),
    ]));
    let request = GenerateRequest {
        prompt: Prompt::Text("Once upon a time".into()),
        ..chat(MODEL, "")
    };
    let items = generate(&backend(&server.url), request).await;
    assert_eq!(text_of(&items), "Once upon");
    assert!(
        matches!(items.last(), Some(Ok(GenerationEvent::Done { metrics })) if metrics.finish_reason == FinishReason::Length),
        "{items:?}"
    );
    assert!(server.requests("/api/chat").is_empty());
    let body = &server.requests("/api/generate")[0];
    assert_eq!(
        (
            &body["prompt"],
            &body["raw"],
            &body["stream"],
            &body["options"]["num_ctx"]
        ),
        (&json!("Once upon a time"), &json!(true), &json!(true), &json!(NUM_CTX))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_preloads_with_num_ctx_and_unload_frees() {
    let server = FakeOllama::start(&[(MODEL, None)]).await;
    let backend = backend(&server.url);
    backend.load(MODEL).await.expect("load");
    let no_model = GenerateRequest {
        model: None,
        ..chat(MODEL, "hi")
    };
    let items = generate(&backend, no_model.clone()).await;
    assert_eq!(text_of(&items), "Hello from Ollama");
    backend.unload().await.expect("unload");
    assert_eq!(backend.generate(no_model).await.err(), Some(BackendError::NotLoaded));
    let requests = server.requests("/api/generate");
    assert_eq!(requests.len(), 2, "{requests:?}");
    let (load, unload) = (&requests[0], &requests[1]);
    assert_eq!((&load["prompt"], &load["stream"]), (&json!(""), &json!(false)));
    assert_eq!(load["options"]["num_ctx"], json!(NUM_CTX));
    assert_eq!((&unload["model"], &unload["keep_alive"]), (&json!(MODEL), &json!(0)));
    assert_eq!(server.requests("/api/chat")[0]["model"], json!(MODEL));
}

#[test]
fn bad_settings_are_rejected_by_name() {
    let e = OllamaBackend::new("ollama", "localhost:11434", OllamaOptions::default()).err();
    assert!(
        matches!(&e, Some(BackendError::InvalidRequest { param: Some(p), message }) if p == "url" && message.contains("localhost:11434")),
        "{e:?}"
    );
    let options = OllamaOptions {
        num_ctx: 0,
        keep_alive: None,
    };
    let e = OllamaBackend::new("ollama", "http://127.0.0.1:11434", options).err();
    assert!(matches!(&e, Some(BackendError::InvalidRequest { param: Some(p), .. }) if p == "num_ctx"));
}

/// Opt-in: `OLLAMA_HOST=127.0.0.1:11434 OLLAMA_MODEL=qwen2.5:0.5b cargo test -p hearth-backends --test ollama -- --ignored`.
#[test]
#[ignore = "needs a real Ollama: set OLLAMA_HOST and OLLAMA_MODEL and run with --ignored"]
fn real_ollama_when_ollama_host_is_set() {
    let host = std::env::var("OLLAMA_HOST").expect("set OLLAMA_HOST (and OLLAMA_MODEL) to test against a real Ollama");
    let model = std::env::var("OLLAMA_MODEL").expect("set OLLAMA_MODEL to a model pulled into that Ollama");
    let url = if host.contains("://") {
        host
    } else {
        format!("http://{host}")
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let backend = OllamaBackend::new("ollama", &url, OllamaOptions::default()).expect("backend");
        let models = backend.models().await.expect("models");
        eprintln!("Ollama at {url} has {} models", models.len());
        backend.load(&model).await.expect("load");
        assert!(backend.health().await.ready);
        let request = GenerateRequest {
            model: None,
            prompt: Prompt::Chat(vec![ChatMessage::user("Say hello in one word.")]),
            params: SamplingParams::greedy(16),
        };
        let items = generate(&backend, request).await;
        assert!(!text_of(&items).trim().is_empty(), "{items:?}");
        match items.last() {
            Some(Ok(GenerationEvent::Done { metrics })) => {
                assert!((1..=16).contains(&metrics.completion_tokens), "{metrics:?}");
                assert!(metrics.prompt_tokens > 0 && metrics.decode_tps > 0.0, "{metrics:?}");
            }
            other => panic!("{other:?}"),
        }
        backend.unload().await.expect("unload");
    });
}
