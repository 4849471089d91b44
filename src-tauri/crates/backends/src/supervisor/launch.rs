//! Starting one worker process: its command line, the answer it gives once loaded (the
//! child protocol's, `hearth_child::worker`), and the client that then talks to it (with
//! a classifier that tells a crash from a hiccup).

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use hearth_child::worker::{Ready, PARENT_ENV, TOKEN_ENV};
use hearth_child::ReadError;
use hearth_core::backend::BoxFuture;
use hearth_core::BackendError;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::{describe, unavailable, Running, WorkerConfig, WorkerState, BACKEND};
use crate::gpu_oom::StderrTail;
use crate::openai::{FailureClassifier, OpenAiBackend};

fn random_token() -> Result<String, BackendError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| unavailable(format!("no randomness for the worker token: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `hearth worker --model PATH …`, with the token its API demands and this process's pid
/// (for the worker's parent-death guard), all three standard streams piped.
fn worker_command(config: &WorkerConfig, model: &Path, token: &str) -> Command {
    let mut command = Command::new(&config.program);
    command
        .arg("worker")
        .arg("--model")
        .arg(model)
        .args(&config.args)
        .env(TOKEN_ENV, token)
        .env(PARENT_ENV, std::process::id().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Starts one worker and reads its answer. The child's stdin stays open: the worker
/// stops when it closes.
pub(super) async fn launch(
    config: &WorkerConfig,
    model: &Path,
    state: &Arc<watch::Sender<WorkerState>>,
) -> Result<(Child, Running, StderrTail), BackendError> {
    let token = random_token()?;
    let mut command = worker_command(config, model, &token);
    // Spawned from a runtime thread, never a blocking-pool one: the worker's death signal
    // fires when the *thread* that spawned it exits, and pool threads exit when idle.
    let mut child = command
        .spawn()
        .map_err(|e| unavailable(format!("could not start {}: {e}", config.program.display())))?;
    let tail = child.stderr.take().map(StderrTail::follow).unwrap_or_default();
    let ready = read_ready(&mut child, config, state).await?;
    let pid = child.id().unwrap_or(ready.pid);
    let classifier = Arc::new(CrashClassifier {
        state: state.subscribe(),
        pid,
    });
    let (port, model) = (ready.port, ready.model);
    let client = OpenAiBackend::new(BACKEND, &format!("http://127.0.0.1:{port}/v1"), Some(token))?
        .with_classifier(classifier)
        .with_default_model(Some(model.clone()));
    tracing::info!(pid, port, model = %model, "worker ready");
    Ok((
        child,
        Running {
            pid,
            port,
            model,
            client: Arc::new(client),
        },
        tail,
    ))
}

/// Reads the worker's answer (within the ready timeout), passing the loading progress
/// it prints on to `state`. A worker that could not load is its own error (code and
/// words); one that stops or overruns first is unavailable (an overrunning one is
/// killed). After the answer, `read_answer` keeps draining stdout so a stray print can
/// never block the worker.
async fn read_ready(
    child: &mut Child,
    config: &WorkerConfig,
    state: &watch::Sender<WorkerState>,
) -> Result<Ready, BackendError> {
    let stdout = child.stdout.take().ok_or_else(|| unavailable("no stdout pipe"))?;
    let answer = hearth_child::read_answer::<Ready, _>(stdout, config.ready_timeout, |p| {
        state.send_replace(WorkerState::Starting {
            loaded: Some(p.fraction()),
        });
    })
    .await;
    match answer {
        Ok(ready) => Ok(ready),
        Err(ReadError::Failed { code, message }) => {
            let _ = child.wait().await;
            Err(BackendError::Failed { code, message })
        }
        Err(ReadError::Closed) => {
            let status = child.wait().await;
            Err(unavailable(format!(
                "the worker stopped before it was ready ({})",
                describe(status)
            )))
        }
        Err(ReadError::TimedOut(limit)) => {
            let _ = child.kill().await;
            Err(unavailable(format!("the worker was not ready within {limit:?}")))
        }
    }
}

/// Turns a broken connection into `Crashed` when the worker process is found dead.
struct CrashClassifier {
    state: watch::Receiver<WorkerState>,
    pid: u32,
}

/// How long a broken connection waits for the monitor to see the process exit. A
/// killed process closes its sockets and is reaped within milliseconds.
const CRASH_GRACE: Duration = Duration::from_millis(1500);

impl FailureClassifier for CrashClassifier {
    fn classify(&self, cause: String) -> BoxFuture<'static, BackendError> {
        let mut state = self.state.clone();
        let pid = self.pid;
        Box::pin(async move {
            let gone = tokio::time::timeout(
                CRASH_GRACE,
                state.wait_for(|s| !matches!(s, WorkerState::Ready(r) if r.pid == pid)),
            )
            .await;
            match gone {
                Ok(Ok(s)) => match &*s {
                    WorkerState::Crashed { cause } => BackendError::Crashed {
                        backend: BACKEND.into(),
                        cause: cause.clone(),
                    },
                    WorkerState::Failed(e) => e.clone(),
                    _ => BackendError::Crashed {
                        backend: BACKEND.into(),
                        cause,
                    },
                },
                _ => unavailable(cause),
            }
        })
    }
}
