//! The blocking runner, for jobs that run to their end (quantizing, measuring): start
//! the child, pass its progress on, read its answer, wait for it to exit. [`Cancel`]
//! stops it from any thread (a Ctrl-C handler, the app's Cancel button); a child that
//! dies without an answer (llama.cpp aborted, the system killed it) is an error that
//! says so.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use anyhow::{Context, Result};
use hearth_core::ErrorCode;
use serde::de::DeserializeOwned;

use crate::line::{parse_line, unreadable, ChildLine, Progress};

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

/// How a child's job ended when it did not finish, for callers that answer each
/// differently (the app's codes). A child that died without an answer is a plain
/// error with the words of [`stopped`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChildError {
    #[error("cancelled: nothing was written")]
    Cancelled,
    /// The child's `error` answer: its code and its words.
    #[error("{message}")]
    Failed { code: ErrorCode, message: String },
}

/// Runs `exe ARGS…` as a job's child and reads its lines until it exits: progress goes
/// to `on_progress`; the result is the `done` line's. `what` names the job in errors
/// ("the quantize worker crashed…").
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
        return Err(ChildError::Cancelled.into());
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
    let answer = child
        .stdout
        .take()
        .and_then(|stdout| read_lines(stdout, what, on_progress));
    let status = child.wait().with_context(|| format!("waiting for the {what} worker"));
    cancel.pid.store(0, Ordering::Release);
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    let status = status?;
    if cancel.is_cancelled() {
        return Err(ChildError::Cancelled.into());
    }
    match answer {
        Some(Ok(result)) if status.success() => Ok(result),
        Some(Err(e)) => Err(e.into()),
        _ => Err(stopped(what, status)),
    }
}

/// Reads a child's stdout to its end (so it never blocks on a full pipe): progress to
/// `on_progress`, the answer kept. Bytes that are not UTF-8 (a driver's) are replaced,
/// not an end of the reading.
fn read_lines<T: DeserializeOwned>(
    stdout: impl std::io::Read,
    what: &str,
    on_progress: &mut dyn FnMut(Progress),
) -> Option<Result<T, ChildError>> {
    let mut answer = None;
    for line in BufReader::new(stdout).split(b'\n') {
        let Ok(line) = line else { break };
        match parse_line::<T>(&String::from_utf8_lossy(&line)) {
            None => {}
            Some(Ok(ChildLine::Progress { done, total })) => on_progress(Progress { done, total }),
            Some(Ok(ChildLine::Done { result })) => answer = Some(Ok(result)),
            Some(Ok(ChildLine::Error { code, message })) => answer = Some(Err(ChildError::Failed { code, message })),
            Some(Err(e)) => {
                answer = Some(Err(ChildError::Failed {
                    code: ErrorCode::Internal,
                    message: unreadable(&format!("the {what} worker's"), &e),
                }))
            }
        }
    }
    answer
}

