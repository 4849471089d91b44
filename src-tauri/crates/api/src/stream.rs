//! Streams a generation as server-sent events in OpenAI's chunk format: a first chunk
//! with the role (chat), one chunk per text delta, a chunk with the finish reason, the
//! usage chunk when asked for, then `data: [DONE]`. A failure part-way is sent as a
//! `data: {"error": …}` event (the status line is already out), which OpenAI's clients raise.
//!
//! The SSE body owns the backend's event stream and the generation's slot: when a client
//! hangs up, hyper drops the body, which drops both; the backend cancels the generation
//! and the active-generations gauge falls.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use hearth_core::{EventStream, GenerationEvent, GenerationMetrics};

use crate::error::ApiError;
use crate::limits::ActiveGeneration;
use crate::metrics::Metrics;
use crate::openai::{finish_reason, Kind, ResponseMeta};

enum Phase {
    Start,
    Body,
    Usage(Box<GenerationMetrics>),
    Done,
    Finished,
}

struct SseState {
    events: EventStream,
    kind: Kind,
    meta: ResponseMeta,
    include_usage: bool,
    metrics: Arc<Metrics>,
    phase: Phase,
    _active: ActiveGeneration,
}

pub(crate) fn respond(
    events: EventStream,
    kind: Kind,
    meta: ResponseMeta,
    include_usage: bool,
    metrics: Arc<Metrics>,
    active: ActiveGeneration,
) -> Response {
    let state = SseState {
        events,
        kind,
        meta,
        include_usage,
        metrics,
        phase: Phase::Start,
        _active: active,
    };
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        let event = state.next_event().await?;
        Some((Ok::<_, Infallible>(event), state))
    });
    // Comments every 15 s keep proxies from closing a connection during a long prompt.
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

fn data(value: &serde_json::Value) -> Event {
    Event::default().data(value.to_string())
}

impl SseState {
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            match std::mem::replace(&mut self.phase, Phase::Finished) {
                Phase::Start => {
                    self.phase = Phase::Body;
                    if self.kind == Kind::Chat {
                        return Some(data(&self.kind.chunk(&self.meta, true, Some(""), None)));
                    }
                }
                Phase::Body => match self.events.next().await {
                    Some(Ok(GenerationEvent::Delta { text })) => {
                        self.phase = Phase::Body;
                        if !text.is_empty() {
                            return Some(data(&self.kind.chunk(&self.meta, false, Some(&text), None)));
                        }
                    }
                    Some(Ok(GenerationEvent::Done { metrics })) => {
                        self.metrics.record_generation(&metrics);
                        let finish = finish_reason(metrics.finish_reason);
                        self.phase = if self.include_usage {
                            Phase::Usage(Box::new(metrics))
                        } else {
                            Phase::Done
                        };
                        return Some(data(&self.kind.chunk(&self.meta, false, None, Some(finish))));
                    }
                    Some(Ok(GenerationEvent::Error { code, message })) => {
                        return Some(self.fail(ApiError::from(hearth_core::BackendError::Failed { code, message })));
                    }
                    Some(Err(e)) => return Some(self.fail(ApiError::from(e))),
                    None => {
                        return Some(self.fail(ApiError::from(hearth_core::BackendError::Failed {
                            code: hearth_core::ErrorCode::GenerationIncomplete,
                            message: "the generation ended without a result".into(),
                        })));
                    }
                },
                Phase::Usage(metrics) => {
                    self.phase = Phase::Done;
                    return Some(data(&self.kind.usage_chunk(&self.meta, &metrics)));
                }
                Phase::Done => {
                    self.phase = Phase::Finished;
                    return Some(Event::default().data("[DONE]"));
                }
                Phase::Finished => return None,
            }
        }
    }

    fn fail(&mut self, error: ApiError) -> Event {
        tracing::warn!(code = %error.code, error = %error.message, "generation failed mid-stream");
        self.metrics.record_error(&error.code);
        self.phase = Phase::Done;
        let body = serde_json::to_value(error.body()).unwrap_or_default();
        data(&body)
    }
}
