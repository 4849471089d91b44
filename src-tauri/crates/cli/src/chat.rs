//! `hearth chat`: an interactive conversation in the terminal, through the backend
//! manager: the backends and fallback order come from the settings (file + `HEARTH_*`),
//! every turn is saved, and `/backend NAME` moves the conversation to another backend
//! mid-chat. The embedded engine runs in a worker process unless `--in-process`.
//!
//! The whole conversation is sent every turn; the engine reuses the KV cache of the
//! part it has already seen, so a follow-up turn only evaluates its new tokens.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use hearth_core::GenerationMetrics;
use hearth_engine_backend::EngineBackend;
use hearth_manager::{BackendKind, BackendManager, ManagerOptions, Settings, StopSignal};
use hearth_store::{AsyncStore, SessionId, StoreOptions};

use crate::line_input::{Input, LineInput};
use crate::options::{GpuLayers, ModelOptions, SamplingOptions};

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelOptions,
    #[command(flatten)]
    sampling: SamplingOptions,
    /// System prompt that opens the conversation.
    #[arg(long)]
    system: Option<String>,
    /// Continue a saved conversation (its id is printed when a chat starts).
    #[arg(long)]
    session: Option<String>,
    /// The backend to start on (default: `active` in the settings): embedded, ollama, vllm.
    #[arg(long, value_parser = parse_backend)]
    backend: Option<BackendKind>,
    /// Run the embedded engine in this process instead of a supervised worker (no crash isolation).
    #[arg(long)]
    in_process: bool,
}

fn parse_backend(s: &str) -> std::result::Result<BackendKind, String> {
    BackendKind::parse(s).ok_or_else(|| format!("unknown backend {s:?}: use embedded, ollama or vllm"))
}

const HELP: &str =
    "Commands: /backend NAME (embedded, ollama, vllm: continue the chat there), /reset (new conversation), \
/stats (last reply's figures), /status, /quit. \
\"\"\" on a line of its own starts and ends a message of several lines (a pasted block is one message). Ctrl-C stops a reply.";

/// The settings, with this command's options on top (they win over file and environment).
fn settings(args: &ChatArgs) -> Result<Settings> {
    let mut settings = Settings::load_default()?;
    let m = &args.model;
    if m.model.is_some() {
        settings.embedded.model = args.model.resolve_path()?.to_string_lossy().into_owned();
    } else if !std::path::Path::new(&settings.embedded.model).is_absolute() {
        settings.embedded.model = crate::models::resolve(Some(&settings.embedded.model))?
            .to_string_lossy()
            .into_owned();
    }
    settings.embedded.ctx = m.ctx;
    settings.embedded.threads = m.threads.or(settings.embedded.threads);
    if let GpuLayers::Exactly(n) = m.gpu_layers {
        settings.embedded.gpu_layers = n.to_string();
    }
    if let Some(kind) = args.backend {
        settings.active = kind;
    }
    settings.validate().map_err(|problems| hearth_manager::SettingsError {
        file: hearth_core::paths::settings_file(),
        problems,
    })?;
    Ok(settings)
}

/// The history database; when it cannot be used, a scratch one so the chat still runs.
async fn open_store() -> Result<(AsyncStore, Option<tempfile::TempDir>)> {
    match AsyncStore::open(hearth_store::default_db_path(), StoreOptions::default()).await {
        Ok(store) => Ok((store, None)),
        Err(e) => {
            tracing::warn!(error = %e, "chat history disabled");
            eprintln!("warning: chat history is off for this run: {e}");
            let dir = tempfile::tempdir()?;
            let store = AsyncStore::open(dir.path().join("scratch.db"), StoreOptions::default()).await?;
            Ok((store, Some(dir)))
        }
    }
}

