//! `hearth plan MODEL`: will the model fit this machine, and how?

use anyhow::{Context, Result};
use clap::Args;
use hearth_hw::{KvCacheType, PlanRequest};
use hearth_worker::placement;

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Model: a .gguf path, or the name (or a unique part of it) of an installed model.
    model: String,
    /// Context size in tokens.
    #[arg(long, default_value_t = 4096)]
    ctx: u32,
    /// KV cache type: f16, q8_0 or q4_0.
    #[arg(long, default_value = "f16")]
    kv: KvCacheType,
    /// Prompt batch size.
    #[arg(long, default_value_t = 512)]
    batch: u32,
    /// Check this many GPU layers (llama.cpp's n_gpu_layers) instead of the most that fit.
    #[arg(long)]
    gpu_layers: Option<u32>,
    /// Plan a window-sized KV cache for sliding-window layers (llama.cpp's default is full size).
    #[arg(long)]
    swa_window: bool,
    /// The device to plan for: `auto` (a CUDA GPU, else a Vulkan GPU, else the CPU),
    /// `cpu`, or a device `hearth hw` lists (e.g. `vulkan0`). The plan is made against
    /// that device's free memory; every device's verdict is listed after it.
    #[arg(long, default_value = "auto", env = "HEARTH_DEVICE")]
    device: String,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &PlanArgs) -> Result<()> {
    let path = crate::models::resolve(Some(&args.model))?;
    let info = hearth_gguf::read(&path).with_context(|| format!("cannot plan {}", path.display()))?;
    let request = PlanRequest {
        n_ctx: args.ctx,
        n_batch: args.batch,
        kv_type: args.kv,
        swa_full: !args.swa_window,
        n_gpu_layers: args.gpu_layers,
        ..PlanRequest::default()
    };
    let choice: hearth_engine::DeviceChoice = args.device.parse()?;
    let (device, plan) = placement::plan_for_choice(&info, &request, &choice)?;
    let devices = placement::device_options(Some(&info), &request)?;
    let device_name = device.as_ref().map_or("CPU", |d| d.name.as_str());
    if args.json {
        let mut value = serde_json::to_value(&plan)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("device".into(), device_name.into());
            object.insert("devices".into(), serde_json::to_value(&devices)?);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("Planned for {device_name} (--device {choice}):");
        print!("{}", plan.explain());
        println!("\nOn each device:");
        for d in &devices {
            println!("  {}", device_line(d));
        }
    }
    Ok(())
}

/// One device's verdict: "Vulkan0 (NVIDIA GeForce RTX 4090, 21.3 GiB free): fits_on_gpu, 19/19 layers".
fn device_line(d: &placement::DeviceOption) -> String {
    let verdict = d
        .verdict
        .and_then(|v| serde_json::to_value(v).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let layers = match (d.n_gpu_layers, d.n_layers_total) {
        (Some(n), Some(total)) if d.backend != "CPU" => format!(", {n}/{total} layers"),
        _ => String::new(),
    };
    format!(
        "{} ({}, {:.1} GiB free){}: {verdict}{layers}",
        d.name,
        d.description,
        d.memory_free_bytes as f64 / (1u64 << 30) as f64,
        if d.auto { " [auto]" } else { "" }
    )
}
