//! The fit planner: will this model, at this context, fit this machine, and
//! how many layers should go to the GPU?
//!
//! It mirrors how llama.cpp places a model. `n_gpu_layers = N` puts the
//! output layer on the GPU first and then the last `N - 1` repeating layers
//! (`llama_model::load_tensors`: layers from `n_layer + 1 - N` up); the token
//! embedding always stays in RAM. Each layer's KV cache lives with the layer.
//! Several GPUs share the offloaded layers in proportion to their free memory,
//! as llama.cpp's default split does. Every term is computed per device, in
//! bytes, so the plan can explain itself ([`FitPlan::explain`]).

mod compute;
mod explain;
pub mod model;

use serde::{Deserialize, Serialize};

use hearth_gguf::GgufInfo;

pub use model::KvCacheType;
use model::{layer_cells, layer_kv_bytes, pad, ModelFacts, CTX_PAD};

use crate::snapshot::{GpuInfo, Snapshot};

const MIB: u64 = 1024 * 1024;

/// The largest context the engine accepts (`hearth_engine::MAX_CONTEXT`).
pub const MAX_CONTEXT: u32 = 131_072;

/// What to plan for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRequest {
    /// Context in tokens; capped at the model's training context, as the engine does.
    pub n_ctx: u32,
    /// Tokens per batch (the engine uses it as llama.cpp's `n_batch` and `n_ubatch`).
    pub n_batch: u32,
    pub kv_type: KvCacheType,
    /// Sliding-window layers keep a full-size KV cache (llama.cpp's default,
    /// what the engine uses today): they then need as much as global layers.
    pub swa_full: bool,
    /// Check this many GPU layers (llama.cpp's `n_gpu_layers`, counting the
    /// output layer) instead of choosing the most that fit.
    pub n_gpu_layers: Option<u32>,
    /// VRAM left free on each GPU for the desktop and other programs.
    pub gpu_headroom_bytes: u64,
    /// RAM left free for the rest of the system.
    pub ram_headroom_bytes: u64,
}

impl Default for PlanRequest {
    fn default() -> Self {
        PlanRequest {
            n_ctx: 4096,
            n_batch: 512,
            kv_type: KvCacheType::F16,
            swa_full: true,
            n_gpu_layers: None,
            gpu_headroom_bytes: 512 * MIB,
            ram_headroom_bytes: 1024 * MIB,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Cpu,
    Gpu,
}

/// Memory one device will use, term by term.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevicePlan {
    /// "CPU" or "GPU 0 (NVIDIA GeForce RTX 4090)".
    pub device: String,
    pub kind: DeviceKind,
    pub gpu_index: Option<u32>,
    /// Repeating layers (`blk.N`) held here.
    pub layers: u32,
    /// Whether the output layer (final norm + vocabulary projection) is here.
    pub output_layer: bool,
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    /// Compute (scratch) and output buffers: committed in full on a GPU;
    /// in RAM, the part real use touches.
    pub compute_bytes: u64,
    /// What llama.cpp reserves for compute (address space in RAM).
    pub compute_reserved_bytes: u64,
    /// Runtime, tokenizer and metadata in RAM; the CUDA context on a GPU.
    pub overhead_bytes: u64,
    /// RAM only: mmapped file pages of weights the CPU backend repacked into
    /// a copy. They stay resident (and count in the process's RSS) until the
    /// kernel reclaims them, which it does before running out of memory, so
    /// they are not part of [`DevicePlan::total_bytes`].
    pub reclaimable_bytes: u64,
    /// RAM available or VRAM free now.
    pub free_bytes: u64,
    /// Kept free ([`PlanRequest`]'s headroom).
    pub headroom_bytes: u64,
}

impl DevicePlan {
    pub fn total_bytes(&self) -> u64 {
        self.weights_bytes + self.kv_cache_bytes + self.compute_bytes + self.overhead_bytes
    }

    /// What the plan may use here.
    pub fn budget_bytes(&self) -> u64 {
        self.free_bytes.saturating_sub(self.headroom_bytes)
    }

    pub fn fits(&self) -> bool {
        self.total_bytes() <= self.budget_bytes()
    }

