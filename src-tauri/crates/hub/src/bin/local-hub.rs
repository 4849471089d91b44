//! A local Hub on 127.0.0.1 for the desktop app's end-to-end tests (and for trying the
//! Get models page offline): `local-hub [--throttle BYTES_PER_SEC] OWNER/NAME=FILE...`
//! serves each FILE as that repository's file of the same name, prints
//! `{"url": "http://127.0.0.1:PORT"}` and serves until its standard input closes.

use std::io::Read;
use std::path::Path;

fn main() -> std::process::ExitCode {
    let mut throttle = None;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--throttle" {
            throttle = args.next().and_then(|v| v.parse::<u64>().ok());
            if throttle.is_none() {
                eprintln!("--throttle takes a number of bytes per second");
                return std::process::ExitCode::from(2);
            }
        } else if let Some((repo, file)) = arg.split_once('=') {
            files.push((repo.to_owned(), file.to_owned()));
        } else {
            eprintln!("usage: local-hub [--throttle BYTES_PER_SEC] OWNER/NAME=FILE...");
            return std::process::ExitCode::from(2);
        }
    }
    let hub = match hearth_hub::local_hub::LocalHub::start() {
        Ok(hub) => hub,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    hub.throttle(throttle);
    for (repo, file) in &files {
        let path = Path::new(file);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Err(e) = hub.add_file(repo, &name, path) {
            eprintln!("cannot serve {file}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    println!("{}", serde_json::json!({ "url": hub.url }));
    // Until the test closes our standard input (or ends).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    std::process::ExitCode::SUCCESS
}