/// The words for a child that ended without its result. A signal is a crash: llama.cpp
/// aborts the process on some files it cannot handle, and the system kills a process
/// that runs it out of memory.
pub fn stopped(what: &str, status: ExitStatus) -> anyhow::Error {
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

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::path::Path;

    use super::*;

    const PROGRESS: &str = r#"echo '{"event":"progress","done":1,"total":2}'"#;

    fn sh(script: &str) -> Vec<OsString> {
        vec!["-c".into(), script.into()]
    }

    fn run(script: &str, cancel: &Cancel, seen: &mut Vec<Progress>) -> Result<u32> {
        run_child(Path::new("/bin/sh"), &sh(script), "test", cancel, &mut |p| seen.push(p))
    }

    #[test]
    fn the_answer_is_read_past_progress_and_noise() {
        let mut seen = Vec::new();
        let script =
            format!(r#"{PROGRESS}; echo noise; printf 'bad \377 bytes\n'; echo '{{"event":"done","result":7}}'"#);
        let result = run(&script, &Cancel::new(), &mut seen).expect("answered");
        assert_eq!(result, 7);
        assert_eq!(seen, [Progress { done: 1, total: 2 }]);
    }

    #[test]
    fn an_error_answer_is_an_error_with_its_code() {
        let script = r#"echo '{"event":"error","code":"invalid_model","message":"not a GGUF file"}'; exit 1"#;
        let e = run(script, &Cancel::new(), &mut Vec::new()).expect_err("failed");
        assert_eq!(format!("{e:#}"), "not a GGUF file");
        assert_eq!(
            e.downcast_ref::<ChildError>(),
            Some(&ChildError::Failed {
                code: ErrorCode::InvalidModel,
                message: "not a GGUF file".into()
            })
        );
    }

    #[test]
    fn a_child_that_dies_without_an_answer_says_so() {
        let e = run(&format!("{PROGRESS}; exit 3"), &Cancel::new(), &mut Vec::new()).expect_err("no answer");
        let words = format!("{e:#}");
        assert!(words.contains("the test worker stopped unexpectedly"), "{words}");
        assert!(words.contains("exit status: 3"), "{words}");
        let e = run(
            r#"echo '{"event":"done","result":7}'; exit 2"#,
            &Cancel::new(),
            &mut Vec::new(),
        )
        .expect_err("an answer, then a failed exit");
        assert!(format!("{e:#}").contains("stopped unexpectedly"), "{e:#}");
    }

    #[test]
    fn a_killed_child_is_said_to_be_killed_and_a_crashed_one_crashed() {
        let e = run("kill -KILL $$", &Cancel::new(), &mut Vec::new()).expect_err("killed");
        let words = format!("{e:#}");
        assert!(words.contains("the test worker was killed"), "{words}");
        assert!(words.contains("for want of memory"), "{words}");
        // SIGTERM rather than SIGABRT: the same words, and no core file left behind.
        let e = run("kill -TERM $$", &Cancel::new(), &mut Vec::new()).expect_err("crashed");
        assert!(format!("{e:#}").contains("the test worker crashed"), "{e:#}");
    }

    #[test]
    fn a_cancel_kills_the_child_and_the_job_is_cancelled() {
        let cancel = Cancel::new();
        // The child waits far longer than any test runs: only the cancel ends it.
        let script = format!("{PROGRESS}; exec sleep 600");
        let e = run_child::<u32>(Path::new("/bin/sh"), &sh(&script), "test", &cancel, &mut |_| {
            cancel.cancel()
        })
        .expect_err("cancelled");
        assert_eq!(e.downcast_ref::<ChildError>(), Some(&ChildError::Cancelled));
        assert_eq!(format!("{e:#}"), "cancelled: nothing was written");
        let e = run("echo never", &cancel, &mut Vec::new()).expect_err("still cancelled");
        assert_eq!(e.downcast_ref::<ChildError>(), Some(&ChildError::Cancelled));
        cancel.reset();
        assert_eq!(
            run(r#"echo '{"event":"done","result":1}'"#, &cancel, &mut Vec::new()).expect("ran"),
            1
        );
    }

    #[test]
    fn the_input_is_fed_to_the_child() {
        let script = r#"read x; echo "{\"event\":\"done\",\"result\":$x}""#;
        let result: u32 = run_child_fed(
            Path::new("/bin/sh"),
            &sh(script),
            Some(b"41\n".to_vec()),
            "test",
            &Cancel::new(),
            &mut |_| {},
        )
        .expect("answered");
        assert_eq!(result, 41);
    }

    #[test]
    fn a_program_that_cannot_start_is_named() {
        let e = run_child::<u32>(
            Path::new("/nonexistent/hearth"),
            &[],
            "test",
            &Cancel::new(),
            &mut |_| {},
        )
        .expect_err("no such program");
        assert!(
            format!("{e:#}").contains("cannot start the test worker (/nonexistent/hearth)"),
            "{e:#}"
        );
    }
}