    /// The process's resident memory (RSS) after loading: the total plus
    /// the reclaimable file pages. What `top` will show; not what must fit.
    pub fn resident_bytes(&self) -> u64 {
        self.total_bytes() + self.reclaimable_bytes
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every layer and the output layer on GPUs.
    FitsOnGpu,
    /// Some layers on GPUs, the rest on the CPU.
    PartialOffload,
    /// Everything on the CPU (no usable GPU, or not even the output layer fits).
    CpuOnly,
    DoesNotFit,
}

/// The most sequences `hearth plan` counts (it says "or more" beyond).
pub const SEQUENCES_SHOWN: u32 = 64;

/// The plan: where each part goes, what it costs, and whether it fits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitPlan {
    pub model: String,
    pub quantization: Option<String>,
    pub n_layer: u32,
    pub n_ctx_requested: u32,
    /// The context llama.cpp will allocate: capped at the training context,
    /// rounded up to a multiple of 256.
    pub n_ctx: u32,
    pub n_ctx_train: Option<u32>,
    pub n_batch: u32,
    pub kv_type: KvCacheType,
    pub swa_full: bool,
    /// The value for llama.cpp's `n_gpu_layers` (output layer included).
    pub n_gpu_layers: u32,
    /// Repeating layers on GPUs, out of `n_layer`.
    pub gpu_layers: u32,
    /// Weights of one repeating layer (the largest).
    pub layer_weights_bytes: u64,
    /// KV cache of one full-attention layer at `n_ctx`.
    pub layer_kv_bytes: u64,
    /// KV cache of one sliding-window layer (`None` without such layers).
    pub swa_layer_kv_bytes: Option<u64>,
    pub cpu: DevicePlan,
    pub gpus: Vec<DevicePlan>,
    pub verdict: Verdict,
    pub reason: String,
    /// What to change, most effective first.
    pub suggestions: Vec<String>,
    /// The largest context (multiple of 256) that keeps this verdict's layer
    /// split (or, when nothing fits, that fits at all); `None` if none does.
    pub max_context: Option<u32>,
}

impl FitPlan {
    /// Total over all devices.
    pub fn total_bytes(&self) -> u64 {
        self.cpu.total_bytes() + self.gpus.iter().map(DevicePlan::total_bytes).sum::<u64>()
    }

    pub fn fits(&self) -> bool {
        self.cpu.fits() && self.gpus.iter().all(DevicePlan::fits)
    }

    /// How many sequences of this context fit at once (each with its own KV cache of
    /// `n_ctx`): one, plus as many more caches as every device holding a part of the
    /// cache has room for beside what the plan already counts; at most `most`.
    pub fn parallel_sequences(&self, most: u32) -> u32 {
        let extra = std::iter::once(&self.cpu)
            .chain(&self.gpus)
            .filter(|d| d.kv_cache_bytes > 0)
            .map(|d| d.budget_bytes().saturating_sub(d.total_bytes()) / d.kv_cache_bytes)
            .min()
            .unwrap_or(0);
        u32::try_from(extra.saturating_add(1))
            .unwrap_or(u32::MAX)
            .clamp(1, most.max(1))
    }

