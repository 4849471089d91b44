//! The worker supervisor: starts `hearth worker` as a child process, waits for its
//! handshake, serves generations through it over HTTP, restarts it with backoff when
//! it dies, reports a death during a generation as `BackendError::Crashed`, and kills
//! it on unload or drop, so no process is left behind and all its memory returns.
//!
//! The worker also guards itself: it asks the kernel for SIGKILL when its parent dies
//! (PR_SET_PDEATHSIG) and exits when its stdin (a pipe from here) closes.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_core::backend::BoxFuture;
use hearth_core::{Backend, BackendError, Changes, EventStream, GenerateRequest, Health, ModelDescriptor};
use tokio::sync::{oneshot, watch};

use crate::gpu_oom::{restart_note, with_gpu_layers, StderrTail};
use crate::openai::OpenAiBackend;

mod launch;

use launch::launch;

const BACKEND: &str = "the model worker";

/// How to start the worker and how patiently to restart it.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The `hearth` executable (normally `std::env::current_exe()`).
    pub program: PathBuf,
    /// Arguments after `worker --model PATH` (context size, threads …).
    pub args: Vec<OsString>,
    /// How long a start may take: process start, model load and the one-token probe.
    pub ready_timeout: Duration,
    /// Waits before successive restarts after crashes; the last one repeats.
    pub restart_delays: Vec<Duration>,
    /// Crashes in a row (each within `stable_after` of its start) before giving up.
    pub max_restarts: u32,
    /// A worker that ran this long resets the crash count.
    pub stable_after: Duration,
}

impl WorkerConfig {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            ready_timeout: Duration::from_secs(120),
            restart_delays: [250, 500, 1000, 2000, 4000].map(Duration::from_millis).to_vec(),
            max_restarts: 5,
            stable_after: Duration::from_secs(60),
        }
    }
}

/// A worker that answered its handshake.
#[derive(Clone)]
pub struct Running {
    pub pid: u32,
    pub port: u16,
    pub model: String,
    client: Arc<OpenAiBackend>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("pid", &self.pid)
            .field("port", &self.port)
            .field("model", &self.model)
            .finish()
    }
}

/// Where the worker is in its life; watched by requests, health checks and tests.
#[derive(Debug, Clone)]
pub enum WorkerState {
    /// No model loaded (never loaded, or unloaded).
    Stopped,
    /// A worker is starting; `loaded`: how much of the model llama.cpp has read.
    Starting {
        loaded: Option<f32>,
    },
    Ready(Running),
    /// Died; a restart follows after the backoff delay.
    Crashed {
        cause: String,
    },
    /// Could not start (bad model, or too many crashes): needs a new `load`.
    Failed(BackendError),
}

/// Supervises one worker process at a time. Implements [`Backend`]; `load` starts a
/// worker for a model path, `unload` stops it. Dropping the supervisor kills the worker.
pub struct Supervisor {
    config: WorkerConfig,
    state: Arc<watch::Sender<WorkerState>>,
    /// Dropping (or sending on) it tells the current monitor task to kill its worker.
    stop: Mutex<Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>>,
    last_model: Mutex<Option<String>>,
    /// Why the model runs with fewer GPU layers than it was loaded with (a restart after
    /// the GPU ran out of memory), for the user; cleared by a new load.
    placement_note: Arc<Mutex<Option<String>>>,
}

impl Supervisor {
    pub fn new(config: WorkerConfig) -> Self {
        Self {
            config,
            state: Arc::new(watch::Sender::new(WorkerState::Stopped)),
            stop: Mutex::new(None),
            last_model: Mutex::new(None),
            placement_note: Arc::default(),
        }
    }

    /// A supervisor with `model` loaded (returns once the worker is ready).
    pub async fn spawn(config: WorkerConfig, model: impl Into<PathBuf>) -> Result<Arc<Self>, BackendError> {
        let supervisor = Arc::new(Self::new(config));
        supervisor.start(model.into()).await?;
        Ok(supervisor)
    }

    pub fn state(&self) -> WorkerState {
        self.state.borrow().clone()
    }

    /// Follows state changes (for tests and status displays).
    pub fn subscribe(&self) -> watch::Receiver<WorkerState> {
        self.state.subscribe()
    }

    /// The worker's pid while it is ready.
    pub fn pid(&self) -> Option<u32> {
        match &*self.state.borrow() {
            WorkerState::Ready(r) => Some(r.pid),
            _ => None,
        }
    }

