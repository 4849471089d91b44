//! Options shared by the commands that load a model and generate. How a model is
//! loaded lives in `hearth-worker` (the worker process uses it too).

use clap::Args;
use hearth_core::SamplingParams;
pub use hearth_worker::options::{GpuLayers, ModelOptions, Parallel, AUTO_PARALLEL_MOST};

#[derive(Args, Debug, Clone)]
pub struct SamplingOptions {
    /// 0 = greedy (reproducible).
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long, default_value_t = 40)]
    pub top_k: i32,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 0xC0FFEE)]
    pub seed: u32,
    #[arg(short = 'n', long, default_value_t = 512)]
    pub max_tokens: u32,
    /// Stop when this text appears (repeatable); it is not included in the reply.
    #[arg(long)]
    pub stop: Vec<String>,
}

impl SamplingOptions {
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: 64,
            seed: self.seed,
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
            ..SamplingParams::default()
        }
    }
}
