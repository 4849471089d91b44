//! `hearth-app`: the desktop app. It is also its own engine worker: the supervisor
//! starts this same executable as `hearth-app worker --model …`, which must never
//! open a window, so that is decided before Tauri starts.

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

fn main() -> std::process::ExitCode {
    let mut argv = std::env::args_os();
    let program = argv.next();
    let result = if argv.next().is_some_and(|a| a == "worker") {
        let command = WorkerCommand::parse_from(program.into_iter().chain(argv));
        let _log_guard = hearth_desktop::logging::init("hearth-worker");
        hearth_worker::run(&command.args)
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
