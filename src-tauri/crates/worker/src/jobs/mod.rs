//! Long jobs that load llama.cpp on a model file (quantizing, measuring), each run in a
//! child process of the executable that asked for it (`hearth quantize-worker`,
//! `hearth-app measure-worker`...): a cancel is a kill, and a crash or an abort inside
//! llama.cpp costs the job, not the CLI or the desktop app.
//!
//! The protocol is `hearth_child`'s (progress lines, then `done` or `error` with its
//! code), and so is the runner: [`run_child`] reads it, a child that dies without an
//! answer is an error that says so, and [`Cancel`] stops the child from any thread.

pub mod measure;
pub mod quantize;

use anyhow::Result;
use clap::Subcommand;
// The runner and its errors, where the jobs' callers (the CLI, the app) find them.
pub use hearth_child::{run_child, run_child_fed, Cancel, ChildError, Progress};

/// The jobs' child processes, as subcommands of whichever executable runs them (hidden
/// from help: Hearth starts them itself).
#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// The quantize worker process, started by `hearth quantize` and the app.
    #[command(hide = true)]
    QuantizeWorker(quantize::QuantizeWorkerArgs),
    /// The measuring worker process, started by `hearth eval` and the app's Quantize… flow.
    #[command(hide = true)]
    MeasureWorker(measure::MeasureWorkerArgs),
}

impl JobCommand {
    /// The subcommand names, for an executable that dispatches before its own parser.
    pub const NAMES: [&'static str; 2] = ["quantize-worker", "measure-worker"];

    pub fn run(&self) -> Result<()> {
        match self {
            JobCommand::QuantizeWorker(args) => quantize::run_worker(args),
            JobCommand::MeasureWorker(args) => measure::run_worker(args),
        }
    }
}

/// A job refused before its child starts, for callers that answer it with its own code
/// (the app's). A job that was cancelled or whose child failed is a [`ChildError`].
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("not enough free space in {dir}: the output needs about {needed} and {free} is free. Free some space or write the output to another disk", dir = dir.display(), needed = quantize::human_bytes(*needed), free = quantize::human_bytes(*free))]
    NotEnoughSpace {
        dir: std::path::PathBuf,
        needed: u64,
        free: u64,
    },
}

/// The code of a job's error, for its `error` line: the engine's own where it is one (an
/// unreadable model file is `invalid_model`), else `fallback`.
pub(crate) fn code_of(e: &anyhow::Error, fallback: hearth_core::ErrorCode) -> hearth_core::ErrorCode {
    if let Some(engine) = e.downcast_ref::<hearth_engine::EngineError>() {
        return engine.code();
    }
    if e.downcast_ref::<hearth_gguf::GgufError>().is_some() {
        return hearth_core::ErrorCode::InvalidModel;
    }
    match e.downcast_ref::<hearth_engine::QuantizeError>() {
        Some(hearth_engine::QuantizeError::AlreadyQuantized { .. }) => hearth_core::ErrorCode::AlreadyQuantized,
        Some(hearth_engine::QuantizeError::UnsupportedType(_)) => hearth_core::ErrorCode::InvalidType,
        Some(hearth_engine::QuantizeError::InvalidSource(_)) => hearth_core::ErrorCode::InvalidModel,
        Some(hearth_engine::QuantizeError::Failed { .. }) => hearth_core::ErrorCode::QuantizeFailed,
        None => fallback,
    }
}
