//! Every setting checked at once, each problem naming its key (or variable), so a typo
//! is reported at start instead of surfacing later as a confusing connection error.

use super::{Problem, Settings};

impl Settings {
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| {
            problems.push(Problem {
                key: key.into(),
                message,
            })
        };
        self.check_backend_choice(&mut problem);
        self.check_embedded(&mut problem);
        self.check_services(&mut problem);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The active backend and the fallbacks: each configured, none listed twice.
    fn check_backend_choice(&self, problem: &mut impl FnMut(&str, String)) {
        if !self.is_configured(self.active) {
            problem(
                "active",
                format!(
                    "{} is chosen but has no [{}] section with its url",
                    self.active, self.active
                ),
            );
        }
        for (i, kind) in self.fallback.iter().enumerate() {
            if !self.is_configured(*kind) {
                problem(
                    "fallback",
                    format!("{kind} is listed but has no [{kind}] section with its url"),
                );
            }
            if self.fallback[..i].contains(kind) {
                problem("fallback", format!("{kind} is listed twice"));
            }
        }
    }

    /// The `[embedded]` section.
    fn check_embedded(&self, problem: &mut impl FnMut(&str, String)) {
        check_ctx(problem, "embedded.ctx", self.embedded.ctx);
        if self.embedded.model.trim().is_empty() {
            problem(
                "embedded.model",
                "is empty: name an installed model or a .gguf path".into(),
            );
        }
        let layers = self.embedded.gpu_layers.trim();
        if !layers.eq_ignore_ascii_case("auto") && layers.parse::<u32>().is_err() {
            problem(
                "embedded.gpu_layers",
                format!("must be `auto` or a number of layers, not {layers:?}"),
            );
        }
        if let Some(message) = device_problem(&self.embedded.device) {
            problem("embedded.device", message);
        }
        if self.embedded.threads == Some(0) {
            problem(
                "embedded.threads",
                "must be at least 1 (or absent for automatic)".into(),
            );
        }
        let parallel = self.embedded.parallel.trim();
        let most = hearth_core::MAX_PARALLEL;
        if !parallel.eq_ignore_ascii_case("auto") && !parallel.parse::<u32>().is_ok_and(|n| (1..=most).contains(&n)) {
            problem(
                "embedded.parallel",
                format!("must be `auto` or a number of sequences from 1 to {most}, not {parallel:?}"),
            );
        }
    }

    /// The API token, the external backends' sections, retries and cooldowns.
    fn check_services(&self, problem: &mut impl FnMut(&str, String)) {
        if let Some(token) = &self.api.token {
            let token = token.expose();
            if token.is_empty() || token.chars().any(char::is_whitespace) {
                problem(
                    "api.token",
                    "must be one word without spaces (or absent for no token)".into(),
                );
            }
        }
        if let Some(ollama) = &self.ollama {
            check_url(problem, "ollama.url", &ollama.url, "http://127.0.0.1:11434");
            if ollama.model.trim().is_empty() {
                problem("ollama.model", "is empty: name a model pulled in Ollama".into());
            }
            check_ctx(problem, "ollama.num_ctx", ollama.num_ctx);
        }
        if let Some(vllm) = &self.vllm {
            check_url(problem, "vllm.url", &vllm.url, "http://127.0.0.1:8000/v1");
            if vllm.stall_timeout_ms < 10 {
                problem("vllm.stall_timeout_ms", "must be at least 10".into());
            }
        }
        if self.retry.retries > 10 {
            problem(
                "retry.retries",
                format!("{} is too many (at most 10)", self.retry.retries),
            );
        }
        if self.retry.first_delay_ms > 60_000 {
            problem("retry.first_delay_ms", "must be at most 60000 (one minute)".into());
        }
        if self.cooldown.failures == 0 {
            problem("cooldown.failures", "must be at least 1".into());
        }
        if self.cooldown.window_secs == 0 {
            problem("cooldown.window_secs", "must be at least 1".into());
        }
    }
}

/// What is wrong with an `embedded.device` value, if anything. Only its form is checked
/// here: which devices exist is the worker's to say (it loads the GPU drivers, which
/// this process must not), and it names the devices there are when one is missing.
pub(crate) fn device_problem(device: &str) -> Option<String> {
    const USE: &str = "use auto, cpu or a device `hearth hw` lists, e.g. vulkan0";
    let device = device.trim();
    if device.is_empty() {
        Some(format!("is empty: {USE}"))
    } else if device.chars().any(char::is_whitespace) {
        Some(format!("{device:?} is not a device name (it has spaces): {USE}"))
    } else {
        None
    }
}

fn check_ctx(problem: &mut impl FnMut(&str, String), key: &str, ctx: u32) {
    if !(256..=1 << 20).contains(&ctx) {
        problem(key, format!("{ctx} is out of range (256 to 1048576 tokens)"));
    }
}

fn check_url(problem: &mut impl FnMut(&str, String), key: &str, value: &str, example: &str) {
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
        Ok(url) => problem(
            key,
            format!(
                "{value:?} is not an http(s) URL (scheme {:?}); e.g. {example}",
                url.scheme()
            ),
        ),
        Err(e) => problem(key, format!("{value:?} is not a URL ({e}); e.g. {example}")),
    }
}
