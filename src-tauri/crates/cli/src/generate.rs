//! `hearth generate`: one reply, streamed to stdout, or one JSON object with --json.

use std::io::{Read, Write};

use anyhow::{bail, Result};
use clap::Args;
use hearth_core::{ChatMessage, Prompt};

use crate::local::{LocalModel, StopSignal};
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
    /// Run the engine in this process instead of a supervised worker (no crash isolation).
    #[arg(long)]
    in_process: bool,
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
    let model = LocalModel::open(&args.model, args.in_process)?;
    let info = model.info().clone();
    let chat = args.chat || (!args.raw && info.has_chat_template);
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
    let stop = StopSignal::default();
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || stop.stop());
    }
    let mut stdout = std::io::stdout();
    let reply = model.generate(prompt, args.sampling.params(), &stop, |delta| {
        if !args.json {
            let _ = stdout.write_all(delta.as_bytes());
            let _ = stdout.flush();
        }
    })?;
    crate::history::log_generation(&info.name, &reply.metrics);
    if args.json {
        let json = serde_json::json!({
            "model": info.name,
            "engine": info.mode,
            "device": info.device,
            "gpu_layers": info.gpu_layers,
            "layers_total": info.layers_total,
            "placement_note": info.placement_note,
            "text": reply.text,
            "metrics": reply.metrics,
        });
        println!("{json}");
    } else {
        println!();
        let m = &reply.metrics;
        eprintln!(
            "[{} ({}) | {} prompt + {} tokens | ttft {:.0} ms | {:.1} tok/s | {}]",
            info.name,
            info.mode,
            m.prompt_tokens,
            m.completion_tokens,
            m.ttft_ms,
            m.decode_tps,
            m.finish_reason.as_str()
        );
    }
    Ok(())
}
