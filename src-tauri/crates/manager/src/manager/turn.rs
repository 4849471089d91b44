//! One turn: the user's message appended, the reply started on the first backend able
//! to give its first event (retried while that is transient, by the retry policy; then
//! the next backend, by the failover policy, skipping any cooling down), streamed to the
//! caller, and appended with its figures, also when stopped or broken off (marked
//! incomplete).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use hearth_core::{
    Backend, BackendError, ChatMessage, EventStream, FinishReason, GenerateRequest, GenerationEvent, GenerationMetrics,
    SamplingParams,
};
use hearth_store::{MessageMetadata, PerfRecord};

use super::{lock, BackendManager};
use crate::conversation::UserTurn;
use crate::failover::{Attempt, FailoverPolicy};
use crate::reply_clock::ReplyClock;
use crate::retry::{retry_transient, RetryPolicy};
use crate::settings::BackendKind;
use crate::transcript::prompt_for;
use crate::types::*;

impl BackendManager {
    /// The failover policy for a turn now: the active backend, then the fallbacks.
    fn failover(&self) -> FailoverPolicy {
        FailoverPolicy::new(self.active(), &self.settings().fallback)
    }

    /// Saves `text` as the user's turn, generates the reply from the whole saved
    /// conversation, streams it to `on_delta`, and saves it (with its backend, model and
    /// figures). See the module comment for what happens on failure.
    pub async fn send(
        &self,
        text: &str,
        params: SamplingParams,
        stop: &StopSignal,
        on_delta: impl FnMut(&str),
    ) -> Result<TurnReport, ManagerError> {
        self.send_reporting(text, params, stop, |_, _| {}, on_delta).await
    }

    /// [`Self::send`], telling `on_started` which backend and model the reply comes
    /// from as soon as its first event arrived (after any retries and fallbacks), so a
    /// caller shows where the reply runs without asking every backend for its status.
    pub async fn send_reporting(
        &self,
        text: &str,
        params: SamplingParams,
        stop: &StopSignal,
        on_started: impl FnOnce(BackendKind, &str),
        mut on_delta: impl FnMut(&str),
    ) -> Result<TurnReport, ManagerError> {
        stop.reset();
        let UserTurn {
            session,
            message: user_message,
            history,
        } = self.conversation.append_user(text).await;
        let mut clock = ReplyClock::starting_at(Instant::now());
        let started = self.start_reply(&history, &params).await?;
        let Started {
            kind,
            model,
            first,
            rest,
            retries,
            fallbacks,
        } = started;
        on_started(kind, &model);
        let (reply, outcome) = stream_reply(kind, first, rest, stop, &mut clock, &mut on_delta).await;
        let (metrics, failure) = self.settle(kind, outcome, &clock);
        // Saved even when cut short (marked incomplete), never regenerated behind the user's back.
        let incomplete = metrics.finish_reason == FinishReason::Cancelled || failure.is_some();
        // A failure before any text leaves nothing to keep.
        let message = if reply.is_empty() && failure.is_some() {
            None
        } else {
            let metadata = MessageMetadata {
                backend: Some(kind.to_string()),
                model: Some(model.clone()),
                metrics: serde_json::to_value(&metrics).ok(),
                incomplete,
                ..MessageMetadata::default()
            };
            let record = PerfRecord::generation(kind.as_str(), &model, &metrics);
            self.conversation
                .append_reply(session.clone(), &reply, metadata, record)
                .await
        };
        if let Some(error) = failure {
            return Err(ManagerError::Interrupted {
                backend: kind,
                error,
                chars: reply.chars().count(),
            });
        }
        Ok(TurnReport {
            saved: message.is_some(),
            session,
            backend: kind,
            model,
            text: reply,
            metrics,
            retries,
            fallbacks,
            user_message,
            message,
        })
    }

    /// The reply's figures and, if it broke off, why; the backend's cooldown is told how it went.
    fn settle(
        &self,
        kind: BackendKind,
        outcome: Outcome,
        clock: &ReplyClock,
    ) -> (GenerationMetrics, Option<BackendError>) {
        match outcome {
            Outcome::Done(metrics) => {
                lock(&self.cooldowns).success(kind);
                (metrics, None)
            }
            Outcome::Stopped => (clock.metrics(FinishReason::Cancelled, Instant::now()), None),
            Outcome::Failed(error) => {
                self.failed(kind, &error);
                (clock.metrics(FinishReason::Error, Instant::now()), Some(error))
            }
        }
    }

