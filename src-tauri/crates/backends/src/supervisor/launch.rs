//! Starting one worker process: its command line, the handshake it answers with, and the
//! client that then talks to it (with a classifier that tells a crash from a hiccup).

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use hearth_core::backend::BoxFuture;
use hearth_core::{BackendError, ErrorCode};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::{describe, unavailable, Running, WorkerConfig, WorkerState, BACKEND};
use crate::gpu_oom::StderrTail;
use crate::handshake::{Handshake, PARENT_ENV, TOKEN_ENV};
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

/// Starts one worker and reads its handshake. The child's stdin stays open: the worker
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
    let handshake = read_handshake(&mut child, config, state).await?;
    let (true, Some(port)) = (handshake.ready, handshake.port) else {
        let _ = child.wait().await;
        let error = handshake.error.unwrap_or_else(|| crate::handshake::HandshakeError {
            code: ErrorCode::LoadFailed,
            message: "the worker could not load the model".into(),
        });
        return Err(BackendError::Failed {
            code: error.code,
            message: error.message,
        });
    };
    let pid = child.id().unwrap_or(handshake.pid);
    let classifier = Arc::new(CrashClassifier {
        state: state.subscribe(),
        pid,
    });
    let model = handshake.model.unwrap_or_default();
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

/// Reads the worker's stdout up to its handshake (within the ready timeout), passing the
/// loading progress it prints on to `state`. A worker that stops or overruns first is an
/// error (an overrunning one is killed).
async fn read_handshake(
    child: &mut Child,
    config: &WorkerConfig,
    state: &watch::Sender<WorkerState>,
) -> Result<Handshake, BackendError> {
    let stdout = child.stdout.take().ok_or_else(|| unavailable("no stdout pipe"))?;
    let mut lines = BufReader::new(stdout).lines();
    let handshake = tokio::time::timeout(config.ready_timeout, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(fraction) = crate::handshake::LoadingLine::parse(&line) {
                state.send_replace(WorkerState::Starting { loaded: Some(fraction) });
                continue;
            }
            if let Ok(handshake) = serde_json::from_str::<Handshake>(line.trim()) {
                return Some(handshake);
            }
        }
        None
    })
    .await;
    let handshake = match handshake {
        Ok(Some(h)) => h,
        Ok(None) => {
            let status = child.wait().await;
            return Err(unavailable(format!(
                "the worker stopped before it was ready ({})",
                describe(status)
            )));
        }
        Err(_) => {
            let _ = child.kill().await;
            return Err(unavailable(format!(
                "the worker was not ready within {:?}",
                config.ready_timeout
            )));
        }
    };
    // Keep draining stdout so a stray print can never block the worker.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(handshake)
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
