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
    /// Address to listen on. Anything but loopback requires a token (--token-file, HEARTH_API_TOKEN or --token).
    #[arg(long, default_value = "127.0.0.1", env = "HEARTH_HOST")]
    host: IpAddr,
    /// Port to listen on (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = 8080, env = "HEARTH_PORT")]
    port: u16,
    /// Bearer token clients must send (`Authorization: Bearer …`). Every local user can read it in `ps`
    /// while the server runs: prefer --token-file or the HEARTH_API_TOKEN environment variable.
    #[arg(long, env = "HEARTH_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the bearer token from the first line of this file (kept out of `ps`; make it readable by you alone).
    #[arg(long, value_name = "PATH")]
    token_file: Option<std::path::PathBuf>,
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
    let mut config = ApiConfig::new(args.port).with_token(api_token(args)?);
    config.allow_any_host = args.allow_host.iter().any(|h| h == "*");
    config.allowed_hosts = args.allow_host.iter().filter(|h| *h != "*").cloned().collect();
    config.max_queued = args.queue;
    config.max_concurrent = config_slots(model);
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
    let limits = connection_limits(config_slots(model), args.queue);
    let server = tokio::spawn(hearth_api::serve_with(listener, router, limits, shutdown_signal()));
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

/// The generation slots the server was configured with.
fn config_slots(model: &ModelOptions) -> usize {
    model.parallel.map_or(1, |p| match p {
        Parallel::Exactly(n) => n as usize,
        Parallel::Auto => 1,
    })
}

/// The default limits, with room for a connection per slot and per queued request
/// beside the clients that wait on `/health` or `/metrics`: a large `--queue` must not
/// meet the connection cap first.
fn connection_limits(slots: usize, queue: usize) -> hearth_api::ConnectionLimits {
    let limits = hearth_api::ConnectionLimits::default();
    hearth_api::ConnectionLimits {
        max_connections: limits.max_connections.max(slots + queue + 32),
        ..limits
    }
}

/// The token from --token-file, else --token or HEARTH_API_TOKEN. A file others can read
/// is used with a warning, not refused: container secrets are often mounted world-readable.
fn api_token(args: &ServeArgs) -> Result<Option<String>> {
    use std::io::{BufRead, Read};
    let Some(file) = &args.token_file else {
        return Ok(args.token.clone());
    };
    if args.token.is_some() {
        bail!("--token-file and --token (or HEARTH_API_TOKEN) both give a token: use one");
    }
    let mut line = String::new();
    // At most 64 KiB: a token is one short line, and /dev/zero must not fill the memory.
    std::fs::File::open(file)
        .and_then(|f| std::io::BufReader::new(f.take(64 * 1024)).read_line(&mut line))
        .with_context(|| {
            format!(
                "cannot read the token file {}: give a readable text file with the token on its first line",
                file.display()
            )
        })?;
    let token = line.trim();
    if token.is_empty() {
        bail!(
            "the token file {} has no token on its first line: write the token there",
            file.display()
        );
    }
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(file) {
        if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o044 != 0 {
            eprintln!(
                "hearth serve: warning: other users can read the token file {0}: `chmod 600 {0}` keeps it yours",
                file.display()
            );
        }
    }
    Ok(Some(token.to_owned()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_makes_room_for_every_slot_and_queued_request() {
        let default = hearth_api::ConnectionLimits::default();
        assert_eq!(connection_limits(4, 8), default);
        let large = connection_limits(4, 500);
        assert_eq!(large.max_connections, 4 + 500 + 32);
        assert_eq!(large.body_read, default.body_read);
    }
}
