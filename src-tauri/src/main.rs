//! `hearth-app`: the desktop app. It is also its own engine worker: the supervisor
//! starts this same executable as `hearth-app worker --model …`, the Quantize… flow
//! as `hearth-app quantize-worker …` and `measure-worker …`, and the settings' device
//! picker as `hearth-app devices …`; none may open a window, so that is decided before
//! Tauri starts.

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use clap::Parser;

/// `hearth-app worker …`: the arguments the supervisor passes.
#[derive(Parser, Debug)]
#[command(
    name = "hearth-app worker",
    about = "The engine worker process, started by Hearth itself"
)]
struct WorkerCommand {
    #[command(flatten)]
    args: hearth_worker::WorkerArgs,
}

/// `hearth-app quantize-worker …`, `hearth-app measure-worker …`: the child processes of
/// the Quantize… flow.
#[derive(Parser, Debug)]
#[command(name = "hearth-app", about = "A job's worker process, started by Hearth itself")]
struct JobCli {
    #[command(subcommand)]
    job: hearth_worker::jobs::JobCommand,
}

fn main() -> std::process::ExitCode {
    let mut argv = std::env::args_os();
    let program = argv.next();
    let first = argv.next();
    let result = if first.as_ref().is_some_and(|a| a == "worker") {
        let command = WorkerCommand::parse_from(program.into_iter().chain(argv));
        let _log_guard = hearth_core::logging::init("hearth-worker", 0);
        hearth_worker::run(&command.args)
    } else if first.as_ref().is_some_and(|a| a == hearth_desktop::devices::MODE) {
        // No log file: the settings that ran it read any error from stderr.
        let command = hearth_desktop::devices::DevicesCommand::parse_from(program.into_iter().chain(argv));
        hearth_desktop::devices::run(&command.args)
    } else if first
        .as_ref()
        .is_some_and(|a| hearth_worker::jobs::JobCommand::NAMES.iter().any(|n| a == *n))
    {
        let cli = JobCli::parse_from(program.into_iter().chain(first).chain(argv));
        let _log_guard = hearth_core::logging::init("hearth-job", 0);
        cli.job.run()
    } else {
        hearth_desktop::run()
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "hearth-app failed");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
