//! Long jobs that load llama.cpp on a model file (quantizing, measuring), each run in a
//! child process of the executable that asked for it (`hearth quantize-worker`,
//! `hearth-app measure-worker`...): a cancel is a kill, and a crash or an abort inside
//! llama.cpp costs the job, not the CLI or the desktop app.
//!
//! The protocol is one JSON line per event on the child's stdout: progress, then one
//! `done` with the result or one `error` with the words to show. [`run_child`] reads it;
//! a child that dies without either (llama.cpp aborted, the system killed it) is an
//! error that says so. [`Cancel`] stops the child from any thread (a Ctrl-C handler,
//! the app's Cancel button).

pub mod measure;
pub mod quantize;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use anyhow::{Context, Result};
use clap::Subcommand;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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

/// Progress of a job: `done` of `total` steps (tensors, windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub done: u32,
    pub total: u32,
}

/// One line of a job's stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum JobLine<T> {
    Progress(Progress),
    Done { result: T },
    Error { message: String },
}

/// Writes one line of the protocol (from the child).
pub(crate) fn say<T: Serialize>(line: &JobLine<T>) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Stops a running job from another thread. One per job (or one reused for jobs run
/// one after another): `cancel` kills the child running now and marks the job cancelled.
#[derive(Debug, Default)]
pub struct Cancel {
    cancelled: AtomicBool,
    pid: AtomicU32,
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Kills the job's child, if one runs, and makes the job end with "cancelled".
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        let pid = self.pid.load(Ordering::Acquire);
        if pid != 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(0)),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Ready for the next job.
    pub fn reset(&self) {
        self.cancelled.store(false, Ordering::Release);
    }

    /// For work done in this process: the flag a loop polls between steps.
    pub fn flag(&self) -> &AtomicBool {
        &self.cancelled
    }
}

/// How a job ends when it did not finish, for callers that answer each differently
/// (the app's codes); anything else is a plain error with its words.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("cancelled: nothing was written")]
    Cancelled,
    #[error("not enough free space in {dir}: the output needs about {needed} and {free} is free. Free some space or write the output to another disk", dir = dir.display(), needed = quantize::human_bytes(*needed), free = quantize::human_bytes(*free))]
    NotEnoughSpace {
        dir: std::path::PathBuf,
        needed: u64,
        free: u64,
    },
}

/// Runs `exe ARGS…` as a job's child and reads its lines until it exits: progress goes
/// to `on_progress`; the result is the `done` line's. `what` names the job in errors.
pub fn run_child<T: DeserializeOwned>(
    exe: &Path,
    args: &[std::ffi::OsString],
    what: &str,
    cancel: &Cancel,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<T> {
    run_child_fed(exe, args, None, what, cancel, on_progress)
}

/// [`run_child`], writing `input` to the child's stdin: for a request that may be too
/// long for a command line (Linux allows one argument 128 KiB).
pub fn run_child_fed<T: DeserializeOwned>(
    exe: &Path,
    args: &[std::ffi::OsString],
    input: Option<Vec<u8>>,
    what: &str,
    cancel: &Cancel,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<T> {
    if cancel.is_cancelled() {
        return Err(JobError::Cancelled.into());
    }
    let mut child = Command::new(exe)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start the {what} worker ({})", exe.display()))?;
    cancel.pid.store(child.id(), Ordering::Release);
    // Written from a thread, so that a child that writes before it has read all of it
    // cannot block both; one that dies first makes the write fail, which its exit says
    // better.
    let feeder = child.stdin.take().zip(input).map(|(mut stdin, input)| {
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        })
    });
    // A cancel that came between the check above and the pid being known.
    if cancel.is_cancelled() {
        cancel.cancel();
    }
    let mut outcome: Option<Result<T>> = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<JobLine<T>>(&line) {
                Ok(JobLine::Progress(p)) => on_progress(p),
                Ok(JobLine::Done { result }) => outcome = Some(Ok(result)),
                Ok(JobLine::Error { message }) => outcome = Some(Err(anyhow::anyhow!(message))),
                Err(_) => {}
            }
        }
    }
    let status = child.wait().with_context(|| format!("waiting for the {what} worker"));
    cancel.pid.store(0, Ordering::Release);
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    let status = status?;
    if cancel.is_cancelled() {
        return Err(JobError::Cancelled.into());
    }
    match outcome {
        Some(Ok(result)) if status.success() => Ok(result),
        Some(Err(e)) => Err(e),
        _ => Err(stopped(what, status)),
    }
}

/// The words for a child that ended without its result. A signal is a crash: llama.cpp
/// aborts the process on some files it cannot handle, and the system kills a process
/// that runs it out of memory.
fn stopped(what: &str, status: ExitStatus) -> anyhow::Error {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(signal) if signal == nix::sys::signal::Signal::SIGKILL as i32 => anyhow::anyhow!(
            "the {what} worker was killed ({status}), most likely by the system for want of memory, and nothing was written; close other programs or choose a smaller model"
        ),
        Some(_) => anyhow::anyhow!(
            "the {what} worker crashed ({status}) and nothing was written: llama.cpp aborted on this model file, which may be damaged or of a kind this Hearth cannot run; try another file"
        ),
        None => anyhow::anyhow!("the {what} worker stopped unexpectedly ({status}); nothing was written"),
    }
}

/// Runs a job's work in the child and reports its end on stdout.
pub(crate) fn report<T: Serialize>(result: Result<T>) -> Result<()> {
    match result {
        Ok(result) => {
            say(&JobLine::Done { result });
            Ok(())
        }
        Err(e) => {
            say::<()>(&JobLine::Error {
                message: format!("{e:#}"),
            });
            Err(e)
        }
    }
}
