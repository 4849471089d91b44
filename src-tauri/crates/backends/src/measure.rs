//! One generation measured as its caller sees it, through any backend. Comparing the
//! worker process with the in-process engine this way shows what the process boundary
//! costs (HTTP, SSE, the extra hop): `hearth bench` and the overhead test use it.

use std::time::Instant;

use futures_util::StreamExt;
use hearth_core::{Backend, BackendError, ErrorCode, GenerateRequest, GenerationEvent, GenerationMetrics};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub text: String,
    /// The figures of the engine that generated (inside the worker, for the worker).
    pub engine: GenerationMetrics,
    /// From the call to the first text the caller received.
    pub client_ttft_ms: f64,
    /// From the call to the final event.
    pub client_total_ms: f64,
    /// Tokens after the first over the time after the first, as received.
    pub client_decode_tps: f64,
}

/// Runs `request` to its end and times it at the caller.
pub async fn measure(backend: &dyn Backend, request: GenerateRequest) -> Result<Measured, BackendError> {
    let started = Instant::now();
    let mut events = backend.generate(request).await?;
    let mut text = String::new();
    let mut first = None;
    let mut last = None;
    while let Some(event) = events.next().await {
        match event? {
            GenerationEvent::Delta { text: delta } => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = Some(now);
                text.push_str(&delta);
            }
            GenerationEvent::Done { metrics } => {
                let ms = |t: Option<Instant>| t.map_or(0.0, |t| t.duration_since(started).as_secs_f64() * 1000.0);
                let decode_secs = match (first, last) {
                    (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
                    _ => 0.0,
                };
                let after_first = metrics.completion_tokens.saturating_sub(1);
                let client_decode_tps = if decode_secs > 0.0 && after_first > 0 {
                    f64::from(after_first) / decode_secs
                } else {
                    0.0
                };
                return Ok(Measured {
                    text,
                    client_ttft_ms: ms(first),
                    client_total_ms: started.elapsed().as_secs_f64() * 1000.0,
                    client_decode_tps,
                    engine: metrics,
                });
            }
            GenerationEvent::Error { code, message } => return Err(BackendError::Failed { code, message }),
        }
    }
    Err(BackendError::Failed {
        code: ErrorCode::GenerationIncomplete,
        message: "no final event".into(),
    })
}
