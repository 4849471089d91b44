//! `hearth hw`: what this machine has (CPU, RAM, GPUs) and what it is doing.

use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use hearth_hw::{Sampler, Snapshot};

#[derive(Args, Debug)]
pub struct HwArgs {
    /// Print JSON (one object; with --watch, one line per reading).
    #[arg(long)]
    json: bool,
    /// Keep printing a reading every --interval-ms until interrupted.
    #[arg(long)]
    watch: bool,
    /// Milliseconds between readings with --watch.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// With --watch, stop after this many readings.
    #[arg(long)]
    count: Option<u64>,
}

pub fn run(args: &HwArgs) -> Result<()> {
    if !args.watch {
        return print_with_devices(&Snapshot::capture(), args.json);
    }
    if args.interval_ms < 10 {
        bail!("--interval-ms {} is too short: use 10 ms or more", args.interval_ms);
    }
    let interval = Duration::from_millis(args.interval_ms);
    let sampler = Sampler::start(interval, 2)?;
    let mut seen = 0;
    loop {
        // Wait for the next reading (the sampler's own clock sets the pace).
        let n = sampler.wait_for_samples(seen + 1, interval * 4 + Duration::from_secs(5));
        if n <= seen {
            bail!("the hardware sampler stopped producing readings");
        }
        seen = n;
        if let Some(s) = sampler.latest() {
            print(&s, args.json, seen == 1)?;
        }
        if args.count.is_some_and(|c| seen >= c) {
            return Ok(());
        }
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// One reading, and the devices llama.cpp can run a model on (GGML's view, beside the
/// NVML one in the reading), with what became of each GPU module.
fn print_with_devices(s: &Snapshot, json: bool) -> Result<()> {
    let devices = hearth_engine::devices()?;
    let modules = hearth_engine::gpu_modules();
    if json {
        let mut value = serde_json::to_value(s)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("llama_devices".into(), serde_json::to_value(&devices)?);
            object.insert("gpu_modules".into(), serde_json::to_value(modules)?);
        }
        println!("{value}");
        return Ok(());
    }
    print(s, false, true)?;
    for d in &devices {
        println!(
            "Device  {:<8} {} ({}, {:.1}/{:.1} GiB free)",
            d.name,
            d.description,
            d.backend,
            d.memory_free_bytes as f64 / GIB,
            d.memory_total_bytes as f64 / GIB
        );
    }
    for m in modules.iter().filter_map(|m| m.problem.as_ref().map(|p| (m, p))) {
        println!("        ({} not in use: {})", m.0.backend, m.1);
    }
    Ok(())
}

fn print(s: &Snapshot, json: bool, full: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(s)?);
        return Ok(());
    }
    if full {
        println!(
            "CPU     {} ({} cores, {} threads){}",
            s.cpu.model,
            s.cpu.physical_cores,
            s.cpu.logical_cores,
            if s.cpu.simd.is_empty() {
                String::new()
            } else {
                format!(", {}", s.cpu.simd.join(" "))
            }
        );
        for g in &s.gpus {
            println!(
                "GPU {}   {}{}{}",
                g.index,
                g.name,
                g.compute_capability
                    .as_deref()
                    .map(|c| format!(", compute {c}"))
                    .unwrap_or_default(),
                g.driver_version
                    .as_deref()
                    .map(|d| format!(", driver {d}"))
                    .unwrap_or_default()
            );
        }
        if s.gpus.is_empty() {
            println!("GPU     none found");
        }
        for note in &s.notes {
            println!("        ({note})");
        }
    }
    let mut line = format!(
        "RAM {:.1}/{:.1} GiB available, CPU {:.0}%, hearth {:.0} MiB {:.0}%",
        s.memory.available_bytes as f64 / GIB,
        s.memory.total_bytes as f64 / GIB,
        s.cpu.usage_percent,
        s.process.rss_bytes as f64 / (1024.0 * 1024.0),
        s.process.cpu_percent
    );
    for g in &s.gpus {
        line.push_str(&format!(
            " | GPU {} VRAM {:.1}/{:.1} GiB free{}{}{}",
            g.index,
            g.vram_free_bytes as f64 / GIB,
            g.vram_total_bytes as f64 / GIB,
            g.utilization_percent.map(|u| format!(", {u}%")).unwrap_or_default(),
            g.temperature_c.map(|t| format!(", {t}°C")).unwrap_or_default(),
            g.power_watts.map(|w| format!(", {w:.0} W")).unwrap_or_default()
        ));
    }
    println!("{line}");
    Ok(())
}