    /// Whether this plan and `other` (made against the same machine state) fit at the
    /// same time: on every device, both totals within one budget. Measuring a model
    /// against its reference loads both only when this holds.
    pub fn fits_beside(&self, other: &FitPlan) -> bool {
        let together = |a: &DevicePlan, b: Option<&DevicePlan>| {
            a.total_bytes() + b.map_or(0, DevicePlan::total_bytes) <= a.budget_bytes()
        };
        together(&self.cpu, Some(&other.cpu))
            && self
                .gpus
                .iter()
                .all(|g| together(g, other.gpus.iter().find(|o| o.gpu_index == g.gpu_index)))
            && other
                .gpus
                .iter()
                .all(|g| self.gpus.iter().any(|s| s.gpu_index == g.gpu_index) || together(g, None))
    }
}

/// Plans `info` at `request` on the machine in `hw`.
pub fn plan(info: &GgufInfo, request: &PlanRequest, hw: &Snapshot) -> FitPlan {
    let facts = ModelFacts::from_info(info, &hw.cpu.simd);
    let planner = Planner {
        facts: &facts,
        request,
        hw,
    };
    let mut p = planner.best(request.n_ctx);
    p.quantization = info.quantization.clone();
    p.max_context = planner.max_context(&p);
    explain::judge(&planner, &mut p);
    p
}

/// [`plan`] against this machine as it is now (memory and GPUs read at once,
/// without the 200 ms wait [`Snapshot::capture`] spends on CPU percentages):
/// what the engine's `n_gpu_layers = auto` uses.
pub fn plan_now(info: &GgufInfo, request: &PlanRequest) -> FitPlan {
    plan(info, request, &crate::Probe::new().sample())
}

pub(crate) struct Planner<'a> {
    facts: &'a ModelFacts,
    request: &'a PlanRequest,
    hw: &'a Snapshot,
}

