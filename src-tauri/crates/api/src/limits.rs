//! The cap on concurrent generations and its bounded queue. A request takes a slot
//! (a semaphore permit) for as long as its generation runs; the slot is released by
//! `Drop`, so a client that hangs up frees it and the active-generations gauge falls.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::metrics::Metrics;

pub(crate) struct Limiter {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_queued: usize,
    timeout: Duration,
    retry_after_secs: u32,
}

/// A running generation: holds its slot and counts in the gauge until dropped.
pub(crate) struct ActiveGeneration {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for ActiveGeneration {
    fn drop(&mut self) {
        self.metrics.active.dec();
    }
}

/// Counts a queued request and uncounts it however its wait ends (also a client hanging up).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limiter {
    pub(crate) fn new(max_concurrent: usize, max_queued: usize, timeout: Duration, retry_after_secs: u32) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_concurrent)),
            waiting: AtomicUsize::new(0),
            max_queued,
            timeout,
            retry_after_secs,
        }
    }

    /// Requests waiting for a slot now.
    pub(crate) fn queued(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// A free slot at once, else a place in the queue (429 when it is full), else 503
    /// after waiting `timeout`.
    pub(crate) async fn acquire(&self, metrics: &Arc<Metrics>) -> Result<ActiveGeneration, ApiError> {
        let permit = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
                let _waiting = Waiting(&self.waiting);
                if queued >= self.max_queued {
                    return Err(ApiError::queue_full(self.retry_after_secs));
                }
                match tokio::time::timeout(self.timeout, Arc::clone(&self.slots).acquire_owned()).await {
                    Ok(Ok(permit)) => permit,
                    // Timed out, or the semaphore was closed (never done here).
                    _ => return Err(ApiError::overloaded(self.retry_after_secs)),
                }
            }
        };
        metrics.active.inc();
        Ok(ActiveGeneration {
            _permit: permit,
            metrics: Arc::clone(metrics),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_queue_answers_429_and_slots_come_back_on_drop() {
        let metrics = Arc::new(Metrics::new());
        let limiter = Arc::new(Limiter::new(1, 1, Duration::from_secs(30), 3));
        let first = limiter.acquire(&metrics).await.expect("free slot");
        assert_eq!(metrics.active.get(), 1);
        // The second waits in the queue; the third finds the queue full.
        let queued = tokio::spawn({
            let (limiter, metrics) = (Arc::clone(&limiter), Arc::clone(&metrics));
            async move { limiter.acquire(&metrics).await.map(|_| ()) }
        });
        while limiter.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        let third = limiter.acquire(&metrics).await.err().expect("queue full");
        assert_eq!((third.status.as_u16(), third.retry_after_secs), (429, Some(3)));
        drop(first);
        queued.await.expect("join").expect("slot after the first ended");
        assert_eq!(metrics.active.get(), 0);
        assert_eq!(limiter.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_wait_ends_in_503() {
        let metrics = Arc::new(Metrics::new());
        let limiter = Limiter::new(1, 4, Duration::from_secs(5), 1);
        let _busy = limiter.acquire(&metrics).await.expect("free slot");
        let err = limiter.acquire(&metrics).await.err().expect("timeout");
        assert_eq!(err.status.as_u16(), 503);
    }
}
