//! `hearth plan MODEL`: will the model fit this machine, and how?

use anyhow::{Context, Result};
use clap::Args;
use hearth_hw::{KvCacheType, PlanRequest};

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
    let plan = hearth_hw::plan_now(&info, &request);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", plan.explain());
    }
    Ok(())
}