    fn failed(&self, kind: BackendKind, error: &BackendError) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(backend = %kind, error = %error, code = %error.code(), "backend failed");
        if lock(&self.cooldowns).failure(kind) {
            self.counters.cooldowns.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Gets the first event of a reply from the first backend able to give one, as the
    /// failover policy orders them.
    async fn start_reply(&self, history: &[ChatMessage], params: &SamplingParams) -> Result<Started, ManagerError> {
        let attempts = self.failover().attempts(&lock(&self.cooldowns));
        let policy = RetryPolicy::from(&self.settings().retry);
        let mut failures: Vec<(BackendKind, BackendError)> = Vec::new();
        let mut total_retries = 0;
        for (i, attempt) in attempts.iter().copied().enumerate() {
            let kind = attempt.backend();
            if i > 0 {
                self.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(from = %attempts[i - 1].backend(), to = %kind, "falling back to the next backend");
            }
            if let Attempt::Skip { left, .. } = attempt {
                tracing::info!(backend = %kind, left_secs = left.as_secs_f64(), "skipped: cooling down");
                failures.push((
                    kind,
                    BackendError::Unavailable {
                        backend: kind.to_string(),
                        cause: format!("cooling down after repeated failures ({} s left)", left.as_secs()),
                    },
                ));
                continue;
            }
            let slot = match self.ensure(kind).await {
                Ok(slot) => slot,
                Err(ManagerError::Backend { error, .. }) => {
                    self.failed(kind, &error);
                    failures.push((kind, error));
                    continue;
                }
                Err(other) => return Err(other),
            };
            let mut params = params.clone();
            let prompt = prompt_for(history, slot.has_chat_template, &mut params);
            let request = GenerateRequest {
                model: Some(slot.model.clone()),
                prompt,
                params,
            };
            let backend = Arc::clone(&slot.backend);
            let (result, retries) = retry_transient(policy, kind.as_str(), &self.counters.retries, || {
                first_event(Arc::clone(&backend), request.clone())
            })
            .await;
            total_retries += retries;
            match result {
                Ok((first, rest)) => {
                    return Ok(Started {
                        kind,
                        model: slot.model,
                        first,
                        rest,
                        retries: total_retries,
                        fallbacks: u32::try_from(i).unwrap_or(u32::MAX),
                    })
                }
                Err(error) if !FailoverPolicy::falls_back_on(&error) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    return Err(ManagerError::Backend { backend: kind, error });
                }
                Err(error) => {
                    self.failed(kind, &error);
                    failures.push((kind, error));
                }
            }
        }
        Err(ManagerError::AllFailed { attempts: failures })
    }
}

enum Outcome {
    Done(GenerationMetrics),
    Stopped,
    Failed(BackendError),
}

struct Started {
    kind: BackendKind,
    model: String,
    first: GenerationEvent,
    rest: EventStream,
    retries: u32,
    fallbacks: u32,
}

/// Streams the reply on from its first event to `on_delta` until it is done, stopped or
/// broken off, returning the text so far with how it ended. The stream is dropped on return.
async fn stream_reply(
    kind: BackendKind,
    first: GenerationEvent,
    mut rest: EventStream,
    stop: &StopSignal,
    clock: &mut ReplyClock,
    on_delta: &mut impl FnMut(&str),
) -> (String, Outcome) {
    let mut reply = String::new();
    let mut next = Some(Ok(first));
    let outcome = loop {
        let event = match next.take() {
            Some(event) => Some(event),
            None => tokio::select! {
                biased;
                _ = stop.stopped() => break Outcome::Stopped,
                event = rest.next() => event,
            },
        };
        match event {
            Some(Ok(GenerationEvent::Delta { text })) => {
                clock.delta_at(Instant::now());
                on_delta(&text);
                reply.push_str(&text);
            }
            Some(Ok(GenerationEvent::Done { metrics })) => break Outcome::Done(metrics),
            Some(Ok(GenerationEvent::Error { code, message })) => {
                break Outcome::Failed(BackendError::Failed { code, message })
            }
            Some(Err(e)) => break Outcome::Failed(e),
            None => {
                break Outcome::Failed(BackendError::Unavailable {
                    backend: kind.to_string(),
                    cause: "the stream ended before the reply was complete".into(),
                })
            }
        }
    };
    drop(rest);
    (reply, outcome)
}

/// Starts a generation and waits for its first event: the point after which a failure
/// can no longer be retried.
async fn first_event(
    backend: Arc<dyn Backend>,
    request: GenerateRequest,
) -> Result<(GenerationEvent, EventStream), BackendError> {
    let mut stream = backend.generate(request).await?;
    match stream.next().await {
        Some(Ok(GenerationEvent::Error { code, message })) => Err(BackendError::Failed { code, message }),
        Some(Ok(event)) => Ok((event, stream)),
        Some(Err(e)) => Err(e),
        None => Err(BackendError::Unavailable {
            backend: backend.name().to_owned(),
            cause: "the stream ended before any output".into(),
        }),
    }
}