impl Planner<'_> {
    fn ctx_limit(&self) -> u32 {
        self.facts.n_ctx_train.unwrap_or(MAX_CONTEXT).min(MAX_CONTEXT)
    }

    /// The chosen (or requested) layer split at `n_ctx`.
    fn best(&self, n_ctx: u32) -> FitPlan {
        match self.request.n_gpu_layers {
            Some(n) => self.layout(n_ctx, n),
            None => self.best_auto(n_ctx),
        }
    }

    /// The most GPU layers that fit in VRAM at `n_ctx`.
    fn best_auto(&self, n_ctx: u32) -> FitPlan {
        if self.hw.gpus.is_empty() {
            return self.layout(n_ctx, 0);
        }
        // Fewer GPU layers never needs more VRAM, so the first that fits is the most.
        (0..=self.facts.n_layer + 1)
            .rev()
            .map(|n| self.layout(n_ctx, n))
            .find(|p| p.gpus.iter().all(DevicePlan::fits))
            .unwrap_or_else(|| self.layout(n_ctx, 0))
    }

    /// Memory per device with `n_gpu_layers` layers offloaded, at `n_ctx`.
    fn layout(&self, n_ctx_requested: u32, n_gpu_layers: u32) -> FitPlan {
        let f = self.facts;
        let r = self.request;
        let n_layer = f.n_layer;
        let n_ctx_capped = n_ctx_requested.clamp(1, self.ctx_limit());
        let n_ctx = pad(u64::from(n_ctx_capped), u64::from(CTX_PAD));
        let n_batch = r.n_batch.clamp(1, n_ctx_capped);
        let n_ubatch = u64::from(n_batch);
        let cells = layer_cells(f, n_ctx, n_ubatch, r.swa_full);
        // One attention mask per cache: the full one, and the sliding-window one if any layer slides.
        let mask_cells = n_ctx
            + cells
                .iter()
                .zip(&f.layer_swa)
                .find(|(_, swa)| **swa)
                .map_or(0, |(c, _)| *c);

        let gpus = &self.hw.gpus;
        let n_gpu_layers = if gpus.is_empty() {
            0
        } else {
            n_gpu_layers.min(n_layer + 1)
        };
        let split = Split {
            owner: assign_layers(gpus, n_layer, n_gpu_layers),
            kv: layer_kv_bytes(f, &cells, r.kv_type),
            n_ubatch,
            mask_cells,
        };
        let cpu = self.cpu_plan(&split);
        let gpu_plans = gpus
            .iter()
            .enumerate()
            .map(|(d, g)| self.gpu_plan(&split, d, g, cpu.layers > 0))
            .collect::<Vec<_>>();
        let kv = &split.kv;
        let full = kv.iter().zip(&f.layer_swa).find(|(_, swa)| !**swa).map(|(b, _)| *b);
        let swa = kv.iter().zip(&f.layer_swa).find(|(_, swa)| **swa).map(|(b, _)| *b);
        FitPlan {
            model: f.name.clone(),
            quantization: None,
            n_layer,
            n_ctx_requested,
            n_ctx: u32::try_from(n_ctx).unwrap_or(u32::MAX),
            n_ctx_train: f.n_ctx_train,
            n_batch,
            kv_type: r.kv_type,
            swa_full: r.swa_full,
            n_gpu_layers,
            gpu_layers: n_layer - cpu.layers,
            layer_weights_bytes: f.layer_weights.iter().copied().max().unwrap_or(0),
            layer_kv_bytes: full.or(swa).unwrap_or(0),
            swa_layer_kv_bytes: swa.filter(|_| full.is_some()),
            cpu,
            gpus: gpu_plans,
            verdict: Verdict::DoesNotFit,
            reason: String::new(),
            suggestions: Vec::new(),
            max_context: None,
        }
    }

    /// The CPU's share of a layout: the token embedding (always in RAM), the
    /// layers no GPU holds, and the output layer when no GPU holds it.
    fn cpu_plan(&self, split: &Split) -> DevicePlan {
        let f = self.facts;
        let n_layer = f.n_layer;
        let on_cpu = |i: u32| split.owner[i as usize].is_none();
        let cpu_layers: Vec<u32> = (0..n_layer).filter(|&i| on_cpu(i)).collect();
        let output_on_cpu = on_cpu(n_layer);
        let n_ubatch = split.n_ubatch;
        DevicePlan {
            device: "CPU".to_string(),
            kind: DeviceKind::Cpu,
            gpu_index: None,
            layers: cpu_layers.len() as u32,
            output_layer: output_on_cpu,
            weights_bytes: f.token_embd_bytes
                + f.other_bytes
                + layer_sum(&f.layer_weights, &cpu_layers)
                + if output_on_cpu { f.output_bytes_cpu } else { 0 },
            reclaimable_bytes: layer_sum(&f.layer_repack, &cpu_layers)
                + if output_on_cpu { f.output_repack } else { 0 },
            kv_cache_bytes: layer_sum(&split.kv, &cpu_layers),
            compute_bytes: compute::cpu_compute_resident(f, n_ubatch, output_on_cpu, !cpu_layers.is_empty()),
            compute_reserved_bytes: compute::cpu_compute_reserved(f, n_ubatch, split.mask_cells, output_on_cpu),
            overhead_bytes: compute::cpu_overhead(f),
            free_bytes: self.hw.memory.available_bytes,
            headroom_bytes: self.request.ram_headroom_bytes,
        }
    }

    /// The share of GPU `g` (the `d`th) in a layout: the layers `split` gives
    /// it, and, once it holds anything, its compute buffers and CUDA context.
    /// `cpu_has_layers`: whether some repeating layers stay on the CPU.
    fn gpu_plan(&self, split: &Split, d: usize, g: &GpuInfo, cpu_has_layers: bool) -> DevicePlan {
        let f = self.facts;
        let n_layer = f.n_layer;
        let layers: Vec<u32> = (0..n_layer).filter(|&i| split.owner[i as usize] == Some(d)).collect();
        let output = split.owner[n_layer as usize] == Some(d);
        let used = output || !layers.is_empty();
        let compute = if used {
            compute::gpu_compute(f, split.n_ubatch, split.mask_cells, output, cpu_has_layers)
        } else {
            0
        };
        DevicePlan {
            device: format!("GPU {} ({})", g.index, g.name),
            kind: DeviceKind::Gpu,
            gpu_index: Some(g.index),
            layers: layers.len() as u32,
            output_layer: output,
            weights_bytes: layer_sum(&f.layer_weights, &layers) + if output { f.output_bytes_gpu } else { 0 },
            kv_cache_bytes: layer_sum(&split.kv, &layers),
            compute_bytes: compute,
            compute_reserved_bytes: compute,
            overhead_bytes: if used { compute::GPU_CONTEXT_BYTES } else { 0 },
            reclaimable_bytes: 0,
            free_bytes: g.vram_free_bytes,
            headroom_bytes: self.request.gpu_headroom_bytes,
        }
    }

    /// The largest context that keeps at least `p`'s GPU layers and fits;
    /// when `p` does not fit, the largest that fits at all.
    fn max_context(&self, p: &FitPlan) -> Option<u32> {
        let keep = if p.fits() { p.n_gpu_layers } else { 0 };
        let ok = |ctx: u32| {
            let q = self.best(ctx);
            q.fits() && q.n_gpu_layers >= keep
        };
        explain::max_ctx_where(self, ok)
    }
}