    async fn start(&self, model: PathBuf) -> Result<(), BackendError> {
        self.stop_worker().await;
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        self.state.send_replace(WorkerState::Starting { loaded: None });
        if let Ok(mut note) = self.placement_note.lock() {
            *note = None;
        }
        let task = tokio::spawn(monitor(
            self.config.clone(),
            model,
            Worker {
                state: Arc::clone(&self.state),
                placement_note: Arc::clone(&self.placement_note),
            },
            ready_tx,
            stop_rx,
        ));
        if let Ok(mut stop) = self.stop.lock() {
            *stop = Some((stop_tx, task));
        }
        let running = ready_rx
            .await
            .unwrap_or_else(|_| Err(unavailable("the supervisor task ended")))?;
        if let Ok(mut last) = self.last_model.lock() {
            *last = Some(running.model);
        }
        Ok(())
    }

    /// Kills the worker (if any) and waits until it is reaped.
    async fn stop_worker(&self) {
        let current = self.stop.lock().ok().and_then(|mut s| s.take());
        if let Some((stop, task)) = current {
            let _ = stop.send(());
            let _ = task.await;
        }
        self.state.send_replace(WorkerState::Stopped);
    }

    /// The running worker, waiting through a start or restart (up to the ready timeout).
    async fn running(&self) -> Result<Running, BackendError> {
        let mut rx = self.state.subscribe();
        let settled = tokio::time::timeout(
            self.config.ready_timeout,
            rx.wait_for(|s| !matches!(s, WorkerState::Starting { .. } | WorkerState::Crashed { .. })),
        )
        .await;
        let state = match settled {
            Ok(Ok(state)) => state.clone(),
            _ => return Err(unavailable("the worker did not become ready in time")),
        };
        match state {
            WorkerState::Ready(running) => Ok(running),
            WorkerState::Stopped => Err(BackendError::NotLoaded),
            WorkerState::Failed(e) => Err(e),
            WorkerState::Starting { .. } | WorkerState::Crashed { .. } => Err(unavailable("the worker is restarting")),
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Dropping the stop sender wakes the monitor, which kills and reaps the worker.
        // If the runtime is already gone, the child's kill_on_drop and the worker's own
        // guards (stdin EOF, parent-death signal) still end it.
        if let Ok(mut stop) = self.stop.lock() {
            stop.take();
        }
    }
}

fn unavailable(cause: impl Into<String>) -> BackendError {
    BackendError::Unavailable {
        backend: BACKEND.into(),
        cause: cause.into(),
    }
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                if let Some(signal) = status.signal() {
                    return format!("killed by signal {signal}");
                }
            }
            format!("exited with {status}")
        }
        Err(e) => format!("could not be waited for: {e}"),
    }
}

/// What the monitor reports to the supervisor.
struct Worker {
    state: Arc<watch::Sender<WorkerState>>,
    placement_note: Arc<Mutex<Option<String>>>,
}

/// Where a ready worker's model runs: its device and the layers on it.
async fn placement(running: &Running) -> Option<(String, u32)> {
    let model = running.client.models().await.ok()?.into_iter().next()?;
    Some((model.device?, model.gpu_layers?))
}

/// Why a ready worker died, for the log and the `Crashed` state. When it ran out of GPU
/// memory, `config` is changed so the restart puts fewer layers on the GPU, and the
/// user's placement note says so.
async fn death_cause(
    status: std::io::Result<ExitStatus>,
    tail: &StderrTail,
    placed: Option<(String, u32)>,
    config: &mut WorkerConfig,
    placement_note: &Mutex<Option<String>>,
) -> String {
    let died = describe(status);
    tail.drained(Duration::from_secs(1)).await;
    match placed {
        Some((device, layers)) if layers > 0 && device != "CPU" && tail.ran_out_of_gpu_memory() => {
            // The same layers would run out again: fewer, down to none (the one rule the
            // engine's load follows too).
            let next = hearth_core::fewer_gpu_layers(layers, None);
            config.args = with_gpu_layers(&config.args, next);
            let note = restart_note(&device, layers, next);
            tracing::warn!(status = %died, "{note}");
            if let Ok(mut shown) = placement_note.lock() {
                *shown = Some(note.clone());
            }
            note
        }
        _ => died,
    }
}

/// The wait before restarting after the `crashes`-th crash in a row (counted from 1):
/// `restart_delays` in turn, the last one repeating.
fn restart_delay(config: &WorkerConfig, crashes: u32) -> Duration {
    let delays = &config.restart_delays;
    delays
        .get((crashes as usize).saturating_sub(1))
        .or(delays.last())
        .copied()
        .unwrap_or_default()
}

