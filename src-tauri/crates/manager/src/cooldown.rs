//! Cooldown: a backend that fails `failures` times within `window` is skipped for
//! `cooldown`, so replies stop waiting on a backend that is down and go straight to
//! the next one. Times come from tokio's clock, so tests run it with a paused clock.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::settings::{BackendKind, CooldownSettings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CooldownPolicy {
    pub failures: u32,
    pub window: Duration,
    pub cooldown: Duration,
}

impl From<&CooldownSettings> for CooldownPolicy {
    fn from(s: &CooldownSettings) -> Self {
        Self {
            failures: s.failures.max(1),
            window: Duration::from_secs(s.window_secs),
            cooldown: Duration::from_secs(s.cooldown_secs),
        }
    }
}

#[derive(Debug, Default)]
struct Record {
    failures: VecDeque<Instant>,
    cooling_until: Option<Instant>,
}

/// Failure records per backend.
#[derive(Debug)]
pub struct Cooldowns {
    policy: CooldownPolicy,
    records: HashMap<BackendKind, Record>,
}

impl Cooldowns {
    pub fn new(policy: CooldownPolicy) -> Self {
        Self {
            policy,
            records: HashMap::new(),
        }
    }

    pub fn set_policy(&mut self, policy: CooldownPolicy) {
        self.policy = policy;
    }

    /// How long `kind` stays skipped; `None` when it may be used now.
    pub fn cooling(&self, kind: BackendKind) -> Option<Duration> {
        let until = self.records.get(&kind)?.cooling_until?;
        let now = Instant::now();
        (until > now).then(|| until - now)
    }

    /// Records a failed reply; returns true when this failure started a cooldown.
    pub fn failure(&mut self, kind: BackendKind) -> bool {
        let now = Instant::now();
        let policy = self.policy;
        let record = self.records.entry(kind).or_default();
        record.failures.push_back(now);
        while record
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > policy.window)
        {
            record.failures.pop_front();
        }
        if record.failures.len() >= policy.failures as usize {
            record.failures.clear();
            record.cooling_until = Some(now + policy.cooldown);
            tracing::warn!(
                backend = %kind,
                cooldown_secs = policy.cooldown.as_secs_f64(),
                failures = policy.failures,
                window_secs = policy.window.as_secs_f64(),
                "backend cooling down"
            );
            return true;
        }
        false
    }

    /// A reply started: the backend's failure count starts over.
    pub fn success(&mut self, kind: BackendKind) {
        if let Some(record) = self.records.get_mut(&kind) {
            record.failures.clear();
            record.cooling_until = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CooldownPolicy {
        CooldownPolicy {
            failures: 2,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(30),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn n_failures_in_the_window_cool_a_backend_down_for_the_set_time() {
        let mut c = Cooldowns::new(policy());
        assert!(!c.failure(BackendKind::Ollama));
        assert_eq!(c.cooling(BackendKind::Ollama), None);
        assert!(c.failure(BackendKind::Ollama), "second failure within 10 s");
        assert_eq!(c.cooling(BackendKind::Ollama), Some(Duration::from_secs(30)));
        assert_eq!(c.cooling(BackendKind::Embedded), None, "other backends are unaffected");
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(c.cooling(BackendKind::Ollama), Some(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(c.cooling(BackendKind::Ollama), None, "usable again after 30 s");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_outside_the_window_do_not_add_up() {
        let mut c = Cooldowns::new(policy());
        assert!(!c.failure(BackendKind::Vllm));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(
            !c.failure(BackendKind::Vllm),
            "the first failure is older than the window"
        );
        c.success(BackendKind::Vllm);
        assert!(!c.failure(BackendKind::Vllm), "a success starts the count over");
    }
}
