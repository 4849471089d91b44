//! The API router against the scripted backend, through `tower::ServiceExt::oneshot`
//! (no sockets): response shapes, every kind of bad input, access rules and limits.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use hearth_api::testing::{ScriptedBackend, SCRIPTED_REPLY};
use hearth_api::{router, ApiConfig, Metrics};
use http_body_util::BodyExt;
use tower::ServiceExt;

const PORT: u16 = 8080;
const HOST: &str = "127.0.0.1:8080";

fn app(config: ApiConfig) -> (Router, Arc<ScriptedBackend>, Arc<Metrics>) {
    let backend = Arc::new(ScriptedBackend::new());
    let metrics = Arc::new(Metrics::new());
    (router(backend.clone(), config, Arc::clone(&metrics)), backend, metrics)
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .expect("request")
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, HOST)
        .body(Body::empty())
        .expect("request")
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (parts.status, parts.headers, bytes)
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// An OpenAI-shaped error with the given status; returns its code.
fn assert_error(status: StatusCode, bytes: &[u8], expected: StatusCode) -> String {
    assert_eq!(status, expected, "{}", String::from_utf8_lossy(bytes));
    let body = json(bytes);
    let error = &body["error"];
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(error["type"].is_string(), "{body}");
    assert!(error.get("param").is_some(), "{body}");
    error["code"].as_str().expect("code").to_owned()
}

const CHAT: &str = r#"{"model":"scripted","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn chat_completion_whole() {
    let (router, _, metrics) = app(ApiConfig::new(PORT));
    let (status, _, body) = send(&router, post("/v1/chat/completions", CHAT)).await;
    assert_eq!(status, StatusCode::OK);
    let body = json(&body);
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], SCRIPTED_REPLY);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["usage"]["total_tokens"],
        body["usage"]["prompt_tokens"].as_u64().unwrap_or(0) + 5
    );
    let text = metrics.encode();
    assert!(text.contains("hearth_completion_tokens_total 5"));
    assert!(text.contains("hearth_draft_tokens_total 4"), "{text}");
    assert!(text.contains("hearth_draft_accepted_tokens_total 3"), "{text}");
    // The scripted reply decoded 2 tokens alone and 1 beside another sequence.
    assert!(text.contains("hearth_decode_batch_sequences_count 3"), "{text}");
    assert!(text.contains("hearth_decode_batch_sequences_sum 4.0"), "{text}");
    assert!(
        text.contains("hearth_decode_batch_sequences_bucket{le=\"1.0\"} 2"),
        "{text}"
    );
    // The figures reach the client too (Hearth's extension), so a proxy passes them on.
    assert_eq!(
        body["hearth_metrics"]["decode_batch_sequences"],
        serde_json::json!([2, 1])
    );
}

