//! `hearth chat`: an interactive conversation in the terminal.
//!
//! The whole conversation is sent every turn; the engine reuses the KV cache of
//! the part it has already seen, so a follow-up turn only evaluates its new tokens.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use hearth_core::{ChatMessage, GenerationMetrics, Prompt};

use crate::local::{LocalModel, StopSignal};
use crate::options::{ModelOptions, SamplingOptions};

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
    /// Run the engine in this process instead of a supervised worker (no crash isolation).
    #[arg(long)]
    in_process: bool,
}

const HELP: &str = "Commands: /reset (new conversation), /stats (last reply's figures), /quit. Ctrl-C stops a reply.";

pub fn run(args: &ChatArgs) -> Result<()> {
    let model = LocalModel::open(&args.model, args.in_process)?;
    let info = model.info().clone();
    if !info.has_chat_template {
        anyhow::bail!(hearth_core::BackendError::NoChatTemplate { model: info.name });
    }
    eprintln!(
        "{} ready ({}, context {} tokens, loaded in {:.0} ms). {HELP}",
        info.name, info.mode, info.n_ctx, info.load_ms
    );

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

    let mut saved = crate::history::History::open();
    let mut history: Vec<ChatMessage> = match &args.session {
        Some(id) => {
            let resumed = saved.resume(id)?;
            eprintln!("(resumed session {id}: {} messages)", resumed.len());
            resumed
        }
        None => Vec::new(),
    };
    if let Some(system) = &args.system {
        if !history.iter().any(|m| m.role == hearth_core::Role::System) {
            history.insert(0, ChatMessage::system(system.clone()));
            saved.save_turn(hearth_core::Role::System, system);
        }
    }
    let mut last: Option<GenerationMetrics> = None;
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            eprintln!();
            break;
        }
        let input = line.trim_end_matches(['\n', '\r']);
        match input.trim() {
            "" => continue,
            "/quit" | "/exit" => break,
            "/help" => {
                eprintln!("{HELP}");
                continue;
            }
            "/reset" => {
                // The next prompt shares no turns with the old one, so the engine's cache
                // reuse keeps only the common opening (system prompt) and evaluates the rest.
                history.retain(|m| m.role == hearth_core::Role::System);
                saved = crate::history::History::open();
                for m in &history {
                    saved.save_turn(m.role, &m.content);
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
            cmd if cmd.starts_with('/') => {
                eprintln!("unknown command {cmd}. {HELP}");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage::user(input));
        let was_new = saved.session().is_none();
        saved.save_turn(hearth_core::Role::User, input);
        if was_new {
            if let Some(id) = saved.session() {
                eprintln!("(saving as session {id}; resume with --session {id})");
            }
        }
        replying.store(true, Ordering::Release);
        let result = model.generate(Prompt::Chat(history.clone()), args.sampling.params(), &stop, |delta| {
            let _ = stdout.write_all(delta.as_bytes());
            let _ = stdout.flush();
        });
        replying.store(false, Ordering::Release);
        println!();
        match result {
            Ok(output) => {
                let m = &output.metrics;
                eprintln!(
                    "[{} tokens | ttft {:.0} ms | {:.1} tok/s | {}{}]",
                    m.completion_tokens,
                    m.ttft_ms,
                    m.decode_tps,
                    m.finish_reason.as_str(),
                    if m.prompt_tokens_evaluated < m.prompt_tokens {
                        format!(
                            " | reused {} of {} prompt tokens",
                            m.prompt_tokens - m.prompt_tokens_evaluated,
                            m.prompt_tokens
                        )
                    } else {
                        String::new()
                    }
                );
                // A cancelled or cut-off reply is kept, marked incomplete, never regenerated silently.
                let incomplete = m.finish_reason == hearth_core::FinishReason::Cancelled;
                saved.save_reply(&info.name, &output.text, m, incomplete);
                history.push(ChatMessage::assistant(output.text));
                last = Some(output.metrics);
            }
            Err(e) => {
                // The turn could not run (e.g. the conversation outgrew the context, or the
                // worker died and is restarting). It stays saved (the user wrote it) but
                // leaves the context sent to the model.
                history.pop();
                eprintln!("error: {e}");
            }
        }
    }
    Ok(())
}
