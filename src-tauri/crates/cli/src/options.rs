//! Options shared by the commands that load a model and generate.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use hearth_core::SamplingParams;
use hearth_engine::{Engine, EngineConfig};

#[derive(Args, Debug, Clone)]
pub struct ModelOptions {
    /// Model: a .gguf path, or the name (or a unique part of it) of an installed model.
    /// Default: the default chat model.
    #[arg(short, long, env = "HEARTH_MODEL")]
    pub model: Option<String>,
    /// Context size in tokens.
    #[arg(long, default_value_t = 4096)]
    pub ctx: u32,
    /// Threads (default: one per physical core).
    #[arg(short = 't', long)]
    pub threads: Option<u32>,
    /// Prompt batch size.
    #[arg(long, default_value_t = 512)]
    pub batch: u32,
    /// Layers to offload to the GPU.
    #[arg(long, default_value_t = 0)]
    pub gpu_layers: u32,
}

impl ModelOptions {
    pub fn resolve_path(&self) -> Result<PathBuf> {
        crate::models::resolve(self.model.as_deref())
    }

    pub fn config(&self) -> Result<EngineConfig> {
        let mut config = EngineConfig::new(self.resolve_path()?).with_n_ctx(self.ctx);
        config.n_threads = self.threads;
        config.n_batch = self.batch;
        config.n_gpu_layers = self.gpu_layers;
        Ok(config)
    }

    pub fn load(&self) -> Result<Engine> {
        let config = self.config()?;
        eprintln!("loading {} …", config.model_path.display());
        Ok(Engine::load(config)?)
    }
}

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
        }
    }
}
