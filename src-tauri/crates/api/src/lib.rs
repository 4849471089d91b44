//! Hearth's local OpenAI-compatible API: `/v1/chat/completions` (SSE or whole),
//! `/v1/completions`, `/v1/models`, `/health`, `/health/ready` and `/metrics`, over any
//! [`hearth_core::Backend`]. This crate knows nothing about llama.cpp: the worker
//! process serves the engine through it, and `hearth serve` serves the worker.
//!
//! Every answer to bad input is a 4xx in OpenAI's error shape; access is limited by
//! a Host allowlist and an optional bearer token; generations are capped and queued.

mod config;
mod error;
mod extract;
pub mod fault_proxy;
mod guard;
mod hyper_replies;
mod limits;
mod metrics;
mod openai;
mod raw_reply;
mod refusal;
mod request_fields;
mod routes;
mod server;
mod stream;
pub mod testing;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Extension, Router};
use hearth_core::Backend;

pub use config::{ApiConfig, ConfigError, MAX_TOKENS_CAP};
pub use error::ApiError;
pub use metrics::Metrics;
pub use server::{serve, serve_with, ConnectionLimits};

/// The whole API as an axum router. `config.port` must be the port the server is
/// bound to (the Host check needs it). `metrics` is shared so a caller can read it.
pub fn router(backend: Arc<dyn Backend>, config: ApiConfig, metrics: Arc<Metrics>) -> Router {
    let config = Arc::new(config);
    let state = Arc::new(routes::AppState {
        backend,
        config: Arc::clone(&config),
        metrics: Arc::clone(&metrics),
        limiter: limits::Limiter::new(
            config.max_concurrent,
            config.max_queued,
            config.queue_timeout,
            config.retry_after_secs,
        ),
    });
    Router::new()
        .route("/v1/chat/completions", post(routes::chat_completions))
        .route("/v1/completions", post(routes::completions))
        .route("/v1/models", get(routes::models))
        .route("/v1/models/{model}", get(routes::model))
        .route("/health", get(routes::health))
        .route("/health/ready", get(routes::ready))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(Extension(extract::BodyLimit(config.body_limit)))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&config), guard::guard))
        .layer(axum::middleware::from_fn_with_state(metrics, metrics::track))
}
