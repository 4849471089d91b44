//! A fake Ollama on 127.0.0.1 that speaks the wire format of Ollama's docs/api.md:
//! `/api/version`, `/api/tags`, `/api/show`, and `/api/chat`, `/api/generate` answering
//! with NDJSON streams. Tests script the next reply part by part (including pauses
//! that wait for the test, and a cut connection) and read back the request bodies.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub const CREATED_AT: &str = "2025-01-01T00:00:00.000000Z";

/// One piece of a scripted reply body.
pub enum Part {
    /// Bytes written as one body frame.
    Bytes(Vec<u8>),
    /// Sends nothing until the test fires the other end.
    Wait(oneshot::Receiver<()>),
    /// Cuts the connection (the body fails, so the final chunk never goes out).
    Cut,
}

impl Part {
    pub fn line(json: &str) -> Self {
        Part::Bytes(format!("{json}\n").into_bytes())
    }
}

pub enum Reply {
    Stream(Vec<Part>),
    /// An error answer: status and body.
    Status(u16, String),
}

struct Model {
    name: String,
    trained_context: Option<u64>,
}

#[derive(Default)]
struct Inner {
    models: Mutex<Vec<Model>>,
    requests: Mutex<Vec<(String, Value)>>,
    replies: Mutex<VecDeque<Reply>>,
}

pub struct FakeOllama {
    pub url: String,
    inner: Arc<Inner>,
}

impl FakeOllama {
    /// Starts a server that has pulled `models` (name, trained context if `/api/show` tells it).
    pub async fn start(models: &[(&str, Option<u64>)]) -> Self {
        let inner = Arc::new(Inner::default());
        *inner.models.lock().expect("lock") = models
            .iter()
            .map(|(name, trained_context)| Model {
                name: (*name).to_owned(),
                trained_context: *trained_context,
            })
            .collect();
        let app = Router::new()
            .route("/api/version", get(|| async { Json(json!({"version": "0.12.6"})) }))
            .route("/api/tags", get(tags))
            .route("/api/show", post(show))
            .route(
                "/api/chat",
                post(|state: State<Arc<Inner>>, body: Json<Value>| reply(state, "/api/chat", body)),
            )
            .route(
                "/api/generate",
                post(|state: State<Arc<Inner>>, body: Json<Value>| reply(state, "/api/generate", body)),
            )
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://127.0.0.1:{port}"),
            inner,
        }
    }

    /// The reply to the next generation (`/api/chat`, or `/api/generate` with a prompt).
    pub fn script(&self, reply: Reply) {
        self.inner.replies.lock().expect("lock").push_back(reply);
    }

    /// The bodies received on `path`, oldest first.
    pub fn requests(&self, path: &str) -> Vec<Value> {
        let requests = self.inner.requests.lock().expect("lock");
        requests
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }

    pub fn remove_model(&self, name: &str) {
        self.inner.models.lock().expect("lock").retain(|m| m.name != name);
    }
}

/// A `/api/chat` chunk with text.
pub fn chat_line(model: &str, text: &str) -> String {
    json!({"model": model, "created_at": CREATED_AT, "message": {"role": "assistant", "content": text}, "done": false})
        .to_string()
}

/// A `/api/generate` chunk with text.
pub fn generate_line(model: &str, text: &str) -> String {
    json!({"model": model, "created_at": CREATED_AT, "response": text, "done": false}).to_string()
}

/// The final chunk: 20 prompt tokens in 250 ms (80 t/s), 5 generated in 100 ms (50 t/s),
/// 500 ms loading, 2 s in all.
pub fn done_line(model: &str, path: &str, reason: &str) -> String {
    let mut line = json!({
        "model": model, "created_at": CREATED_AT, "done": true, "done_reason": reason,
        "total_duration": 2_000_000_000u64, "load_duration": 500_000_000u64,
        "prompt_eval_count": 20, "prompt_eval_duration": 250_000_000u64,
        "eval_count": 5, "eval_duration": 100_000_000u64,
    });
    if path == "/api/chat" {
        line["message"] = json!({"role": "assistant", "content": ""});
    } else {
        line["response"] = json!("");
    }
    line.to_string()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn not_found(model: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("model \"{model}\" not found, try pulling it first"),
    )
}

async fn tags(State(inner): State<Arc<Inner>>) -> Json<Value> {
    let models = inner.models.lock().expect("lock");
    let list: Vec<Value> = models
        .iter()
        .map(|m| {
            json!({
                "name": m.name, "model": m.name, "modified_at": CREATED_AT, "size": 1_234_567,
                "digest": "0123456789abcdef",
                "details": {"format": "gguf", "family": "llama", "parameter_size": "1B", "quantization_level": "Q4_K_M"},
            })
        })
        .collect();
    Json(json!({ "models": list }))
}

async fn show(State(inner): State<Arc<Inner>>, Json(body): Json<Value>) -> Response {
    inner
        .requests
        .lock()
        .expect("lock")
        .push(("/api/show".into(), body.clone()));
    let name = body["model"].as_str().or_else(|| body["name"].as_str()).unwrap_or("");
    let models = inner.models.lock().expect("lock");
    let Some(model) = models.iter().find(|m| m.name == name) else {
        return not_found(name);
    };
    let mut model_info = json!({"general.architecture": "llama"});
    if let Some(trained) = model.trained_context {
        model_info["llama.context_length"] = json!(trained);
    }
    Json(json!({
        "license": "", "modelfile": "FROM x", "parameters": "", "template": "{{ .Prompt }}",
        "details": {"format": "gguf", "family": "llama"}, "model_info": model_info,
        "capabilities": ["completion"],
    }))
    .into_response()
}

async fn reply(State(inner): State<Arc<Inner>>, path: &'static str, Json(body): Json<Value>) -> Response {
    inner.requests.lock().expect("lock").push((path.into(), body.clone()));
    let model = body["model"].as_str().unwrap_or("").to_owned();
    if !inner.models.lock().expect("lock").iter().any(|m| m.name == model) {
        return not_found(&model);
    }
    // An empty prompt loads or (keep_alive 0) unloads the model, and answers at once.
    if path == "/api/generate" && body["prompt"].as_str() == Some("") {
        let reason = if body["keep_alive"] == json!(0) {
            "unload"
        } else {
            "load"
        };
        return Json(
            json!({"model": model, "created_at": CREATED_AT, "response": "", "done": true, "done_reason": reason}),
        )
        .into_response();
    }
    let scripted = inner.replies.lock().expect("lock").pop_front();
    let parts = match scripted {
        Some(Reply::Status(status, body)) => {
            let status = StatusCode::from_u16(status).expect("status");
            return (status, [("content-type", "application/json")], body).into_response();
        }
        Some(Reply::Stream(parts)) => parts,
        None => {
            let line = if path == "/api/chat" { chat_line } else { generate_line };
            let mut parts: Vec<Part> = ["Hello", " from", " Ollama"]
                .iter()
                .map(|text| Part::line(&line(&model, text)))
                .collect();
            parts.push(Part::line(&done_line(&model, path, "stop")));
            parts
        }
    };
    let body = futures_util::stream::unfold(VecDeque::from(parts), |mut parts| async move {
        loop {
            match parts.pop_front()? {
                Part::Bytes(bytes) => return Some((Ok(bytes), parts)),
                Part::Wait(signal) => {
                    let _ = signal.await;
                }
                Part::Cut => return Some((Err(std::io::Error::other("cut by the test")), parts)),
            }
        }
    });
    ([("content-type", "application/x-ndjson")], Body::from_stream(body)).into_response()
}
