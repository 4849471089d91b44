//! Property tests: thousands of generated requests, valid, half-valid and garbage,
//! against the router with the scripted backend. None may get a 5xx or crash the
//! server; every error must be in OpenAI's shape; every stream must end with [DONE].

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use hearth_api::testing::ScriptedBackend;
use hearth_api::{router, ApiConfig, Metrics};
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tower::ServiceExt;

fn app() -> Router {
    router(
        Arc::new(ScriptedBackend::new()),
        ApiConfig::new(8080),
        Arc::new(Metrics::new()),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Sends one request and checks the invariants; returns the status.
fn check(rt: &tokio::runtime::Runtime, app: &Router, path: &str, body: Vec<u8>) -> Result<StatusCode, TestCaseError> {
    let request = Request::post(path)
        .header(header::HOST, "localhost:8080")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("request");
    let (status, bytes) = rt.block_on(async {
        let response = app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        (status, response.into_body().collect().await.expect("body").to_bytes())
    });
    prop_assert!(
        !status.is_server_error(),
        "{status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    if status == StatusCode::OK {
        if bytes.starts_with(b"data: ") {
            prop_assert!(String::from_utf8_lossy(&bytes).trim_end().ends_with("data: [DONE]"));
        } else {
            let body: Value = serde_json::from_slice(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(body["choices"][0].is_object());
        }
    } else {
        prop_assert!(status.is_client_error());
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(
            body["error"]["message"].is_string() && body["error"]["code"].is_string(),
            "{body}"
        );
    }
    Ok(status)
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        (-5i64..100_000).prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
        Just(json!("scripted")),
        Just(json!("user")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: &[&str] = &[
    "model",
    "messages",
    "prompt",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "seed",
    "stop",
    "n",
    "logprobs",
    "echo",
    "frequency_penalty",
    "presence_penalty",
];

/// A valid request with some fields replaced or added with arbitrary values.
fn mutated_request() -> impl Strategy<Value = (bool, Vec<u8>)> {
    (
        any::<bool>(),
        prop::collection::vec((prop::sample::select(FIELDS), any_json()), 0..4),
        any::<bool>(),
    )
        .prop_map(|(chat, changes, stream)| {
            let mut body = Map::new();
            body.insert("model".into(), json!("scripted"));
            if chat {
                body.insert("messages".into(), json!([{"role": "user", "content": "hi"}]));
            } else {
                body.insert("prompt".into(), json!("Once upon"));
            }
            body.insert("stream".into(), json!(stream));
            body.insert("max_tokens".into(), json!(4));
            for (field, value) in changes {
                body.insert(field.to_owned(), value);
            }
            (chat, Value::Object(body).to_string().into_bytes())
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_requests_never_get_5xx((chat, body) in mutated_request()) {
        let rt = runtime();
        let path = if chat { "/v1/chat/completions" } else { "/v1/completions" };
        check(&rt, &app(), path, body)?;
    }

    #[test]
    fn arbitrary_json_never_gets_5xx(value in any_json(), chat in any::<bool>()) {
        let rt = runtime();
        let path = if chat { "/v1/chat/completions" } else { "/v1/completions" };
        let status = check(&rt, &app(), path, value.to_string().into_bytes())?;
        prop_assert!(status != StatusCode::OK || value.is_object());
    }

    #[test]
    fn arbitrary_bytes_never_get_5xx(bytes in prop::collection::vec(any::<u8>(), 0..256), chat in any::<bool>()) {
        let rt = runtime();
        let path = if chat { "/v1/chat/completions" } else { "/v1/completions" };
        check(&rt, &app(), path, bytes)?;
    }
}
