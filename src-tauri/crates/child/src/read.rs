//! The async reader (tokio), for a child whose answer is awaited within a time limit:
//! the engine worker's readiness (the supervisor), the device list (the app). The
//! caller owns the child and keeps its own words for a child that stopped before
//! answering or did not answer in time; it knows what the child was for.

use std::time::Duration;

use hearth_core::ErrorCode;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::line::{parse_line, unreadable, ChildLine, Progress};

/// Why [`read_answer`] has no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    /// The child's `error` answer: its code and its words.
    #[error("{message}")]
    Failed { code: ErrorCode, message: String },
    /// Its stdout ended without an answer: the child died or is exiting (wait for it to
    /// learn how).
    #[error("the child process stopped before it answered")]
    Closed,
    /// No answer within the time limit; the child may still run (kill it).
    #[error("the child process did not answer within {0:?}")]
    TimedOut(Duration),
}

/// Reads `stdout` (a child's) until its answer, within `timeout`: progress lines go to
/// `on_progress`, lines not of the protocol are skipped. After an answer the rest of
/// stdout is drained in a task, so that a stray print can never block a child that
/// lives on (the engine worker serves for hours).
pub async fn read_answer<T, R>(
    stdout: R,
    timeout: Duration,
    mut on_progress: impl FnMut(Progress),
) -> Result<T, ReadError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin + Send + 'static,
{
    let mut stdout = BufReader::new(stdout);
    let answer = tokio::time::timeout(timeout, async {
        let mut line = Vec::new();
        loop {
            line.clear();
            // Bytes, not `lines()`: a driver's print that is not UTF-8 must not end the
            // reading.
            match stdout.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => return Err(ReadError::Closed),
                Ok(_) => {}
            }
            match parse_line::<T>(&String::from_utf8_lossy(&line)) {
                None => {}
                Some(Ok(ChildLine::Progress { done, total })) => on_progress(Progress { done, total }),
                Some(Ok(ChildLine::Done { result })) => return Ok(result),
                Some(Ok(ChildLine::Error { code, message })) => return Err(ReadError::Failed { code, message }),
                Some(Err(e)) => {
                    return Err(ReadError::Failed {
                        code: ErrorCode::Internal,
                        message: unreadable("a child process's", &e),
                    })
                }
            }
        }
    })
    .await
    .unwrap_or(Err(ReadError::TimedOut(timeout)));
    if matches!(answer, Ok(_) | Err(ReadError::Failed { .. })) {
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await;
        });
    }
    answer
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;

    use tokio::process::{Child, Command};

    use super::*;

    /// A hang detector only: these children answer in milliseconds.
    const HANG: Duration = Duration::from_secs(60);

    fn sh(script: &str) -> Child {
        Command::new("/bin/sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("sh")
    }

    async fn read(child: &mut Child, timeout: Duration, seen: &mut Vec<Progress>) -> Result<u32, ReadError> {
        let stdout = child.stdout.take().expect("stdout");
        read_answer(stdout, timeout, |p| seen.push(p)).await
    }

    #[tokio::test]
    async fn progress_is_passed_on_and_the_answer_read_past_noise() {
        let mut child = sh(
            r#"echo '{"event":"progress","done":1,"total":2}'; echo 'ggml: noise'; printf '\377\n'; echo '{"event":"progress","done":2,"total":2}'; echo '{"event":"done","result":7}'"#,
        );
        let mut seen = Vec::new();
        assert_eq!(read(&mut child, HANG, &mut seen).await, Ok(7));
        assert_eq!(seen, [Progress { done: 1, total: 2 }, Progress { done: 2, total: 2 }]);
    }

    #[tokio::test]
    async fn an_error_answer_comes_with_its_code() {
        let mut child = sh(r#"echo '{"event":"error","code":"devices_unavailable","message":"no driver"}'; exit 1"#);
        assert_eq!(
            read(&mut child, HANG, &mut Vec::new()).await,
            Err(ReadError::Failed {
                code: ErrorCode::DevicesUnavailable,
                message: "no driver".into()
            })
        );
    }

    #[tokio::test]
    async fn a_child_that_dies_without_an_answer_is_closed() {
        let mut child = sh(r#"echo '{"event":"progress","done":1,"total":2}'; kill -KILL $$"#);
        let mut seen = Vec::new();
        assert_eq!(read(&mut child, HANG, &mut seen).await, Err(ReadError::Closed));
        assert_eq!(seen.len(), 1);
        let status = tokio::time::timeout(HANG, child.wait())
            .await
            .expect("exited")
            .expect("status");
        assert!(!status.success());
    }

    #[tokio::test]
    async fn a_child_that_does_not_answer_in_time_times_out() {
        // The child sleeps far longer than the limit: only the limit ends the reading.
        let mut child = sh(r#"echo '{"event":"progress","done":0,"total":100}'; exec sleep 600"#);
        let limit = Duration::from_millis(200);
        assert_eq!(
            read(&mut child, limit, &mut Vec::new()).await,
            Err(ReadError::TimedOut(limit))
        );
        child.kill().await.expect("killed");
    }

    #[tokio::test]
    async fn the_rest_of_stdout_is_drained_after_the_answer() {
        // Far more than a pipe holds (64 KiB): the child exits only if it is read.
        let mut child = sh(r#"echo '{"event":"done","result":1}'; yes noise | head -c 1000000; exit 0"#);
        assert_eq!(read(&mut child, HANG, &mut Vec::new()).await, Ok(1));
        let status = tokio::time::timeout(HANG, child.wait())
            .await
            .expect("exited")
            .expect("status");
        assert!(status.success(), "{status}");
    }
}