/// Where a layout puts each layer, and the sizes every device's share of it
/// is computed from.
struct Split {
    /// Layer `n_layer` is the output layer; `owner[i]` is the GPU holding layer i.
    owner: Vec<Option<usize>>,
    /// KV cache of each repeating layer.
    kv: Vec<u64>,
    /// Tokens per micro-batch.
    n_ubatch: u64,
    /// Cells of the attention masks, one per cache.
    mask_cells: u64,
}

/// The sum of `per_layer` over `layers`.
fn layer_sum(per_layer: &[u64], layers: &[u32]) -> u64 {
    layers.iter().map(|&i| per_layer[i as usize]).sum::<u64>()
}

/// Which GPU holds each of layers `0..=n_layer` (the last is the output
/// layer), as llama.cpp assigns them: the last `n_gpu_layers` layers, split
/// between GPUs by cumulative share of free VRAM.
fn assign_layers(gpus: &[GpuInfo], n_layer: u32, n_gpu_layers: u32) -> Vec<Option<usize>> {
    let total_free: f64 = gpus.iter().map(|g| g.vram_free_bytes as f64).sum();
    let mut cumulative = Vec::with_capacity(gpus.len());
    let mut acc = 0.0;
    for g in gpus {
        acc += if total_free > 0.0 {
            g.vram_free_bytes as f64 / total_free
        } else {
            1.0 / gpus.len() as f64
        };
        cumulative.push(acc);
    }
    let start = (n_layer + 1).saturating_sub(n_gpu_layers);
    (0..=n_layer)
        .map(|il| {
            if il < start || n_gpu_layers == 0 {
                return None;
            }
            let frac = f64::from(il - start) / f64::from(n_gpu_layers);
            // std::upper_bound: the first split point above `frac`.
            Some(cumulative.iter().position(|&s| s > frac).unwrap_or(gpus.len() - 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::GpuVendor;

    fn gpu(index: u32, free_mib: u64) -> GpuInfo {
        GpuInfo {
            index,
            vendor: GpuVendor::Nvidia,
            name: format!("GPU{index}"),
            uuid: None,
            vram_total_bytes: free_mib * MIB,
            vram_free_bytes: free_mib * MIB,
            vram_used_bytes: 0,
            compute_capability: None,
            driver_version: None,
            utilization_percent: None,
            temperature_c: None,
            power_watts: None,
        }
    }

    #[test]
    fn layers_are_split_like_llama_cpp() {
        // Two equal GPUs, 40 layers + output all offloaded: layer i goes to the
        // first GPU whose cumulative share (0.5, 1.0) exceeds i / 41, so layers
        // 0..=20 (20/41 = 0.488) on GPU 0, 21..=39 and the output on GPU 1.
        let owner = assign_layers(&[gpu(0, 1000), gpu(1, 1000)], 40, 41);
        assert_eq!(owner.iter().filter(|o| **o == Some(0)).count(), 21);
        assert_eq!(owner[20], Some(0));
        assert_eq!(owner[21], Some(1));
        assert_eq!(owner[40], Some(1));
        // n_gpu_layers = 1 offloads only the output layer; 3 adds the last two layers.
        let owner = assign_layers(&[gpu(0, 1000)], 40, 1);
        assert_eq!(owner.iter().flatten().count(), 1);
        assert_eq!(owner[40], Some(0));
        let owner = assign_layers(&[gpu(0, 1000)], 40, 3);
        assert_eq!(owner[37..], [None, Some(0), Some(0), Some(0)]);
        // Uneven VRAM: 3:1 puts three quarters of the layers on the bigger GPU.
        let owner = assign_layers(&[gpu(0, 3000), gpu(1, 1000)], 40, 41);
        assert_eq!(owner.iter().filter(|o| **o == Some(0)).count(), 31);
    }
}
