//! `hearth serve`: the OpenAI-compatible API for one model, headless (servers,
//! containers, other apps). The model runs in a supervised worker process, so a
//! llama.cpp abort costs a restart, not the server; `--in-process` runs it here instead.
//!
//! The port is bound first and the model loads behind it: `/health` answers at once,
//! `/health/ready` says 503 until the model has loaded and generated one token.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_api::{ApiConfig, Metrics};
use hearth_backends::{Supervisor, WorkerConfig};
use hearth_core::Backend;
use hearth_engine_backend::EngineBackend;

use crate::options::{ModelOptions, Parallel, AUTO_PARALLEL_MOST};

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelOptions,
    /// Address to listen on. Anything but loopback requires --token.
    #[arg(long, default_value = "127.0.0.1", env = "HEARTH_HOST")]
    host: IpAddr,
    /// Port to listen on (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = 8080, env = "HEARTH_PORT")]
    port: u16,
    /// Bearer token clients must send (`Authorization: Bearer …`).
    #[arg(long, env = "HEARTH_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Host name clients may use besides localhost (repeatable; `*` accepts any, with --token only).
    #[arg(long = "allow-host")]
    allow_host: Vec<String>,
    /// Requests that may wait while one generates; more get 429.
    #[arg(long, default_value_t = 8)]
    queue: usize,
    /// Run the engine in this process instead of a supervised worker (no crash isolation).
    #[arg(long)]
    in_process: bool,
}

pub fn run(args: &ServeArgs) -> Result<()> {
    if args.model.ctx > hearth_api::MAX_TOKENS_CAP {
        bail!(
            "--ctx {} is above the server's limit of {} tokens",
            args.model.ctx,
            hearth_api::MAX_TOKENS_CAP
        );
    }
    let path = args.model.resolve_path()?;
    // `auto` is settled here, once, and the worker is told the number: the server's own
    // limit on generations at once must be the engine's number of sequences.
    let mut model = args.model.clone();
    let parallel = model.parallel.unwrap_or(Parallel::Auto);
    model.parallel = Some(parallel);
    let sequences = model.planned_config()?.0.n_parallel;
    model.parallel = Some(Parallel::Exactly(sequences));
    if parallel == Parallel::Auto {
        eprintln!("hearth serve: {sequences} sequences at once (--parallel auto: as many as fit, at most {AUTO_PARALLEL_MOST})");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(args, &model, path))
}

async fn serve(args: &ServeArgs, model: &ModelOptions, path: std::path::PathBuf) -> Result<()> {
    let addr = SocketAddr::new(args.host, args.port);
    let mut config = ApiConfig::new(args.port).with_token(args.token.clone());
    config.allow_any_host = args.allow_host.iter().any(|h| h == "*");
    config.allowed_hosts = args.allow_host.iter().filter(|h| *h != "*").cloned().collect();
    config.max_queued = args.queue;
    config.max_concurrent = model.parallel.map_or(1, |p| match p {
        Parallel::Exactly(n) => n as usize,
        Parallel::Auto => 1,
    });
    config.validate(&addr)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let local = listener.local_addr()?;
    config.port = local.port();

    let backend: Arc<dyn Backend> = if args.in_process {
        Arc::new(EngineBackend::new(model.config()?))
    } else {
        let mut worker = WorkerConfig::new(std::env::current_exe().context("locating the hearth executable")?);
        worker.args = model.worker_args();
        Arc::new(Supervisor::new(worker))
    };
    let metrics = Arc::new(Metrics::new());
    let router = hearth_api::router(Arc::clone(&backend), config, metrics);
    // One machine-readable line (tests and scripts read the port from it), then a human one.
    println!(
        "{}",
        serde_json::json!({"listening": format!("http://{local}"), "pid": std::process::id()})
    );
    eprintln!("hearth serve: http://{local}/v1 (loading {} …)", path.display());

    let loader = {
        let backend = Arc::clone(&backend);
        let path = path.clone();
        tokio::spawn(async move { backend.load(&path.to_string_lossy()).await })
    };
    let server = tokio::spawn(hearth_api::serve(listener, router, shutdown_signal()));
    match loader.await? {
        Ok(()) => eprintln!("hearth serve: model ready"),
        Err(e) => {
            server.abort();
            backend.unload().await.ok();
            bail!("could not load {}: {e}", path.display());
        }
    }
    let served = server.await;
    // Stop the worker (and reap it) before exiting: no orphan, all memory returned.
    backend.unload().await.ok();
    served??;
    Ok(())
}

/// Ctrl-C or SIGTERM (a container stopping); the server then gives open streams at
/// most 5 s to end (`ConnectionLimits::drain`).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    eprintln!("hearth serve: stopping");
}
