//! The decode thread: loads the model, makes its context (one sequence with a cache
//! that grows, or several at once), warms it up, reports what was loaded, then runs
//! the scheduler on the engine's commands until the engine is dropped.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;

use crate::chat_format::ChatFormat;
use crate::context::{initial_size, padded, ContextShape};
use crate::engine::{Command, ModelInfo};
use crate::scheduler::{Growth, Scheduler, SlotsShape};
use crate::{EngineConfig, EngineError};

fn model_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

pub(crate) fn engine_thread(
    backend: &'static LlamaBackend,
    config: EngineConfig,
    n_swa: u32,
    allocated: Arc<AtomicU32>,
    steps: Arc<crate::scheduler::StepLog>,
    ready: SyncSender<Result<ModelInfo, EngineError>>,
    commands: Receiver<Command>,
) {
    let started = Instant::now();
    let (model, device) = match load_model(backend, &config) {
        Ok(loaded) => loaded,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut info = model_info(&model, &config, &device);
    let format = match ChatFormat::new(&model, &info.name, config.chat_template.as_deref()) {
        Ok(format) => format,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    info.has_chat_template = format.has_chat_template();
    // Drafting rolls the cache back to the accepted tokens; a recurrent state cannot be cut.
    let max_draft = if model.is_recurrent() || model.is_hybrid() {
        0
    } else {
        config.max_draft as usize
    };
    let shape = SlotsShape {
        name: info.name.clone(),
        format,
        n_parallel: info.n_parallel,
        n_swa,
        max_draft,
        min_draft: (config.min_draft as usize).min(max_draft),
    };
    let scheduler = make_context(backend, &model, &config, &info, &allocated)
        .map(|(ctx, growth)| Scheduler::new(&model, ctx, shape, growth, steps))
        .and_then(|mut scheduler| {
            if config.warmup {
                scheduler.warm_up()?;
            }
            Ok(scheduler)
        });
    let mut scheduler = match scheduler {
        Ok(scheduler) => scheduler,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    info.load_ms = started.elapsed().as_secs_f64() * 1000.0;
    scheduler.set_load_ms(info.load_ms);
    info.n_ctx = scheduler.n_ctx_limit();
    info.n_ctx_initial = if info.n_parallel > 1 {
        info.n_ctx
    } else {
        allocated.load(Ordering::Acquire)
    };
    if ready.send(Ok(info)).is_ok() {
        scheduler.run(&commands);
    }
}

/// Where the model went: the device's name ("CPU", "Vulkan0" …) and the layers on it.
struct Placement {
    name: String,
    n_gpu_layers: u32,
}

/// Loads the model's weights where the configuration asks.
fn load_model(backend: &LlamaBackend, config: &EngineConfig) -> Result<(LlamaModel, Placement), EngineError> {
    let chosen = crate::devices::devices().and_then(|all| crate::devices::choose(&config.device, &all))?;
    // The CPU: no device at all, so no layer, cache or large operation goes to a GPU.
    let n_gpu_layers = if chosen.index.is_some() { config.n_gpu_layers } else { 0 };
    let mut model_params = LlamaModelParams::default()
        .with_n_gpu_layers(n_gpu_layers)
        .with_use_mmap(true)
        .with_devices(chosen.index.as_slice())
        .map_err(|e| EngineError::InvalidSettings(format!("device {}: {e}", chosen.name)))?;
    if let Some(progress) = config.load_progress.clone() {
        model_params = model_params.with_progress_callback(move |fraction| {
            (progress.0)(fraction);
            // Go on loading: a load is stopped by ending the worker, not from here.
            true
        });
    }
    let model = LlamaModel::load_from_file(backend, &config.model_path, &model_params).map_err(|e| {
        EngineError::LoadFailed {
            path: config.model_path.clone(),
            reason: e.to_string(),
        }
    })?;
    let placement = Placement {
        name: chosen.name,
        n_gpu_layers,
    };
    Ok((model, placement))
}

/// The context size prompts are checked against: the configured one, within what the
/// model was trained for, padded as llama.cpp pads it.
fn ceiling(model: &LlamaModel, config: &EngineConfig) -> u32 {
    let n_ctx_train = model.n_ctx_train();
    let requested = if n_ctx_train > 0 {
        config.n_ctx.min(n_ctx_train)
    } else {
        config.n_ctx
    };
    padded(requested)
}

fn context_shape(config: &EngineConfig, ceiling: u32) -> ContextShape {
    ContextShape {
        n_batch: config.n_batch.min(ceiling),
        threads: config.threads(),
        threads_batch: config.threads_batch(),
    }
}

/// What was loaded, before the context is made (its sizes are set from the scheduler).
fn model_info(model: &LlamaModel, config: &EngineConfig, placement: &Placement) -> ModelInfo {
    let path = &config.model_path;
    let ceiling = ceiling(model, config);
    let shape = context_shape(config, ceiling);
    let bos_token = {
        let vocab = model.vocab();
        let with = vocab.tokenize(b"a", true, false);
        (with.len() > vocab.tokenize(b"a", false, false).len()).then(|| with[0].0)
    };
    ModelInfo {
        file_bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        architecture: model.meta_val_str("general.architecture").unwrap_or_default(),
        n_params: model.n_params(),
        n_layer: model.n_layer(),
        path: path.clone(),
        name: model_name(path),
        n_ctx: ceiling,
        n_ctx_initial: initial_size(config.initial_ctx, ceiling, placement.n_gpu_layers),
        n_ctx_train: model.n_ctx_train(),
        n_batch: shape.n_batch,
        threads: shape.threads,
        threads_batch: shape.threads_batch,
        // llama.cpp offloads at most every layer and the output layer.
        n_gpu_layers: placement.n_gpu_layers.min(model.n_layer().saturating_add(1)),
        device: placement.name.clone(),
        placement_note: None,
        n_parallel: config.n_parallel.max(1),
        // Set from the chat format (a template of the user's gives a base model one).
        has_chat_template: false,
        bos_token,
        load_ms: 0.0,
    }
}

/// The context: with several sequences, each gets the whole configured context,
/// allocated at load (the fit planner sized it; growing would copy every sequence's
/// state); with one, the cache starts small and grows with the conversation.
fn make_context<'m>(
    backend: &'static LlamaBackend,
    model: &'m LlamaModel,
    config: &EngineConfig,
    info: &ModelInfo,
    allocated: &Arc<AtomicU32>,
) -> Result<(LlamaContext<'m>, Option<Growth>), EngineError> {
    let ceiling = info.n_ctx;
    let shape = context_shape(config, ceiling);
    let n = info.n_parallel;
    let params = if n > 1 {
        shape
            .params(ceiling.saturating_mul(n))
            .with_n_seq_max(n)
            .with_kv_unified(false)
    } else {
        shape.params(info.n_ctx_initial)
    };
    let n_ctx = params.n_ctx().map_or(0, std::num::NonZeroU32::get);
    let ctx = model
        .new_context(backend, params)
        .map_err(|e| EngineError::ContextFailed {
            path: info.path.clone(),
            n_ctx,
            reason: e.to_string(),
        })?;
    allocated.store(ctx.n_ctx(), Ordering::Release);
    let growth = (n == 1).then(|| Growth {
        backend,
        shape,
        ceiling: ceiling.max(ctx.n_ctx()),
        path: info.path.clone(),
        allocated: Arc::clone(allocated),
    });
    Ok((ctx, growth))
}
