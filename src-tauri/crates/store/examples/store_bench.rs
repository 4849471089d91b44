//! Runs the store benchmark and prints its report as one JSON line, the way
//! `hearth bench store` does:
//!
//! ```sh
//! cargo run --release -p hearth-store --example store_bench -- \
//!     [seconds] [readers] [writers] [normal|full] [think time, microseconds]
//! ```
//!
//! The database is a new file in a temporary directory, removed afterwards.

use std::time::Duration;

use hearth_store::{bench_with, BenchOptions, Synchronous};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| -> Result<u64, std::num::ParseIntError> {
        args.get(i).map_or(Ok(default), |s| s.parse())
    };
    let options = BenchOptions {
        duration: Duration::from_secs(arg(0, 10)?),
        readers: usize::try_from(arg(1, 5)?)?,
        writers: usize::try_from(arg(2, 2)?)?,
        synchronous: match args.get(3).map(String::as_str) {
            Some("full") => Synchronous::Full,
            _ => Synchronous::Normal,
        },
        think_time: Duration::from_micros(arg(4, 0)?),
        ..BenchOptions::default()
    };
    let dir = std::env::temp_dir().join(format!("hearth-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = bench_with(&dir.join("bench.db"), &options);
    let _ = std::fs::remove_dir_all(&dir);
    println!("{}", serde_json::to_string(&result?)?);
    Ok(())
}
