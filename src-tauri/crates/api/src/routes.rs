//! The route handlers: chat and text completions (streamed or whole), models, health.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use hearth_core::{Backend, BackendError, ErrorCode, GenerateRequest, GenerationEvent, ModelDescriptor};

use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::openai::{self, ChatCompletionRequest, CompletionRequest, Kind, ResponseMeta};

pub(crate) struct AppState {
    pub backend: Arc<dyn Backend>,
    pub config: Arc<ApiConfig>,
    pub metrics: Arc<Metrics>,
    pub limiter: Limiter,
}

pub(crate) async fn chat_completions(
    State(app): State<Arc<AppState>>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let request = ChatCompletionRequest::parse(&body)?;
    let generate = request.to_generate(app.config.max_tokens_cap)?;
    let (stream, usage) = (request.common.stream(), request.common.include_usage());
    run(&app, Kind::Chat, generate, stream, usage).await
}

pub(crate) async fn completions(
    State(app): State<Arc<AppState>>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let request = CompletionRequest::parse(&body)?;
    let generate = request.to_generate(app.config.max_tokens_cap)?;
    let (stream, usage) = (request.common.stream(), request.common.include_usage());
    run(&app, Kind::Completion, generate, stream, usage).await
}

async fn run(
    app: &Arc<AppState>,
    kind: Kind,
    request: GenerateRequest,
    stream: bool,
    include_usage: bool,
) -> Result<Response, ApiError> {
    let active = app.limiter.acquire(&app.metrics).await?;
    let meta = ResponseMeta::new(
        if kind == Kind::Chat { "chatcmpl" } else { "cmpl" },
        request.model.as_deref().unwrap_or(""),
    );
    let mut events = app.backend.generate(request).await?;
    if stream {
        return Ok(crate::stream::respond(
            events,
            kind,
            meta,
            include_usage,
            Arc::clone(&app.metrics),
            active,
        ));
    }
    // Whole reply: if the client hangs up, axum drops this future, and with it `events`
    // (which cancels the generation) and `active`.
    let mut text = String::new();
    loop {
        match events.next().await {
            Some(Ok(GenerationEvent::Delta { text: delta })) => text.push_str(&delta),
            Some(Ok(GenerationEvent::Done { metrics })) => {
                app.metrics.record_generation(&metrics);
                let body = match kind {
                    Kind::Chat => openai::chat_completion(&meta, &text, &metrics),
                    Kind::Completion => openai::text_completion(&meta, &text, &metrics),
                };
                return Ok(Json(body).into_response());
            }
            Some(Ok(GenerationEvent::Error { code, message })) => {
                return Err(BackendError::Failed { code, message }.into())
            }
            Some(Err(e)) => return Err(e.into()),
            None => {
                return Err(BackendError::Failed {
                    code: ErrorCode::GenerationIncomplete,
                    message: "the generation ended without a result".into(),
                }
                .into())
            }
        }
    }
}

fn model_object(m: &ModelDescriptor) -> serde_json::Value {
    let mut object = serde_json::json!({
        "id": m.id,
        "object": "model",
        "created": 0,
        "owned_by": m.owned_by,
        "context_length": m.context_length,
        "has_chat_template": m.has_chat_template,
    });
    // Where the model runs, when the backend says (Hearth's engine does).
    if let (Some(device), Some(map)) = (&m.device, object.as_object_mut()) {
        map.insert("device".into(), device.clone().into());
        map.insert("gpu_layers".into(), m.gpu_layers.into());
        map.insert("layers_total".into(), m.layers_total.into());
        if let Some(note) = &m.placement_note {
            map.insert("placement_note".into(), note.clone().into());
        }
    }
    object
}

pub(crate) async fn models(State(app): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let models = app.backend.models().await?;
    let data: Vec<_> = models.iter().map(model_object).collect();
    Ok(Json(serde_json::json!({"object": "list", "data": data})).into_response())
}

pub(crate) async fn model(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let models = app.backend.models().await?;
    match models.iter().find(|m| m.id == id) {
        Some(m) => Ok(Json(model_object(m)).into_response()),
        None => Err(BackendError::ModelNotFound { model: id }.into()),
    }
}

/// The server is up; how many generations it runs at once, how many run now and how
/// many wait for one.
pub(crate) async fn health(State(app): State<Arc<AppState>>) -> Response {
    Json(serde_json::json!({
        "status": "ok",
        "slots": app.config.max_concurrent,
        "slots_busy": app.metrics.active_generations(),
        "queued": app.limiter.queued(),
    }))
    .into_response()
}

/// 200 only when the backend says a model is loaded and has generated since the load.
pub(crate) async fn ready(State(app): State<Arc<AppState>>) -> Response {
    let health = app.backend.health().await;
    if health.ready {
        return Json(serde_json::json!({"status": "ready", "model": health.model})).into_response();
    }
    let body = serde_json::json!({"status": "not_ready", "reason": health.reason, "model": health.model});
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        Json(body),
    )
        .into_response()
}

pub(crate) async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    app.metrics
        .slots
        .set(i64::try_from(app.config.max_concurrent).unwrap_or(i64::MAX));
    app.metrics
        .queued
        .set(i64::try_from(app.limiter.queued()).unwrap_or(i64::MAX));
    crate::metrics::handler(State(Arc::clone(&app.metrics))).await
}

pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
