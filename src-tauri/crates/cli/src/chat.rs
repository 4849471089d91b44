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
use hearth_manager::{BackendKind, BackendManager, ManagerOptions, Settings, StopSignal, TurnReport};
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
    let manager = BackendManager::new(settings.clone(), ManagerOptions::new(program), store);
    start_backend(args, &settings, &manager).await?;
    announce_ready(args, &settings, &manager).await;
    open_conversation(args, &manager).await?;

    // Ctrl-C stops the reply in progress; at the prompt it only reminds how to quit.
    let stop = StopSignal::default();
    let replying = Arc::new(AtomicBool::new(false));
    on_ctrl_c(stop.clone(), Arc::clone(&replying))?;

    let reader = LineInput::open(Some(hearth_core::paths::data_dir().join("chat_history.txt")))?;
    ChatLoop {
        args,
        manager: &manager,
        stop,
        replying,
        last: None,
        history_warned: false,
        stdout: std::io::stdout(),
    }
    .run(reader)
    .await
}

/// Loads the active backend: the embedded engine in this process with `--in-process`,
/// otherwise through the manager (a worker process, or a server it reaches).
async fn start_backend(args: &ChatArgs, settings: &Settings, manager: &BackendManager) -> Result<()> {
    let active = settings.active;
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
        initialize_showing_progress(manager, active).await?;
    }
    Ok(())
}

/// Initializes `kind`, showing how far the load is on one line that rewrites itself
/// ("loading the model: 42%").
async fn initialize_showing_progress(manager: &BackendManager, kind: BackendKind) -> Result<()> {
    let loading = manager.initialize_backend(kind, None, None, None);
    tokio::pin!(loading);
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
    Ok(())
}

/// Says where the model runs, which model is ready and how, and the commands.
async fn announce_ready(args: &ChatArgs, settings: &Settings, manager: &BackendManager) {
    let active = settings.active;
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
}

/// Resumes the `--session` conversation, or opens a new one with the `--system` prompt.
async fn open_conversation(args: &ChatArgs, manager: &BackendManager) -> Result<()> {
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
    Ok(())
}

/// Ctrl-C sets `stop` while a reply is being written (`replying`); at the prompt it
/// only reminds how to leave.
fn on_ctrl_c(stop: StopSignal, replying: Arc<AtomicBool>) -> Result<()> {
    ctrlc::set_handler(move || {
        if replying.load(Ordering::Acquire) {
            stop.stop();
        } else {
            eprint!("\n(type /quit or press Ctrl-D to leave)\n> ");
        }
    })?;
    Ok(())
}

/// What to do after a line has been read.
enum Next {
    /// Read the next line (the line was empty or a command, now handled).
    Prompt,
    /// Send the line as the user's message.
    Send,
    /// Leave the chat.
    Quit,
}

/// The prompt loop and what it keeps between turns.
struct ChatLoop<'a> {
    args: &'a ChatArgs,
    manager: &'a BackendManager,
    /// Stops the reply in progress (set by Ctrl-C).
    stop: StopSignal,
    /// Whether a reply is being written, so Ctrl-C knows what to do.
    replying: Arc<AtomicBool>,
    /// The last reply's figures, for `/stats`.
    last: Option<GenerationMetrics>,
    /// History failures are reported once per run, not on every turn.
    history_warned: bool,
    stdout: std::io::Stdout,
}

impl ChatLoop<'_> {
    async fn run(mut self, mut reader: LineInput) -> Result<()> {
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
            match self.command(&line).await? {
                Next::Prompt => continue,
                Next::Quit => break,
                Next::Send => self.send(&line).await,
            }
        }
        Ok(())
    }

    /// Handles `input` when it is empty or a command; otherwise it is a message to send.
    async fn command(&self, input: &str) -> Result<Next> {
        let manager = self.manager;
        match input.trim() {
            "" => {}
            "/quit" | "/exit" => return Ok(Next::Quit),
            "/help" => eprintln!("{HELP}"),
            "/reset" => {
                manager.conversation().start_new();
                if let Some(system) = &self.args.system {
                    manager.conversation().open_with_system_prompt(system, None).await;
                }
                eprintln!("(new conversation)");
            }
            "/stats" => match &self.last {
                Some(m) => eprintln!("{}", serde_json::to_string_pretty(m)?),
                None => eprintln!("(no reply yet)"),
            },
            "/status" => {
                let health = manager.health().await;
                if let Some(line) = placement_line(&health) {
                    eprintln!("{line}");
                }
                eprintln!("{}", serde_json::to_string_pretty(&health)?);
                eprintln!("counters: {}", serde_json::to_string(&manager.counters())?);
            }
            cmd if cmd.starts_with("/backend") => {
                switch(manager, cmd.trim_start_matches("/backend").trim()).await;
            }
            cmd if cmd.starts_with('/') => eprintln!("unknown command {cmd}. {HELP}"),
            _ => return Ok(Next::Send),
        }
        Ok(Next::Prompt)
    }

    /// Sends `input`, streams the reply to stdout, then a line of figures to stderr.
    async fn send(&mut self, input: &str) {
        let manager = self.manager;
        if manager.conversation().session().is_none() {
            if let Some(id) = manager.conversation().session_for(input).await {
                eprintln!("(saving as session {id}; resume with --session {id})");
            }
        }
        self.replying.store(true, Ordering::Release);
        let stdout = &mut self.stdout;
        let result = manager
            .send(input, self.args.sampling.params(), &self.stop, |delta| {
                let _ = stdout.write_all(delta.as_bytes());
                let _ = stdout.flush();
            })
            .await;
        self.replying.store(false, Ordering::Release);
        println!();
        match result {
            Ok(turn) => {
                if !turn.saved && !self.history_warned {
                    self.history_warned = true;
                    let why = manager.health().await.history.unwrap_or_default();
                    eprintln!("warning: chat history is off for the rest of this run ({why}); the chat goes on");
                }
                eprintln!("{}", turn_line(&turn));
                self.last = Some(turn.metrics);
            }
            Err(e) => eprintln!("error: {e}"),
        }
    }
}

/// The figures shown after a reply: "[model | tokens | ttft | tok/s | finish | notes…]".
fn turn_line(turn: &TurnReport) -> String {
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
    format!(
        "[{} | {} tokens | ttft {:.0} ms | {:.1} tok/s | {}{}]",
        turn.model,
        m.completion_tokens,
        m.ttft_ms,
        m.decode_tps,
        m.finish_reason.as_str(),
        notes.iter().map(|n| format!(" | {n}")).collect::<String>()
    )
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
