//! Failover: the policy beside the retry policy. Retries try the same backend again
//! while a failure is transient; failover decides which backends a reply is tried on,
//! in what order, which are skipped (cooling down after repeated failures, see
//! [`crate::cooldown`]), and which failures send the reply on to the next backend.
//! Decisions only: the turn (`manager/turn.rs`) carries them out and counts them.

use std::time::Duration;

use hearth_core::BackendError;

use crate::cooldown::Cooldowns;
use crate::settings::BackendKind;

/// The backends a reply may come from, in order: the active one, then the configured
/// fallbacks (each once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverPolicy {
    order: Vec<BackendKind>,
}

/// What the turn does with a backend in the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Start the reply there.
    Try(BackendKind),
    /// Passed over: it failed repeatedly and cools down for `left` more.
    Skip { backend: BackendKind, left: Duration },
}

impl Attempt {
    pub fn backend(self) -> BackendKind {
        match self {
            Attempt::Try(backend) | Attempt::Skip { backend, .. } => backend,
        }
    }
}

impl FailoverPolicy {
    pub fn new(active: BackendKind, fallback: &[BackendKind]) -> Self {
        let mut order = vec![active];
        for &kind in fallback {
            if !order.contains(&kind) {
                order.push(kind);
            }
        }
        Self { order }
    }

    pub fn order(&self) -> &[BackendKind] {
        &self.order
    }

    /// What to do with each backend in the order, by the cooldowns now (tokio's clock).
    pub fn attempts(&self, cooldowns: &Cooldowns) -> Vec<Attempt> {
        self.order
            .iter()
            .map(|&backend| match cooldowns.cooling(backend) {
                Some(left) => Attempt::Skip { backend, left },
                None => Attempt::Try(backend),
            })
            .collect()
    }

    /// Whether a backend's failure to start a reply sends it on to the next backend:
    /// not when the request itself is wrong (another backend would refuse it too).
    pub fn falls_back_on(error: &BackendError) -> bool {
        match error {
            BackendError::InvalidRequest { .. } | BackendError::ContextOverflow { .. } => false,
            BackendError::Upstream { status, .. } => !matches!(status, 400 | 413 | 422),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cooldown::CooldownPolicy;
    use BackendKind::{Embedded, Ollama, Vllm};

    fn cooldowns() -> Cooldowns {
        Cooldowns::new(CooldownPolicy {
            failures: 2,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(30),
        })
    }

    #[test]
    fn the_active_backend_comes_first_and_each_fallback_once() {
        let policy = FailoverPolicy::new(Ollama, &[Embedded, Ollama, Vllm, Embedded]);
        assert_eq!(policy.order(), [Ollama, Embedded, Vllm]);
        assert_eq!(FailoverPolicy::new(Embedded, &[]).order(), [Embedded]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_cooling_down_is_skipped_until_its_time_is_up() {
        let policy = FailoverPolicy::new(Embedded, &[Ollama]);
        let mut c = cooldowns();
        assert_eq!(policy.attempts(&c), [Attempt::Try(Embedded), Attempt::Try(Ollama)]);
        c.failure(Embedded);
        assert_eq!(
            policy.attempts(&c)[0],
            Attempt::Try(Embedded),
            "one failure is not enough"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        c.failure(Embedded);
        let left = Duration::from_secs(30);
        assert_eq!(
            policy.attempts(&c),
            [
                Attempt::Skip {
                    backend: Embedded,
                    left
                },
                Attempt::Try(Ollama)
            ]
        );
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(
            policy.attempts(&c)[0],
            Attempt::Skip {
                backend: Embedded,
                left: Duration::from_secs(10)
            }
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(policy.attempts(&c), [Attempt::Try(Embedded), Attempt::Try(Ollama)]);
        // Every backend cooling down: all are skipped, and the turn says why.
        c.failure(Embedded);
        c.failure(Embedded);
        c.failure(Ollama);
        c.failure(Ollama);
        assert!(policy.attempts(&c).iter().all(|a| matches!(a, Attempt::Skip { .. })));
    }

    #[test]
    fn only_failures_of_the_backend_send_the_reply_on() {
        let unavailable = BackendError::Unavailable {
            backend: "ollama".into(),
            cause: "connection refused".into(),
        };
        assert!(FailoverPolicy::falls_back_on(&unavailable));
        let crashed = BackendError::Crashed {
            backend: "embedded".into(),
            cause: "killed".into(),
        };
        assert!(FailoverPolicy::falls_back_on(&crashed));
        let upstream = |status| BackendError::Upstream {
            status,
            code: None,
            kind: None,
            param: None,
            message: "no".into(),
        };
        assert!(FailoverPolicy::falls_back_on(&upstream(500)));
        assert!(FailoverPolicy::falls_back_on(&upstream(503)));
        for status in [400, 413, 422] {
            assert!(!FailoverPolicy::falls_back_on(&upstream(status)), "{status}");
        }
        let overflow = BackendError::ContextOverflow {
            needed: 5000,
            limit: 4096,
        };
        assert!(!FailoverPolicy::falls_back_on(&overflow));
        let invalid = BackendError::InvalidRequest {
            param: Some("temperature".into()),
            message: "temperature must be at least 0".into(),
        };
        assert!(!FailoverPolicy::falls_back_on(&invalid));
    }
}
