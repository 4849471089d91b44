use std::path::PathBuf;

use crate::EngineError;

/// How a model is loaded. Validated before anything reaches llama.cpp.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    pub model_path: PathBuf,
    /// Context window in tokens (prompt + reply). Capped at the model's training context.
    /// The most the KV cache may grow to; see [`crate::INITIAL_CONTEXT`].
    pub n_ctx: u32,
    /// KV cache allocated at load, in tokens (at most `n_ctx`). It grows toward `n_ctx`
    /// when a request needs more room. With layers on a GPU the whole `n_ctx` is
    /// allocated at load.
    pub initial_ctx: u32,
    /// Threads for generating tokens; `None` = one per physical core.
    pub n_threads: Option<u32>,
    /// Threads for prompt processing; `None` = same as `n_threads`.
    pub n_threads_batch: Option<u32>,
    /// Tokens evaluated per llama_decode call while reading the prompt.
    pub n_batch: u32,
    /// Layers offloaded to the GPU (0 on a CPU-only build).
    pub n_gpu_layers: u32,
    /// The device the model runs on (`auto`: a CUDA GPU, else Vulkan, else the CPU).
    pub device: crate::DeviceChoice,
    /// Run one tiny decode at load so the first real request is not slow
    /// (page-faulting the mmapped weights and repacking them happen here).
    pub warmup: bool,
    /// Most tokens guessed from the conversation and verified in one step (0 = off;
    /// at most [`crate::MAX_DRAFT`]). The reply is the same either way.
    pub max_draft: u32,
    /// The fewest guessed tokens verified whenever every replying sequence has a guess
    /// (0: as many as the measured step costs say pay; at most `max_draft`), like
    /// llama-server's `--draft-min`. Forcing guesses makes the steps the same on every
    /// machine, whatever its speed: for a GPU, where wide steps are nearly free, and
    /// for tests, which check what drafting does rather than when it pays.
    pub min_draft: u32,
    /// Told how much of the model is loaded (0 to 1) while llama.cpp reads it.
    pub load_progress: Option<LoadProgress>,
    /// Sequences served at once, in one batch (continuous batching), each with
    /// `n_ctx` positions of its own; 1 serves one at a time, with a growing cache.
    /// Either way a sequence replying alone drafts; beside others, where the measured
    /// cost of a wider step says its guesses pay. At most [`MAX_PARALLEL`].
    pub n_parallel: u32,
    /// After a load with layers on a GPU failed (out of device memory, as a rule): how
    /// many layers to try next, given how many failed. Without it, half as many. The
    /// engine always tries fewer than failed, and the CPU last.
    pub layer_fallback: Option<LayerFallback>,
    /// A Jinja chat template (its text) to write chats with instead of the model's own
    /// (`--chat-template-file`); `None`: the model's.
    pub chat_template: Option<String>,
}

pub use hearth_core::MAX_PARALLEL;

/// Re-plans a load that failed on a GPU: the fit planner's layers for the device's
/// memory now, given how many failed (the worker asks it), or `None` when it cannot
/// say. What is tried next is [`hearth_core::fewer_gpu_layers`]'s rule.
#[derive(Clone)]
pub struct LayerFallback(pub std::sync::Arc<dyn Fn(u32) -> Option<u32> + Send + Sync>);

impl LayerFallback {
    pub fn new(planned: impl Fn(u32) -> Option<u32> + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(planned))
    }

    /// The layers to try after `failed` did not fit.
    pub(crate) fn next(fallback: Option<&Self>, failed: u32) -> u32 {
        hearth_core::fewer_gpu_layers(failed, fallback.and_then(|f| (f.0)(failed)))
    }
}

impl std::fmt::Debug for LayerFallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LayerFallback")
    }
}

/// The same planner, not an equal one: configurations compare by what they load.
impl PartialEq for LayerFallback {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Where load progress goes: llama.cpp's progress callback, passed on.
#[derive(Clone)]
pub struct LoadProgress(pub std::sync::Arc<dyn Fn(f32) + Send + Sync>);

impl LoadProgress {
    pub fn new(report: impl Fn(f32) + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(report))
    }
}

impl std::fmt::Debug for LoadProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoadProgress")
    }
}

