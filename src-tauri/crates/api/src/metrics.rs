//! Prometheus metrics (prometheus-client, OpenMetrics text): requests by route and
//! status, errors by code, tokens, time to first token, decode rate, active
//! generations and the process's resident memory.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hearth_core::GenerationMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::Arc;

use crate::error::CountedCode;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishLabels {
    reason: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Histogram,
    errors: Family<ErrorLabels, Counter>,
    generations: Family<FinishLabels, Counter>,
    completion_tokens: Counter,
    prompt_tokens: Counter,
    draft_tokens: Counter,
    draft_accepted: Counter,
    decode_batch: Histogram,
    ttft: Histogram,
    decode_rate: Histogram,
    pub(crate) active: Gauge,
    pub(crate) slots: Gauge,
    pub(crate) queued: Gauge,
    rss: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("hearth"),
            requests: Family::default(),
            // Until the response head is ready: for a stream, that is once the generation started.
            request_seconds: Histogram::new([0.005, 0.05, 0.25, 1.0, 5.0, 30.0, 120.0, 600.0]),
            errors: Family::default(),
            generations: Family::default(),
            completion_tokens: Counter::default(),
            prompt_tokens: Counter::default(),
            draft_tokens: Counter::default(),
            draft_accepted: Counter::default(),
            decode_batch: Histogram::new([1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0]),
            ttft: Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            decode_rate: Histogram::new([1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]),
            active: Gauge::default(),
            slots: Gauge::default(),
            queued: Gauge::default(),
            rss: Gauge::default(),
        };
        // Registered in this order, which is the order of the exposition text.
        metrics.register_requests();
        metrics.register_generations();
        metrics.register_gauges();
        metrics
    }

    /// HTTP requests, their duration and errors.
    fn register_requests(&mut self) {
        let registry = &mut self.registry;
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time until the response head (a stream goes on after it)",
            Unit::Seconds,
            self.request_seconds.clone(),
        );
        registry.register(
            "errors",
            "Error responses and failed generations by code",
            self.errors.clone(),
        );
    }

    /// Finished generations, their tokens and speeds.
    fn register_generations(&mut self) {
        let registry = &mut self.registry;
        registry.register(
            "generations",
            "Finished generations by finish reason",
            self.generations.clone(),
        );
        registry.register("completion_tokens", "Tokens generated", self.completion_tokens.clone());
        registry.register("prompt_tokens", "Prompt tokens processed", self.prompt_tokens.clone());
        registry.register(
            "draft_tokens",
            "Tokens guessed from the conversation and verified in a batch",
            self.draft_tokens.clone(),
        );
        registry.register(
            "draft_accepted_tokens",
            "Guessed tokens the sampler agreed with (each saved a decode step)",
            self.draft_accepted.clone(),
        );
        registry.register(
            "decode_batch_sequences",
            "For each generated token, how many sequences were decoded in its step (continuous batching)",
            self.decode_batch.clone(),
        );
        registry.register_with_unit(
            "time_to_first_token",
            "Time to the first token",
            Unit::Seconds,
            self.ttft.clone(),
        );
        registry.register(
            "decode_tokens_per_second",
            "Decode speed per generation",
            self.decode_rate.clone(),
        );
    }

    /// What is going on now: generations, slots, the queue and memory.
    fn register_gauges(&mut self) {
        let registry = &mut self.registry;
        registry.register("active_generations", "Generations running now", self.active.clone());
        registry.register("slots", "Generations the server runs at once", self.slots.clone());
        registry.register(
            "queued_requests",
            "Requests waiting for a generation slot",
            self.queued.clone(),
        );
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory of this process",
            Unit::Bytes,
            self.rss.clone(),
        );
    }

    /// Generations running now (for tests and status pages).
    pub fn active_generations(&self) -> i64 {
        self.active.get()
    }

    pub(crate) fn record_generation(&self, m: &GenerationMetrics) {
        self.generations
            .get_or_create(&FinishLabels {
                reason: m.finish_reason.as_str().to_owned(),
            })
            .inc();
        self.completion_tokens.inc_by(u64::from(m.completion_tokens));
        self.prompt_tokens.inc_by(u64::from(m.prompt_tokens_evaluated));
        self.draft_tokens.inc_by(u64::from(m.draft_tokens));
        self.draft_accepted.inc_by(u64::from(m.draft_accepted));
        for (at, &tokens) in m.decode_batch_sequences.iter().enumerate() {
            let sequences = (at + 1) as f64;
            for _ in 0..tokens {
                self.decode_batch.observe(sequences);
            }
        }
        if m.completion_tokens > 0 {
            self.ttft.observe(m.ttft_ms / 1000.0);
        }
        if m.decode_tps > 0.0 {
            self.decode_rate.observe(m.decode_tps);
        }
    }

    /// A failure after the response started (mid-stream), which the request counter cannot see.
    pub(crate) fn record_error(&self, code: &str) {
        self.errors.get_or_create(&ErrorLabels { code: code.to_owned() }).inc();
    }

    pub fn encode(&self) -> String {
        if let Some(stats) = memory_stats::memory_stats() {
            self.rss.set(i64::try_from(stats.physical_mem).unwrap_or(i64::MAX));
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Counts every request by its route pattern (not the raw path: bounded label values).
pub(crate) async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    metrics
        .requests
        .get_or_create(&RequestLabels { route, method, status })
        .inc();
    metrics.request_seconds.observe(started.elapsed().as_secs_f64());
    if let Some(CountedCode(code)) = response.extensions().get::<CountedCode>() {
        metrics.record_error(code);
    }
    response
}

pub(crate) async fn handler(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}
