//! The figures of a reply that ended without the backend's own: stopped by the user
//! (the stream is dropped, so the backend's final figures never arrive) or cut by a
//! failure. The manager times the stream it received: tokens are the text deltas (one
//! per token from the embedded engine, Ollama and vLLM's streams), time to first token
//! is from the request to the first delta, and the rate is over the deltas after it,
//! the way the engine counts decode speed. A stopped reply then keeps what it produced,
//! in the chat, the app and the stored performance record, instead of zeros.

use std::time::Instant;

use hearth_core::{FinishReason, GenerationMetrics};

#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplyClock {
    started: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    deltas: u32,
}

impl ReplyClock {
    /// A reply asked for at `started`.
    pub(crate) fn starting_at(started: Instant) -> Self {
        Self {
            started,
            first: None,
            last: None,
            deltas: 0,
        }
    }

    /// A text delta arrived at `at`.
    pub(crate) fn delta_at(&mut self, at: Instant) {
        self.first.get_or_insert(at);
        self.last = Some(at);
        self.deltas = self.deltas.saturating_add(1);
    }

    /// What was measured, as of `now`, for a reply that ended with `finish_reason`.
    pub(crate) fn metrics(&self, finish_reason: FinishReason, now: Instant) -> GenerationMetrics {
        let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1000.0;
        let ttft_ms = self.first.map_or(0.0, |first| ms(self.started, first));
        // Decode speed: the tokens after the first over the time they took.
        let decode_tps = match (self.first, self.last) {
            (Some(first), Some(last)) if self.deltas > 1 && last > first => {
                f64::from(self.deltas - 1) / (ms(first, last) / 1000.0)
            }
            _ => 0.0,
        };
        GenerationMetrics {
            prompt_tokens: 0,
            prompt_tokens_evaluated: 0,
            completion_tokens: self.deltas,
            load_ms: 0.0,
            ttft_ms,
            prompt_tps: 0.0,
            decode_tps,
            total_ms: ms(self.started, now),
            draft_tokens: 0,
            draft_accepted: 0,
            decode_batch_sequences: Vec::new(),
            prompt_steps: 0,
            prompt_format: None,
            finish_reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_stopped_reply_keeps_its_tokens_ttft_and_rate() {
        let t0 = Instant::now();
        let mut clock = ReplyClock::starting_at(t0);
        // First token after 120 ms, then 80 more at 25 ms each (40 tokens/s).
        for i in 0..81u32 {
            clock.delta_at(t0 + Duration::from_millis(120 + 25 * u64::from(i)));
        }
        let m = clock.metrics(FinishReason::Cancelled, t0 + Duration::from_millis(2200));
        assert_eq!(m.completion_tokens, 81);
        assert!((m.ttft_ms - 120.0).abs() < 1e-6, "{m:?}");
        assert!((m.decode_tps - 40.0).abs() < 1e-6, "{m:?}");
        assert!((m.total_ms - 2200.0).abs() < 1e-6, "{m:?}");
        assert_eq!(m.finish_reason, FinishReason::Cancelled);
    }

    #[test]
    fn before_the_first_token_there_is_nothing_to_rate() {
        let t0 = Instant::now();
        let mut clock = ReplyClock::starting_at(t0);
        let m = clock.metrics(FinishReason::Error, t0 + Duration::from_millis(50));
        assert_eq!((m.completion_tokens, m.ttft_ms, m.decode_tps), (0, 0.0, 0.0));
        assert!((m.total_ms - 50.0).abs() < 1e-6);
        clock.delta_at(t0 + Duration::from_millis(30));
        let one = clock.metrics(FinishReason::Cancelled, t0 + Duration::from_millis(60));
        assert_eq!((one.completion_tokens, one.decode_tps), (1, 0.0));
        assert!((one.ttft_ms - 30.0).abs() < 1e-6);
    }
}
