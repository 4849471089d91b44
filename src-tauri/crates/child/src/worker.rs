//! The engine worker's contract (`hearth worker`, `hearth-app worker`, started by
//! `hearth_backends::Supervisor`): the environment it is started with and its answer.
//! While llama.cpp reads the model it prints `progress` lines (`done` percent of 100,
//! one per whole percent); then `done` with [`Ready`], or `error` with the code and
//! the words of why it could not start. Here, below both sides, so the worker needs
//! nothing of the HTTP client side to speak it.

use serde::{Deserialize, Serialize};

use crate::Progress;

/// The bearer token the worker's API requires. Passed in the environment, never in
/// argv, which any user on the machine can read in /proc.
pub const TOKEN_ENV: &str = "HEARTH_WORKER_TOKEN";
/// The supervisor's pid: the worker exits at once if its parent is already another
/// process (the supervisor died before the worker could arm its death signal).
pub const PARENT_ENV: &str = "HEARTH_WORKER_PARENT";

/// The worker's `done` result: it serves the model on this loopback port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    pub port: u16,
    pub pid: u32,
    /// The model's id, as the API names it.
    pub model: String,
}

impl Ready {
    /// This process serves `model` on `port`.
    pub fn here(port: u16, model: impl Into<String>) -> Self {
        Self {
            port,
            pid: std::process::id(),
            model: model.into(),
        }
    }
}

/// The progress line for `fraction` of the model read: whole percent of 100.
pub fn loading(fraction: f32) -> Progress {
    Progress {
        done: (fraction.clamp(0.0, 1.0) * 100.0) as u32,
        total: 100,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_line, ChildLine};

    #[test]
    fn the_worker_s_lines_round_trip() {
        let ready = ChildLine::Done {
            result: Ready::here(4242, "SmolLM2"),
        };
        let line = ready.to_line();
        assert!(
            line.starts_with(r#"{"event":"done","result":{"port":4242,"pid":"#),
            "{line}"
        );
        assert_eq!(parse_line::<Ready>(&line).expect("protocol").expect("read"), ready);
        assert_eq!(loading(0.4242), Progress { done: 42, total: 100 });
        assert_eq!(loading(1.0).fraction(), 1.0);
        assert_eq!(loading(7.0).done, 100, "clamped");
    }
}
