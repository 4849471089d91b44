//! The hardware sampler's own CPU cost: `cargo run --release -p hearth-hw
//! --example sampler_overhead [interval_ms] [seconds]` prints it as JSON
//! (the same measurement `hearth bench hw` reports).

use std::time::Duration;

fn main() -> Result<(), hearth_hw::HwError> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().ok());
    let interval = Duration::from_millis(args.next().flatten().unwrap_or(1000));
    let duration = Duration::from_secs(args.next().flatten().unwrap_or(10));
    let o = hearth_hw::measure_overhead(interval, duration)?;
    println!("{}", serde_json::to_string(&o).unwrap_or_default());
    Ok(())
}
