//! Retries with exponential backoff (tokio-retry), for transient failures only, and
//! only while nothing has reached the caller: the manager retries *starting* a reply,
//! never a reply already under way, so text is never duplicated.
//!
//! The delays are first, 2×first, 4×first … (1 s, 2 s, 4 s by default). A server that
//! answers 429/503 with `Retry-After` is waited for at least that long.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_core::BackendError;
use tokio_retry::RetryIf;

use crate::settings::RetrySettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub retries: u32,
    pub first_delay: Duration,
}

impl RetryPolicy {
    /// No retries (tests and benchmarks that want one try).
    pub const NONE: RetryPolicy = RetryPolicy {
        retries: 0,
        first_delay: Duration::ZERO,
    };

    /// The waits before each retry, in order.
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        std::iter::successors(Some(self.first_delay), |d| d.checked_mul(2)).take(self.retries as usize)
    }
}

impl From<&RetrySettings> for RetryPolicy {
    fn from(s: &RetrySettings) -> Self {
        Self {
            retries: s.retries,
            first_delay: Duration::from_millis(s.first_delay_ms),
        }
    }
}

/// The backoff schedule as tokio-retry consumes it: asked for the next delay only when a
/// retry is about to happen, which is where each retry is counted and logged.
struct Backoff<I> {
    delays: I,
    /// A `Retry-After` seen on the failure just classified.
    hint: Arc<Mutex<Option<Duration>>>,
    backend: String,
    retries: Arc<AtomicU64>,
    attempt: u32,
}

impl<I: Iterator<Item = Duration>> Iterator for Backoff<I> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let planned = self.delays.next()?;
        let hinted = self.hint.lock().ok().and_then(|mut h| h.take());
        let delay = hinted.map_or(planned, |h| h.max(planned));
        self.attempt += 1;
        self.retries.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            backend = %self.backend,
            retry = self.attempt,
            delay_ms = delay.as_millis() as u64,
            retry_after = hinted.is_some(),
            "retrying after a transient failure"
        );
        Some(delay)
    }
}

/// Runs `attempt` until it succeeds, fails permanently, or the retries run out; returns
/// its result and how many retries were made. Only [`BackendError::is_transient`] errors
/// are retried.
pub async fn retry_transient<T, F, Fut>(
    policy: RetryPolicy,
    backend: &str,
    retries_counter: &Arc<AtomicU64>,
    attempt: F,
) -> (Result<T, BackendError>, u32)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    let hint = Arc::new(Mutex::new(None));
    let local = Arc::new(AtomicU64::new(0));
    let strategy = Backoff {
        delays: policy.delays(),
        hint: Arc::clone(&hint),
        backend: backend.to_owned(),
        retries: Arc::clone(&local),
        attempt: 0,
    };
    let condition = |e: &BackendError| {
        tracing::info!(backend, error = %e, code = %e.code(), transient = e.is_transient(), "attempt failed");
        if let BackendError::Busy { retry_after_secs, .. } = e {
            if let Ok(mut h) = hint.lock() {
                *h = Some(Duration::from_secs(u64::from(*retry_after_secs)));
            }
        }
        e.is_transient()
    };
    let result = RetryIf::start(strategy, attempt, condition).await;
    let made = local.load(Ordering::Relaxed);
    retries_counter.fetch_add(made, Ordering::Relaxed);
    (result, u32::try_from(made).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use tokio::time::Instant;

    fn unavailable() -> BackendError {
        BackendError::Unavailable {
            backend: "test".into(),
            cause: "connection refused".into(),
        }
    }

    const DEFAULT: RetryPolicy = RetryPolicy {
        retries: 3,
        first_delay: Duration::from_secs(1),
    };

    #[test]
    fn the_default_delays_are_one_two_four_seconds() {
        let delays: Vec<u64> = RetryPolicy::from(&RetrySettings::default())
            .delays()
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_wait_1_2_4_seconds_then_give_up() {
        let counter = Arc::new(AtomicU64::new(0));
        let tries = AtomicU32::new(0);
        let started = Instant::now();
        let mut at = Vec::new();
        let (result, retries) = retry_transient(DEFAULT, "test", &counter, || {
            tries.fetch_add(1, Ordering::Relaxed);
            at.push(started.elapsed().as_secs_f64());
            async { Err::<(), _>(unavailable()) }
        })
        .await;
        assert_eq!(result, Err(unavailable()));
        assert_eq!(retries, 3);
        assert_eq!(tries.load(Ordering::Relaxed), 4, "one try and three retries");
        assert_eq!(at, [0.0, 1.0, 3.0, 7.0], "tries at 0 s, then after 1, 2 and 4 s");
        assert_eq!(counter.load(Ordering::Relaxed), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_retried() {
        let counter = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let (result, retries) = retry_transient(DEFAULT, "test", &counter, || async {
            Err::<(), _>(BackendError::ContextOverflow { needed: 9, limit: 4 })
        })
        .await;
        assert!(matches!(result, Err(BackendError::ContextOverflow { .. })));
        assert_eq!(retries, 0);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_when_longer_than_the_backoff() {
        let counter = Arc::new(AtomicU64::new(0));
        let tries = AtomicU32::new(0);
        let started = Instant::now();
        let (result, retries) = retry_transient(DEFAULT, "test", &counter, || {
            let n = tries.fetch_add(1, Ordering::Relaxed);
            async move {
                match n {
                    0 => Err(BackendError::Busy {
                        backend: "test".into(),
                        retry_after_secs: 5,
                    }),
                    _ => Ok(n),
                }
            }
        })
        .await;
        assert_eq!(result, Ok(1));
        assert_eq!(retries, 1);
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(5),
            "waited Retry-After, not the 1 s backoff"
        );
    }
}
