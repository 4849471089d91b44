//! The decode thread: loads the model, makes its context (one sequence with a cache
//! that grows, or several at once), warms it up, reports what was loaded, then runs
//! the scheduler on the engine's commands until the engine is dropped.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;

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
    let path = config.model_path.clone();
    let chosen = match crate::devices::devices().and_then(|all| crate::devices::choose(&config.device, &all)) {
        Ok(chosen) => chosen,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    // The CPU: no device at all, so no layer, cache or large operation goes to a GPU.
    let n_gpu_layers = if chosen.index.is_some() { config.n_gpu_layers } else { 0 };
    let model_params = LlamaModelParams::default()
        .with_n_gpu_layers(n_gpu_layers)
        .with_use_mmap(true)
        .with_devices(chosen.index.as_slice());
    let mut model_params = match model_params {
        Ok(params) => params,
        Err(e) => {
            let _ = ready.send(Err(EngineError::InvalidSettings(format!(
                "device {}: {e}",
                chosen.name
            ))));
            return;
        }
    };
    if let Some(progress) = config.load_progress.clone() {
        model_params = model_params.with_progress_callback(move |fraction| {
            (progress.0)(fraction);
            // Go on loading: a load is stopped by ending the worker, not from here.
            true
        });
    }
    let model = match LlamaModel::load_from_file(backend, &path, &model_params) {
        Ok(model) => model,
        Err(e) => {
            let _ = ready.send(Err(EngineError::LoadFailed {
                path,
                reason: e.to_string(),
            }));
            return;
        }
    };
    let n_ctx_train = model.n_ctx_train();
    let requested = if n_ctx_train > 0 {
        config.n_ctx.min(n_ctx_train)
    } else {
        config.n_ctx
    };
    // llama.cpp pads every context to a multiple of 256: the ceiling is what it would hold.
    let ceiling = padded(requested);
    let initial = initial_size(config.initial_ctx, ceiling, n_gpu_layers);
    let shape = ContextShape {
        n_batch: config.n_batch.min(ceiling),
        threads: config.threads(),
        threads_batch: config.threads_batch(),
    };
    let name = model_name(&path);
    let has_chat_template = model.chat_template(None).is_ok();
    let bos_token = {
        let vocab = model.vocab();
        let with = vocab.tokenize(b"a", true, false);
        (with.len() > vocab.tokenize(b"a", false, false).len()).then(|| with[0].0)
    };
    let mut info = ModelInfo {
        file_bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        architecture: model.meta_val_str("general.architecture").unwrap_or_default(),
        n_params: model.n_params(),
        n_layer: model.n_layer(),
        path: path.clone(),
        name: name.clone(),
        n_ctx: ceiling,
        n_ctx_initial: initial,
        n_ctx_train,
        n_batch: shape.n_batch,
        threads: shape.threads,
        threads_batch: shape.threads_batch,
        // llama.cpp offloads at most every layer and the output layer.
        n_gpu_layers: n_gpu_layers.min(model.n_layer().saturating_add(1)),
        device: chosen.name.clone(),
        placement_note: None,
        n_parallel: config.n_parallel.max(1),
        has_chat_template,
        bos_token,
        load_ms: 0.0,
    };
    // Drafting rolls the cache back to the accepted tokens; a recurrent state cannot be cut.
    let max_draft = if model.is_recurrent() || model.is_hybrid() {
        0
    } else {
        config.max_draft as usize
    };
    let n = info.n_parallel;
    let (params, growth) = if n > 1 {
        // Several sequences: each gets the whole configured context, allocated at load
        // (the fit planner sized it; growing would copy every sequence's state).
        let params = shape
            .params(ceiling.saturating_mul(n))
            .with_n_seq_max(n)
            .with_kv_unified(false);
        (params, None)
    } else {
        // One sequence: its cache starts small and grows with the conversation.
        let growth = Growth {
            backend,
            shape,
            ceiling,
            path: path.clone(),
            allocated: Arc::clone(&allocated),
        };
        (shape.params(initial), Some(growth))
    };
    let n_ctx_asked = params.n_ctx().map_or(0, std::num::NonZeroU32::get);
    let ctx = match model.new_context(backend, params) {
        Ok(ctx) => ctx,
        Err(e) => {
            let _ = ready.send(Err(EngineError::ContextFailed {
                path,
                n_ctx: n_ctx_asked,
                reason: e.to_string(),
            }));
            return;
        }
    };
    let n_ctx_initial = ctx.n_ctx();
    allocated.store(n_ctx_initial, Ordering::Release);
    let growth = growth.map(|g| Growth {
        ceiling: ceiling.max(n_ctx_initial),
        ..g
    });
    let shape = SlotsShape {
        name,
        n_parallel: n,
        n_swa,
        max_draft,
    };
    let mut scheduler = Scheduler::new(&model, ctx, shape, growth, steps);
    if config.warmup {
        if let Err(e) = scheduler.warm_up() {
            let _ = ready.send(Err(e));
            return;
        }
    }
    info.load_ms = started.elapsed().as_secs_f64() * 1000.0;
    scheduler.set_load_ms(info.load_ms);
    info.n_ctx = scheduler.n_ctx_limit();
    info.n_ctx_initial = if n > 1 { info.n_ctx } else { n_ctx_initial };
    if ready.send(Ok(info)).is_ok() {
        scheduler.run(&commands);
    }
}