pub fn run(args: &ChatArgs) -> Result<()> {
    let settings = settings(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The worker is spawned from this thread (inside block_on), which lives as long as
    // the chat: its death signal is tied to the thread that spawned it.
    runtime.block_on(chat(args, settings))
}

async fn chat(args: &ChatArgs, settings: Settings) -> Result<()> {
    let (store, _scratch) = open_store().await?;
    let program = std::env::current_exe().context("locating the hearth executable")?;
    let active = settings.active;
    let manager = BackendManager::new(settings.clone(), ManagerOptions::new(program), store);
    if args.in_process && active == BackendKind::Embedded {
        let engine = args.model.load()?;
        let path = engine.info().path.clone();
        manager
            .install(
                BackendKind::Embedded,
                Arc::new(EngineBackend::from_engine(engine)),
                &path.to_string_lossy(),
            )
            .await?;
    } else {
        if active == BackendKind::Embedded {
            eprintln!("loading {} in a worker process …", settings.embedded.model);
        }
        let loading = manager.initialize_backend(active, None, None, None);
        tokio::pin!(loading);
        // How far the load is, on one line that rewrites itself ("loading the model: 42%").
        let mut shown = String::new();
        let loaded = loop {
            tokio::select! {
                done = &mut loading => break done,
                () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                    let reason = manager.health().await.reason.unwrap_or_default();
                    if reason.starts_with("loading") && reason != shown {
                        eprint!("\r{reason}");
                        shown = reason;
                    }
                }
            }
        };
        if !shown.is_empty() {
            eprintln!();
        }
        loaded?;
    }
    let status = manager.health().await;
    if let Some(line) = placement_line(&status) {
        eprintln!("{line}");
    }
    let loaded = status.backends.iter().find(|b| b.backend == active);
    let mode = match (active, args.in_process) {
        (BackendKind::Embedded, true) => "in-process",
        (BackendKind::Embedded, false) => "worker",
        (kind, _) => kind.as_str(),
    };
    eprintln!(
        "{} ready ({mode}, context {} tokens). {HELP}",
        loaded.and_then(|b| b.loaded_model.clone()).unwrap_or_default(),
        settings.embedded.ctx
    );
    if let Some(id) = &args.session {
        let n = manager
            .conversation()
            .resume(SessionId::from(id.as_str()))
            .await
            .with_context(|| format!("cannot resume session {id}: `hearth db stats` shows what is stored"))?;
        if n == 0 {
            anyhow::bail!("no saved session {id}: start a new chat without --session");
        }
        eprintln!("(resumed session {id}: {n} messages)");
    }
    if let Some(system) = &args.system {
        if args.session.is_none() {
            manager.conversation().open_with_system_prompt(system, None).await;
        }
    }

    // Ctrl-C stops the reply in progress; at the prompt it only reminds how to quit.
    let stop = StopSignal::default();
    let replying = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let replying = Arc::clone(&replying);
        ctrlc::set_handler(move || {
            if replying.load(Ordering::Acquire) {
                stop.stop();
            } else {
                eprint!("\n(type /quit or press Ctrl-D to leave)\n> ");
            }
        })?;
    }

    let mut reader = LineInput::open(Some(hearth_core::paths::data_dir().join("chat_history.txt")))?;
    let mut last: Option<GenerationMetrics> = None;
    let mut history_warned = false;
    let mut stdout = std::io::stdout();
    loop {
        let line = match reader.message("> ").await? {
            Input::Message(line) => line,
            Input::Interrupted => {
                eprintln!("(type /quit or press Ctrl-D to leave)");
                continue;
            }
            Input::End => {
                eprintln!();
                break;
            }
        };
        let input = line.as_str();
        match input.trim() {
            "" => continue,
            "/quit" | "/exit" => break,
            "/help" => {
                eprintln!("{HELP}");
                continue;
            }
            "/reset" => {
                manager.conversation().start_new();
                if let Some(system) = &args.system {
                    manager.conversation().open_with_system_prompt(system, None).await;
                }
                eprintln!("(new conversation)");
                continue;
            }
            "/stats" => {
                match &last {
                    Some(m) => eprintln!("{}", serde_json::to_string_pretty(m)?),
                    None => eprintln!("(no reply yet)"),
                }
                continue;
            }
            "/status" => {
                let health = manager.health().await;
                if let Some(line) = placement_line(&health) {
                    eprintln!("{line}");
                }
                eprintln!("{}", serde_json::to_string_pretty(&health)?);
                eprintln!("counters: {}", serde_json::to_string(&manager.counters())?);
                continue;
            }
            cmd if cmd.starts_with("/backend") => {
                switch(&manager, cmd.trim_start_matches("/backend").trim()).await;
                continue;
            }
            cmd if cmd.starts_with('/') => {
                eprintln!("unknown command {cmd}. {HELP}");
                continue;
            }
            _ => {}
        }
        if manager.conversation().session().is_none() {
            if let Some(id) = manager.conversation().session_for(input).await {
                eprintln!("(saving as session {id}; resume with --session {id})");
            }
        }
        replying.store(true, Ordering::Release);
        let result = manager
            .send(input, args.sampling.params(), &stop, |delta| {
                let _ = stdout.write_all(delta.as_bytes());
                let _ = stdout.flush();
            })
            .await;
        replying.store(false, Ordering::Release);
        println!();
        match result {
            Ok(turn) => {
                if !turn.saved && !history_warned {
                    history_warned = true;
                    let why = manager.health().await.history.unwrap_or_default();
                    eprintln!("warning: chat history is off for the rest of this run ({why}); the chat goes on");
                }
                let m = &turn.metrics;
                let mut notes = Vec::new();
                if m.prompt_tokens_evaluated < m.prompt_tokens {
                    notes.push(format!(
                        "reused {} of {} prompt tokens",
                        m.prompt_tokens - m.prompt_tokens_evaluated,
                        m.prompt_tokens
                    ));
                }
                if m.draft_accepted > 0 {
                    notes.push(format!(
                        "{} of {} guessed tokens held",
                        m.draft_accepted, m.draft_tokens
                    ));
                }
                if turn.retries > 0 {
                    notes.push(format!("{} retries", turn.retries));
                }
                if turn.fallbacks > 0 {
                    notes.push(format!(
                        "answered by {} after {} fallback(s)",
                        turn.backend, turn.fallbacks
                    ));
                }
                eprintln!(
                    "[{} | {} tokens | ttft {:.0} ms | {:.1} tok/s | {}{}]",
                    turn.model,
                    m.completion_tokens,
                    m.ttft_ms,
                    m.decode_tps,
                    m.finish_reason.as_str(),
                    notes.iter().map(|n| format!(" | {n}")).collect::<String>()
                );
                last = Some(turn.metrics);
            }
            Err(e) => eprintln!("error: {e}"),
        }
    }
    Ok(())
}

async fn switch(manager: &BackendManager, name: &str) {
    let Some(kind) = BackendKind::parse(name) else {
        eprintln!("usage: /backend embedded|ollama|vllm (now: {})", manager.active());
        return;
    };
    eprintln!("(switching to {kind} …)");
    match manager.switch_backend(kind, true).await {
        Ok(report) => eprintln!(
            "(now on {} with {} in {:.0} ms; the conversation continues: {} messages)",
            report.to, report.model, report.switch_ms, report.messages_carried
        ),
        Err(e) => eprintln!("error: cannot switch to {kind}: {e}"),
    }
}

/// Where the active backend's model runs, in words ("SmolLM2-135M-Instruct-Q4_1 on
/// Vulkan0: 31/31 layers"), and why it is not where asked, when that is so.
fn placement_line(health: &hearth_manager::ManagerHealth) -> Option<String> {
    let status = health.backends.iter().find(|b| b.backend == health.active)?;
    let placement = status.placement.as_ref()?;
    let model = status.loaded_model.as_deref().unwrap_or("the model");
    let mut line = format!("{model} {}", placement.summary());
    if let Some(note) = &placement.note {
        line.push_str(&format!(" (note: {note})"));
    }
    Some(line)
}