/// The same sink, not an equal one: configurations compare by what they load.
impl PartialEq for LoadProgress {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The largest context Hearth accepts; prompts up to 32K tokens must work.
pub const MAX_CONTEXT: u32 = 131_072;

impl EngineConfig {
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            n_ctx: 4096,
            initial_ctx: crate::INITIAL_CONTEXT,
            n_threads: None,
            n_threads_batch: None,
            n_batch: 512,
            n_gpu_layers: 0,
            device: crate::DeviceChoice::Auto,
            warmup: true,
            max_draft: crate::MAX_DRAFT as u32,
            min_draft: 0,
            layer_fallback: None,
            load_progress: None,
            n_parallel: 1,
            chat_template: None,
        }
    }

    /// Serves `n` sequences at once (see [`EngineConfig::n_parallel`]).
    pub fn with_parallel(mut self, n: u32) -> Self {
        self.n_parallel = n;
        self
    }

    pub fn with_n_ctx(mut self, n_ctx: u32) -> Self {
        self.n_ctx = n_ctx;
        self
    }

    /// Allocates the whole context at load (no growth): what llama.cpp itself does.
    pub fn with_full_context(mut self) -> Self {
        self.initial_ctx = self.n_ctx;
        self
    }

    /// Verifies at least `n` guessed tokens whenever there is a guess (see
    /// [`EngineConfig::min_draft`]).
    pub fn with_min_draft(mut self, n: u32) -> Self {
        self.min_draft = n;
        self
    }

    pub fn with_threads(mut self, n_threads: u32) -> Self {
        self.n_threads = Some(n_threads);
        self
    }

    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |msg: String| Err(EngineError::InvalidSettings(msg));
        if !(16..=MAX_CONTEXT).contains(&self.n_ctx) {
            return bad(format!(
                "context size n_ctx = {} must be between 16 and {MAX_CONTEXT} tokens",
                self.n_ctx
            ));
        }
        if !(1..=8192).contains(&self.n_batch) {
            return bad(format!(
                "batch size n_batch = {} must be between 1 and 8192",
                self.n_batch
            ));
        }
        if self.max_draft as usize > crate::MAX_DRAFT {
            return bad(format!(
                "max_draft = {} must be between 0 (off) and {}",
                self.max_draft,
                crate::MAX_DRAFT
            ));
        }
        if self.min_draft > self.max_draft {
            return bad(format!(
                "min_draft = {} must not exceed max_draft = {} (lower it, or raise max_draft)",
                self.min_draft, self.max_draft
            ));
        }
        if !(1..=MAX_PARALLEL).contains(&self.n_parallel) {
            return bad(format!(
                "parallel = {} must be between 1 and {MAX_PARALLEL} sequences",
                self.n_parallel
            ));
        }
        for (name, value) in [("n_threads", self.n_threads), ("n_threads_batch", self.n_threads_batch)] {
            if let Some(n) = value {
                if !(1..=512).contains(&n) {
                    return bad(format!("{name} = {n} must be between 1 and 512"));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn threads(&self) -> u32 {
        self.n_threads.unwrap_or_else(default_threads)
    }

    pub(crate) fn threads_batch(&self) -> u32 {
        self.n_threads_batch.unwrap_or_else(|| self.threads())
    }
}

/// One thread per physical core: llama.cpp's decode is memory-bound and
/// hyper-threads only contend for the same caches.
pub fn default_threads() -> u32 {
    physical_cores()
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(4, |n| u32::try_from(n.get()).unwrap_or(4)))
}

fn physical_cores() -> Option<u32> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mut cores = std::collections::BTreeSet::new();
    let mut physical_id = None;
    for line in cpuinfo.lines() {
        let mut parts = line.splitn(2, ':');
        let key = parts.next().unwrap_or("").trim();
        let value = parts.next().unwrap_or("").trim();
        match key {
            "physical id" => physical_id = Some(value.to_owned()),
            "core id" => {
                cores.insert((physical_id.clone(), value.to_owned()));
            }
            _ => {}
        }
    }
    let n = u32::try_from(cores.len()).ok()?;
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_load_asks_the_planner_and_tries_fewer_layers() {
        assert_eq!(LayerFallback::next(None, 31), 15, "without a planner: half as many");
        let planner = LayerFallback::new(|failed| (failed > 20).then_some(12));
        assert_eq!(LayerFallback::next(Some(&planner), 31), 12);
        assert_eq!(LayerFallback::next(Some(&planner), 12), 6, "the planner could not say");
        assert_eq!(format!("{planner:?}"), "LayerFallback");
        assert_eq!(planner, planner.clone());
    }

    #[test]
    fn bad_settings_name_the_key() {
        let base = EngineConfig::new("m.gguf");
        assert!(base.validate().is_ok());
        let e = base.clone().with_n_ctx(1).validate().expect_err("n_ctx");
        assert!(e.to_string().contains("n_ctx"));
        let e = EngineConfig {
            n_batch: 0,
            ..base.clone()
        }
        .validate()
        .expect_err("n_batch");
        assert!(e.to_string().contains("n_batch"));
        let e = EngineConfig {
            max_draft: 9,
            ..base.clone()
        }
        .validate()
        .expect_err("max_draft");
        assert!(e.to_string().contains("max_draft = 9"), "{e}");
        assert!(EngineConfig {
            max_draft: 0,
            ..base.clone()
        }
        .validate()
        .is_ok());
        let e = EngineConfig {
            max_draft: 2,
            ..base.clone().with_min_draft(3)
        }
        .validate()
        .expect_err("min_draft");
        assert!(
            e.to_string().contains("min_draft = 3 must not exceed max_draft = 2"),
            "{e}"
        );
        assert!(base.clone().with_min_draft(8).validate().is_ok());
        let e = base.clone().with_parallel(0).validate().expect_err("parallel");
        assert!(e.to_string().contains("parallel = 0"), "{e}");
        assert!(base.clone().with_parallel(4).validate().is_ok());
        let e = base.with_threads(0).validate().expect_err("threads");
        assert!(e.to_string().contains("n_threads"));
    }

    #[test]
    fn default_threads_is_positive() {
        assert!(default_threads() >= 1);
    }
}
