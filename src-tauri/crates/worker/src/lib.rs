//! The engine worker: the engine in its own process, serving the OpenAI-compatible API
//! on a random loopback port for the supervisor that started it. Both executables run
//! it: `hearth worker` (hidden; `hearth serve`, `hearth chat`) and `hearth-app worker`
//! (the desktop app is its own worker). llama.cpp may abort the process on a failed
//! assertion or out-of-memory; only this process dies then, not the caller.
//!
//! Contract (see `hearth_child::worker`): the token comes in `HEARTH_WORKER_TOKEN`
//! (never argv); on stdout, the child protocol's `progress` lines while the model loads,
//! then `done` with [`Ready`] (port, pid, model) or `error` with why not; the worker
//! dies with its parent (kernel death signal) and when its stdin closes.

use std::io::Read;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_child::worker::{loading, Ready, PARENT_ENV, TOKEN_ENV};
use hearth_child::ChildLine;
use hearth_core::ErrorCode;
use hearth_engine_backend::{model_id, EngineBackend};

pub mod jobs;
pub mod models;
pub mod options;
pub mod placement;

use crate::options::ModelOptions;

/// The worker's command line (after `worker`), as the supervisor passes it.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    model: ModelOptions,
    /// Requests that may wait while one generates.
    #[arg(long, default_value_t = 16)]
    queue: usize,
    /// The database the load's performance record goes to: the one of the process that
    /// started the worker (default: `hearth_store::default_db_path`).
    #[arg(long)]
    db: Option<std::path::PathBuf>,
}

/// Runs the worker until its supervisor goes away (stdin closed, parent died).
pub fn run(args: &WorkerArgs) -> Result<()> {
    die_with_parent()?;
    let token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty());
    let Some(token) = token else {
        bail!(
            "{TOKEN_ENV} is not set: `hearth worker` is started by Hearth itself (use `hearth serve` to serve a model)"
        );
    };
    exit_on_stdin_eof();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(args, token))
}

/// Asks the kernel to SIGKILL this process when its parent dies, even by SIGKILL, then
/// checks the parent did not die before the request was made.
fn die_with_parent() -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).context("prctl(PR_SET_PDEATHSIG)")?;
        if let Some(parent) = std::env::var(PARENT_ENV).ok().and_then(|p| p.parse::<i32>().ok()) {
            if nix::unistd::getppid().as_raw() != parent {
                bail!("the process that started this worker has already exited");
            }
        }
    }
    Ok(())
}

/// The second guard (and the only one off Linux): the supervisor holds our stdin open;
/// when it closes, however the supervisor ended, this process ends too.
fn exit_on_stdin_eof() {
    let _ = std::thread::Builder::new().name("stdin-guard".into()).spawn(|| {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 256];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    tracing::info!("stdin closed: the supervisor is gone, exiting");
                    std::process::exit(0);
                }
                Ok(_) => {}
            }
        }
    });
}

/// Progress lines on stdout before the answer, one per whole percent loaded.
fn loading_lines() -> hearth_engine::LoadProgress {
    let last = std::sync::atomic::AtomicU32::new(u32::MAX);
    hearth_engine::LoadProgress::new(move |fraction| {
        let percent = loading(fraction);
        if last.swap(percent.done, std::sync::atomic::Ordering::Relaxed) != percent.done {
            hearth_child::progress(percent.done, percent.total);
        }
    })
}

/// The worker's answer on stdout: ready, or why not.
fn answer(line: &ChildLine<Ready>) -> Result<()> {
    hearth_child::say(line).context("writing the worker's answer to stdout")
}

async fn serve(args: &WorkerArgs, token: String) -> Result<()> {
    let (mut config, _plan) = match args.model.planned_config() {
        Ok(planned) => planned,
        Err(e) => {
            // A device that is not there is a setting to change, not a missing model.
            let code = match e.downcast_ref::<hearth_engine::EngineError>() {
                Some(engine) => engine.code(),
                None => ErrorCode::ModelNotFound,
            };
            answer(&ChildLine::error(code, format!("{e:#}")))?;
            return Err(e);
        }
    };
    let path = config.model_path.clone();
    config.load_progress = Some(loading_lines());
    let baseline = crate::options::LoadBaseline::now(&config);
    let backend = Arc::new(EngineBackend::new(config));
    if let Err(e) = backend.load_path(path.clone()).await {
        answer(&ChildLine::error(e.code(), e.to_string()))?;
        bail!("{e}");
    }
    if let Some(info) = backend.info() {
        let db = args.db.clone().unwrap_or_else(hearth_store::default_db_path);
        crate::options::record_load(&info, &baseline, &db);
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding a loopback port")?;
    let port = listener.local_addr()?.port();
    // As many generations at once as the engine has sequences.
    let slots = backend.info().map_or(1, |info| info.n_parallel as usize);
    let api = hearth_api::ApiConfig {
        max_concurrent: slots,
        max_queued: args.queue,
        ..hearth_api::ApiConfig::new(port).with_token(Some(token))
    };
    let router = hearth_api::router(backend, api, Arc::new(hearth_api::Metrics::new()));
    answer(&ChildLine::Done {
        result: Ready::here(port, model_id(&path)),
    })?;
    tracing::info!(port, model = %path.display(), "worker serving");
    hearth_api::serve(listener, router, std::future::pending()).await?;
    Ok(())
}