/// The data lines of an SSE body.
fn sse_data(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn chat_completion_streamed_with_usage() {
    let (router, backend, metrics) = app(ApiConfig::new(PORT));
    let request = r#"{"model":"scripted","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":3}"#;
    let (status, headers, body) = send(&router, post("/v1/chat/completions", request)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<serde_json::Value> = data[..data.len() - 1].iter().map(|d| json(d.as_bytes())).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello from the ");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], serde_json::json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    assert_eq!((backend.live_streams(), metrics.active_generations()), (0, 0));
}

#[tokio::test]
async fn usage_only_when_asked() {
    let (router, _, _) = app(ApiConfig::new(PORT));
    let request = r#"{"model":"scripted","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
    let (_, _, body) = send(&router, post("/v1/chat/completions", request)).await;
    let data = sse_data(&body);
    assert!(data.iter().all(|d| !d.contains("\"usage\"")), "{data:?}");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn completions_whole_and_streamed() {
    let (router, _, _) = app(ApiConfig::new(PORT));
    let (status, _, body) = send(
        &router,
        post(
            "/v1/completions",
            r#"{"model":"scripted","prompt":"Once","max_tokens":2}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let body = json(&body);
    assert_eq!(
        (body["object"].as_str(), body["choices"][0]["text"].as_str()),
        (Some("text_completion"), Some("Hello from "))
    );
    let (_, _, body) = send(
        &router,
        post(
            "/v1/completions",
            r#"{"model":"scripted","prompt":["Once"],"stream":true}"#,
        ),
    )
    .await;
    let data = sse_data(&body);
    let text: String = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| json(d.as_bytes())["choices"][0]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, SCRIPTED_REPLY);
}

#[tokio::test]
async fn models_and_health() {
    let (router, backend, _) = app(ApiConfig::new(PORT));
    let (status, _, body) = send(&router, get("/v1/models")).await;
    assert_eq!(status, StatusCode::OK);
    let body = json(&body);
    assert_eq!(
        (body["object"].as_str(), body["data"][0]["id"].as_str()),
        (Some("list"), Some("scripted"))
    );
    let (status, _, _) = send(&router, get("/v1/models/scripted")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = send(&router, get("/v1/models/nope")).await;
    assert_eq!(assert_error(status, &body, StatusCode::NOT_FOUND), "model_not_found");
    assert_eq!(send(&router, get("/health")).await.0, StatusCode::OK);
    assert_eq!(send(&router, get("/health/ready")).await.0, StatusCode::OK);
    backend.set_ready(false);
    let (status, headers, body) = send(&router, get("/health/ready")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key(header::RETRY_AFTER));
    assert_eq!(json(&body)["reason"], "scripted: not ready");
    assert_eq!(send(&router, get("/health")).await.0, StatusCode::OK);
    let (status, _, body) = send(&router, post("/v1/chat/completions", CHAT)).await;
    assert_eq!(
        assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE),
        "model_not_loaded"
    );
}

#[tokio::test]
async fn bad_requests_get_openai_shaped_4xx() {
    let (router, backend, _) = app(ApiConfig::new(PORT));
    let user = r#""messages":[{"role":"user","content":"hi"}]"#;
    let cases: Vec<(String, StatusCode, Option<&str>)> = vec![
        ("{".into(), StatusCode::BAD_REQUEST, None),
        ("".into(), StatusCode::BAD_REQUEST, None),
        ("[]".into(), StatusCode::BAD_REQUEST, None),
        ("null".into(), StatusCode::BAD_REQUEST, None),
        (r#"{"model":"scripted"}"#.into(), StatusCode::BAD_REQUEST, None),
        (
            r#"{"model":5,"messages":[]}"#.into(),
            StatusCode::BAD_REQUEST,
            Some("model"),
        ),
        (
            r#"{"model":"scripted","messages":"hi"}"#.into(),
            StatusCode::BAD_REQUEST,
            Some("messages"),
        ),
        (
            format!(r#"{{"model":"scripted",{user},"max_tokens":-1}}"#),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
        ),
        (
            format!(r#"{{"model":"scripted",{user},"max_tokens":99999999999}}"#),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
        ),
        (
            format!(r#"{{"model":"scripted",{user},"max_tokens":1000000}}"#),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
        ),
        (
            format!(r#"{{"model":"scripted",{user},"max_tokens":"5"}}"#),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
        ),
        (
            format!(r#"{{"model":"scripted",{user},"temperature":NaN}}"#),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            format!(r#"{{"model":"scripted",{user},"temperature":-0.5}}"#),
            StatusCode::BAD_REQUEST,
            Some("temperature"),
        ),
        (
            format!(r#"{{"model":"scripted",{user},"top_p":2}}"#),
            StatusCode::BAD_REQUEST,
            Some("top_p"),
        ),
        (
            format!(r#"{{"model":"scripted",{user},"stream":"yes"}}"#),
            StatusCode::BAD_REQUEST,
            Some("stream"),
        ),
        (
            format!(r#"{{"model":"scripted",{user},"stop":[""]}}"#),
            StatusCode::BAD_REQUEST,
            Some("stop"),
        ),
        (
            format!(r#"{{"model":"other",{user}}}"#),
            StatusCode::NOT_FOUND,
            Some("model"),
        ),
        (
            r#"{"model":"scripted","messages":[{"role":"user","content":"overflow"}]}"#.into(),
            StatusCode::BAD_REQUEST,
            Some("messages"),
        ),
    ];
    for (body, expected, param) in cases {
        let (status, _, bytes) = send(&router, post("/v1/chat/completions", body.clone())).await;
        assert_error(status, &bytes, expected);
        if let Some(param) = param {
            assert_eq!(json(&bytes)["error"]["param"], param, "{body}");
        }
    }
    // Invalid UTF-8, a wrong content type, no content type.
    let (status, _, bytes) = send(&router, post("/v1/chat/completions", &b"{\"model\":\"\xff\xfe\"}"[..])).await;
    assert_error(status, &bytes, StatusCode::BAD_REQUEST);
    let request = Request::post("/v1/chat/completions")
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(CHAT))
        .expect("request");
    let (status, _, bytes) = send(&router, request).await;
    assert_error(status, &bytes, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let request = Request::post("/v1/completions")
        .header(header::HOST, HOST)
        .body(Body::from(CHAT))
        .expect("request");
    let (status, _, bytes) = send(&router, request).await;
    assert_error(status, &bytes, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Unknown routes and methods.
    let (status, _, bytes) = send(&router, get("/v1/nothing")).await;
    assert_error(status, &bytes, StatusCode::NOT_FOUND);
    let (status, _, bytes) = send(&router, get("/v1/chat/completions")).await;
    assert_error(status, &bytes, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(backend.started(), 0, "no bad request may reach the backend");
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let (router, _, metrics) = app(ApiConfig::new(PORT));
    let big = format!(
        r#"{{"model":"scripted","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(10 << 20)
    );
    let (status, _, bytes) = send(&router, post("/v1/chat/completions", big)).await;
    assert_eq!(
        assert_error(status, &bytes, StatusCode::PAYLOAD_TOO_LARGE),
        "request_too_large"
    );
    assert!(metrics
        .encode()
        .contains("hearth_errors_total{code=\"request_too_large\"} 1"));
}

#[tokio::test]
async fn tokens_and_hosts() {
    let (router, _, _) = app(ApiConfig::new(PORT).with_token(Some("s3cret".into())));
    let (status, headers, bytes) = send(&router, post("/v1/chat/completions", CHAT)).await;
    assert_eq!(
        assert_error(status, &bytes, StatusCode::UNAUTHORIZED),
        "invalid_api_key"
    );
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    let with = |token: &str| {
        let mut request = post("/v1/chat/completions", CHAT);
        request.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header"),
        );
        request
    };
    let (status, _, bytes) = send(&router, with("wrong")).await;
    assert_error(status, &bytes, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&router, with("s3cret")).await.0, StatusCode::OK);
    let (status, _, bytes) = send(&router, get("/metrics")).await;
    assert_error(status, &bytes, StatusCode::UNAUTHORIZED);
    // Health probes stay open; the Host check still applies to them.
    assert_eq!(send(&router, get("/health/ready")).await.0, StatusCode::OK);
    for host in ["evil.example:8080", "localhost:9999", "127.0.0.1"] {
        let request = Request::get("/health")
            .header(header::HOST, host)
            .body(Body::empty())
            .expect("request");
        let (status, _, bytes) = send(&router, request).await;
        assert_eq!(
            assert_error(status, &bytes, StatusCode::FORBIDDEN),
            "host_not_allowed",
            "{host}"
        );
    }
    for host in ["localhost:8080", "[::1]:8080"] {
        let request = Request::get("/health")
            .header(header::HOST, host)
            .body(Body::empty())
            .expect("request");
        assert_eq!(send(&router, request).await.0, StatusCode::OK, "{host}");
    }
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let config = ApiConfig {
        max_concurrent: 1,
        max_queued: 0,
        ..ApiConfig::new(PORT)
    };
    let (router, backend, metrics) = app(config);
    let forever = r#"{"model":"scripted","messages":[{"role":"user","content":"forever"}],"stream":true}"#;
    let response = router
        .clone()
        .oneshot(post("/v1/chat/completions", forever))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(metrics.active_generations(), 1);
    let (status, headers, bytes) = send(&router, post("/v1/chat/completions", CHAT)).await;
    assert_eq!(
        assert_error(status, &bytes, StatusCode::TOO_MANY_REQUESTS),
        "rate_limit_exceeded"
    );
    assert_eq!(headers[header::RETRY_AFTER], "2");
    // Dropping the streamed body (a client hanging up) frees the slot and cancels the stream.
    drop(response);
    assert_eq!((metrics.active_generations(), backend.live_streams()), (0, 0));
    assert_eq!(
        send(&router, post("/v1/chat/completions", CHAT)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_crash_mid_stream_is_sent_as_an_error_event() {
    let (router, _, metrics) = app(ApiConfig::new(PORT));
    let request = r#"{"model":"scripted","messages":[{"role":"user","content":"crash"}],"stream":true}"#;
    let (status, _, body) = send(&router, post("/v1/chat/completions", request)).await;
    assert_eq!(status, StatusCode::OK);
    let data = sse_data(&body);
    let error = data
        .iter()
        .map(|d| d.as_str())
        .find(|d| d.contains("\"error\""))
        .expect("an error event");
    assert_eq!(json(error.as_bytes())["error"]["code"], "backend_crashed");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert!(metrics
        .encode()
        .contains("hearth_errors_total{code=\"backend_crashed\"} 1"));
    // Whole replies get the error as their status.
    let request = r#"{"model":"scripted","messages":[{"role":"user","content":"crash"}]}"#;
    let (status, _, bytes) = send(&router, post("/v1/chat/completions", request)).await;
    assert_eq!(
        assert_error(status, &bytes, StatusCode::SERVICE_UNAVAILABLE),
        "backend_crashed"
    );
}

#[tokio::test]
async fn health_says_how_many_generations_run_at_once() {
    let config = ApiConfig {
        max_concurrent: 3,
        ..ApiConfig::new(PORT)
    };
    let (router, _, _) = app(config);
    let (status, _, body) = send(&router, get("/health")).await;
    assert_eq!(status, StatusCode::OK);
    let health: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(
        health,
        serde_json::json!({"status": "ok", "slots": 3, "slots_busy": 0, "queued": 0})
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let (router, _, _) = app(ApiConfig::new(PORT));
    send(&router, post("/v1/chat/completions", CHAT)).await;
    send(&router, post("/v1/chat/completions", "{")).await;
    let (status, headers, body) = send(&router, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap_or("")
        .starts_with("application/openmetrics-text"));
    let text = String::from_utf8_lossy(&body);
    for needle in [
        r#"hearth_http_requests_total{route="/v1/chat/completions",method="POST",status="200"} 1"#,
        r#"hearth_http_requests_total{route="/v1/chat/completions",method="POST",status="400"} 1"#,
        r#"hearth_errors_total{code="invalid_request"} 1"#,
        "hearth_time_to_first_token_seconds_count 1",
        "hearth_decode_tokens_per_second_count 1",
        "hearth_active_generations 0",
        "hearth_slots 1",
        "hearth_queued_requests 0",
        "hearth_process_resident_memory_bytes ",
        "# EOF",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}
