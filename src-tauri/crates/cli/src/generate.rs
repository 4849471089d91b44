//! `hearth generate`: one reply, streamed to stdout, or one JSON object with --json.

use std::io::{Read, Write};

use anyhow::{bail, Result};
use clap::Args;
use hearth_core::ChatMessage;
use hearth_engine::{GenerationRequest, Prompt};

use crate::options::{ModelOptions, SamplingOptions};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The prompt; read from stdin when absent.
    prompt: Option<String>,
    #[command(flatten)]
    model: ModelOptions,
    #[command(flatten)]
    sampling: SamplingOptions,
    /// Format the prompt as a user turn with the model's chat template
    /// (default for models that have one; base models continue the text as-is).
    #[arg(long, conflicts_with = "raw")]
    chat: bool,
    /// Continue the prompt as raw text, without the chat template.
    #[arg(long)]
    raw: bool,
    /// System prompt (chat mode only).
    #[arg(long)]
    system: Option<String>,
    /// Print {"text", "metrics", "model"} as one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &GenerateArgs) -> Result<()> {
    let text = match &args.prompt {
        Some(p) => p.clone(),
        None => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
    };
    if text.trim().is_empty() {
        bail!("the prompt is empty: pass it as an argument or on stdin");
    }
    let engine = args.model.load()?;
    let chat = args.chat || (!args.raw && engine.info().has_chat_template);
    let prompt = if chat {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage::system(system.clone()));
        }
        messages.push(ChatMessage::user(text));
        Prompt::Chat(messages)
    } else {
        Prompt::Text(text)
    };
    let generation = engine.generate(GenerationRequest {
        prompt,
        params: args.sampling.params(),
    })?;
    let cancel = generation.cancel.clone();
    let _ = ctrlc::set_handler(move || cancel.cancel());
    if args.json {
        let output = generation.collect()?;
        crate::history::log_generation(&engine.info().name, &output.metrics);
        let json = serde_json::json!({ "model": engine.info().name, "text": output.text, "metrics": output.metrics });
        println!("{json}");
    } else {
        let mut stdout = std::io::stdout();
        let output = generation.collect_with(|delta| {
            let _ = stdout.write_all(delta.as_bytes());
            let _ = stdout.flush();
        })?;
        println!();
        crate::history::log_generation(&engine.info().name, &output.metrics);
        let m = &output.metrics;
        eprintln!(
            "[{} | {} prompt + {} tokens | ttft {:.0} ms | {:.1} tok/s | {}]",
            engine.info().name,
            m.prompt_tokens,
            m.completion_tokens,
            m.ttft_ms,
            m.decode_tps,
            m.finish_reason.as_str()
        );
    }
    Ok(())
}
