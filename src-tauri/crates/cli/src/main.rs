//! `hearth`: Hearth's engine from the command line. The same crates the desktop
//! app uses, without a window.

mod bench;
mod bench_serve;
mod bench_switch;
mod bench_worker;
mod chat;
mod db;
mod eval;
mod generate;
mod history;
mod hw;
mod line_input;
mod local;
mod models;
mod options;
mod plan;
mod pull;
mod quantize;
mod serve;
mod sessions;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "hearth", version, about = "Run language models on your own machine, offline")]
struct Cli {
    /// Log to stderr too (-v info, -vv debug, -vvv trace; llama.cpp's own lines at debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List installed models with their metadata (read from the GGUF header), with those Ollama and LM Studio keep.
    Models(models::ModelsArgs),
    /// Download a GGUF model from Hugging Face (HF_ENDPOINT: a mirror; HF_TOKEN: gated repositories); without a file, list the repository's files and whether each fits.
    Pull(pull::PullArgs),
    /// Find GGUF model repositories on Hugging Face.
    Search(pull::SearchArgs),
    /// Generate one reply and exit.
    Generate(generate::GenerateArgs),
    /// Chat interactively: /reset, /stats, /quit; Ctrl-C stops the current reply.
    Chat(chat::ChatArgs),
    /// Measure load time, time to first token and tokens/s; prints JSON lines.
    Bench(bench::BenchArgs),
    /// Saved conversations: list, show, export as Markdown or JSON.
    Sessions(sessions::SessionsArgs),
    /// The database: stats, backup, integrity check.
    Db(db::DbArgs),
    /// Serve the OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models, /health, /metrics).
    Serve(serve::ServeArgs),
    /// Show this machine's CPU, RAM and GPUs (--watch: live readings).
    Hw(hw::HwArgs),
    /// Will a model fit this machine? Memory per device, GPU layers, largest context.
    Plan(plan::PlanArgs),
    /// Make a smaller GGUF file: F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M or Q4_0 (llama.cpp's quantizer).
    Quantize(quantize::QuantizeArgs),
    /// What a model costs in accuracy: perplexity; against a reference, KL divergence and top-token agreement.
    Eval(eval::EvalArgs),
    /// The child processes of quantizing and measuring.
    #[command(flatten)]
    Job(hearth_worker::jobs::JobCommand),
    /// The engine worker process, started by Hearth itself.
    #[command(hide = true)]
    Worker(hearth_worker::WorkerArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _log_guard = hearth_core::logging::init("hearth", cli.verbose);
    let result = match cli.command {
        Command::Models(args) => models::run(&args),
        Command::Pull(args) => pull::run(&args),
        Command::Search(args) => pull::search(&args),
        Command::Generate(args) => generate::run(&args),
        Command::Chat(args) => chat::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Sessions(args) => sessions::run(&args),
        Command::Db(args) => db::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Hw(args) => hw::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Quantize(args) => quantize::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Job(job) => job.run(),
        Command::Worker(args) => hearth_worker::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "command failed");
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