/// One model's worker for its whole life: start, watch, restart (with fewer GPU
/// layers after the GPU ran out of memory), stop.
async fn monitor(
    mut config: WorkerConfig,
    model: PathBuf,
    worker: Worker,
    ready: oneshot::Sender<Result<Running, BackendError>>,
    mut stop: oneshot::Receiver<()>,
) {
    let state = worker.state;
    let mut ready = Some(ready);
    let mut crashes: u32 = 0;
    loop {
        state.send_replace(WorkerState::Starting { loaded: None });
        let launched = tokio::select! {
            launched = launch(&config, &model, &state) => launched,
            _ = &mut stop => {
                state.send_replace(WorkerState::Stopped);
                return;
            }
        };
        let cause = match launched {
            Ok((mut child, running, tail)) => {
                // tokio's `wait` closes the child's stdin first, which tells the worker to
                // exit: keep the pipe here, open for as long as the worker should live.
                let _stdin = child.stdin.take();
                let started = Instant::now();
                let placed = placement(&running).await;
                state.send_replace(WorkerState::Ready(running.clone()));
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Ok(running));
                }
                tokio::select! {
                    status = child.wait() => {
                        if started.elapsed() >= config.stable_after {
                            crashes = 0;
                        }
                        death_cause(status, &tail, placed, &mut config, &worker.placement_note).await
                    }
                    _ = &mut stop => {
                        let _ = child.kill().await;
                        state.send_replace(WorkerState::Stopped);
                        return;
                    }
                }
            }
            // The first start failing means the model cannot load: no point retrying.
            Err(e) if ready.is_some() => {
                state.send_replace(WorkerState::Failed(e.clone()));
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(e));
                }
                return;
            }
            Err(e) => e.to_string(),
        };
        crashes += 1;
        tracing::warn!(cause = %cause, crashes, "the model worker stopped unexpectedly");
        if crashes > config.max_restarts {
            let error = BackendError::Crashed {
                backend: BACKEND.into(),
                cause: format!("{cause}; gave up after {crashes} crashes"),
            };
            state.send_replace(WorkerState::Failed(error));
            return;
        }
        state.send_replace(WorkerState::Crashed { cause });
        tokio::select! {
            _ = tokio::time::sleep(restart_delay(&config, crashes)) => {}
            _ = &mut stop => {
                state.send_replace(WorkerState::Stopped);
                return;
            }
        }
    }
}

impl Backend for Supervisor {
    fn name(&self) -> &str {
        "worker"
    }

    fn load<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.start(PathBuf::from(model)))
    }

    fn unload(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            self.stop_worker().await;
            if let Ok(mut last) = self.last_model.lock() {
                *last = None;
            }
            Ok(())
        })
    }

    fn models(&self) -> BoxFuture<'_, Result<Vec<ModelDescriptor>, BackendError>> {
        Box::pin(async move {
            let running = match self.state() {
                WorkerState::Ready(running) => running,
                // While restarting, the model is still the one being served.
                _ => {
                    let last = self.last_model.lock().ok().and_then(|m| m.clone());
                    return Ok(last
                        .map(|id| ModelDescriptor {
                            id,
                            owned_by: "hearth".into(),
                            context_length: None,
                            has_chat_template: None,
                            device: None,
                            gpu_layers: None,
                            layers_total: None,
                            placement_note: None,
                        })
                        .into_iter()
                        .collect());
                }
            };
            let mut models = running.client.models().await?;
            let note = self.placement_note.lock().ok().and_then(|n| n.clone());
            for model in &mut models {
                model.placement_note = model.placement_note.take().or_else(|| note.clone());
            }
            Ok(models)
        })
    }

    fn health(&self) -> BoxFuture<'_, Health> {
        Box::pin(async move {
            // The monitor sees the worker's exit at once and every line of its start, so
            // its state is the answer: no round trip to the worker.
            match self.state() {
                WorkerState::Ready(running) => Health::ready(running.model),
                WorkerState::Stopped => Health::not_ready("no model is loaded"),
                WorkerState::Starting { loaded: None } => Health::not_ready("the model worker is starting"),
                WorkerState::Starting { loaded: Some(f) } => {
                    Health::not_ready(format!("loading the model: {:.0}%", f * 100.0))
                }
                WorkerState::Crashed { cause } => {
                    Health::not_ready(format!("the model worker crashed ({cause}); restarting"))
                }
                WorkerState::Failed(e) => Health::not_ready(e.to_string()),
            }
        })
    }

    fn generate(&self, request: GenerateRequest) -> BoxFuture<'_, Result<EventStream, BackendError>> {
        Box::pin(async move {
            let running = self.running().await?;
            running.client.generate(request).await
        })
    }

    /// A tick per state change (loading progress, ready, crashed, restarting, failed,
    /// stopped); the stream ends with the supervisor.
    fn changes(&self) -> Option<Changes> {
        let states = self.state.subscribe();
        Some(Box::pin(futures_util::stream::unfold(
            states,
            |mut states| async move {
                states.changed().await.ok()?;
                Some(((), states))
            },
        )))
    }
}
