//! The verdict, its reason and what to change, in words a user can act on;
//! and [`FitPlan::explain`], the plan as a table of MiB per device.

use std::fmt::Write as _;

use super::{DevicePlan, FitPlan, KvCacheType, PlanRequest, Planner, Verdict, CTX_PAD};

const MIB: f64 = 1024.0 * 1024.0;

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / MIB)
}

/// Typical bits per weight of llama.cpp's quantizations, largest first
/// (`llama-quantize --help`), for suggesting one that fits.
const QUANTS: &[(&str, f64)] = &[
    ("Q8_0", 8.5),
    ("Q6_K", 6.56),
    ("Q5_K_M", 5.7),
    ("Q4_K_M", 4.85),
    ("Q3_K_M", 3.9),
    ("Q2_K", 3.35),
];

/// Sets `p`'s verdict, reason and suggestions.
pub(super) fn judge(pl: &Planner<'_>, p: &mut FitPlan) {
    let short: Vec<&DevicePlan> = std::iter::once(&p.cpu).chain(&p.gpus).filter(|d| !d.fits()).collect();
    let gpus_used: Vec<&DevicePlan> = p.gpus.iter().filter(|g| g.layers > 0 || g.output_layer).collect();
    (p.verdict, p.reason) = if let Some(d) = short.first() {
        let what = if d.kind == super::DeviceKind::Cpu {
            "RAM"
        } else {
            "VRAM"
        };
        (
            Verdict::DoesNotFit,
            format!(
                "{} needs {} of {what} but has {} free{}",
                d.device,
                mib(d.total_bytes()),
                mib(d.free_bytes),
                headroom_note(d)
            ),
        )
    } else if gpus_used.is_empty() {
        let reason = match pl.hw.gpus.first() {
            Some(_) if pl.request.n_gpu_layers == Some(0) => format!(
                "n_gpu_layers = 0 was asked for: everything runs on the CPU, using {} of {} available RAM",
                mib(p.cpu.total_bytes()),
                mib(p.cpu.free_bytes)
            ),
            None => format!(
                "no GPU found: everything runs on the CPU, using {} of {} available RAM",
                mib(p.cpu.total_bytes()),
                mib(p.cpu.free_bytes)
            ),
            Some(_) => {
                let one = pl.layout(p.n_ctx_requested, 1);
                let need = one.gpus.iter().map(DevicePlan::total_bytes).max().unwrap_or(0);
                format!(
                    "the GPU cannot hold even the output layer ({} with its buffers, {} free{}): everything runs on the CPU",
                    mib(need),
                    mib(p.gpus.iter().map(|g| g.free_bytes).max().unwrap_or(0)),
                    p.gpus.first().map(headroom_note).unwrap_or_default()
                )
            }
        };
        (Verdict::CpuOnly, reason)
    } else if p.gpu_layers == p.n_layer && !p.cpu.output_layer {
        let used: u64 = gpus_used.iter().map(|g| g.total_bytes()).sum();
        let free: u64 = gpus_used.iter().map(|g| g.free_bytes).sum();
        (
            Verdict::FitsOnGpu,
            format!(
                "all {} layers and the output layer fit on {}: {} of {} free VRAM",
                p.n_layer,
                names(&gpus_used),
                mib(used),
                mib(free)
            ),
        )
    } else {
        (
            Verdict::PartialOffload,
            format!(
                "{} of {} layers fit on {}{}; the other {} run on the CPU, which is slower",
                p.gpu_layers,
                p.n_layer,
                names(&gpus_used),
                if p.gpus.iter().any(|g| g.output_layer) {
                    " (with the output layer)"
                } else {
                    ""
                },
                p.n_layer - p.gpu_layers
            ),
        )
    };
    p.suggestions = suggestions(pl, p);
}

fn headroom_note(d: &DevicePlan) -> String {
    if d.headroom_bytes == 0 {
        String::new()
    } else {
        format!(", of which {} is kept free", mib(d.headroom_bytes))
    }
}

fn names(gpus: &[&DevicePlan]) -> String {
    gpus.iter().map(|g| g.device.as_str()).collect::<Vec<_>>().join(" and ")
}

/// What would improve the plan: a shorter context, a smaller KV cache, fewer
/// layers, a smaller quantization.
fn suggestions(pl: &Planner<'_>, p: &FitPlan) -> Vec<String> {
    let mut out = Vec::new();
    let full_offload = p.n_layer + 1;
    let has_gpu = !pl.hw.gpus.is_empty();
    match p.verdict {
        Verdict::FitsOnGpu => return out,
        Verdict::DoesNotFit => {
            if let Some(c) = p.max_context.filter(|c| *c < p.n_ctx) {
                out.push(format!("use a context of at most {c} tokens (--ctx {c})"));
            }
            if p.gpus.iter().any(|g| !g.fits()) && pl.request.n_gpu_layers.is_some() {
                let auto = pl.best_auto(p.n_ctx_requested);
                if auto.fits() {
                    out.push(format!(
                        "offload fewer layers: at most {} GPU layers fit (n_gpu_layers = {})",
                        auto.gpu_layers, auto.n_gpu_layers
                    ));
                }
            }
        }
        Verdict::PartialOffload | Verdict::CpuOnly if has_gpu => {
            let all_on_gpu = |ctx: u32| pl.best(ctx).n_gpu_layers == full_offload;
            if let Some(c) = max_ctx_where(pl, all_on_gpu).filter(|c| *c < p.n_ctx) {
                out.push(format!(
                    "use a context of at most {c} tokens (--ctx {c}) to put every layer on the GPU"
                ));
            }
        }
        _ => {}
    }
    out.extend(kv_cache_hint(pl, p));
    out.extend(quantization_hint(pl, p));
    out.extend(swa_hint(pl, p));
    out
}

/// `pl`'s best plan at `n_ctx` had `request` been asked for instead.
fn best_with(pl: &Planner<'_>, request: &PlanRequest, n_ctx: u32) -> FitPlan {
    Planner {
        facts: pl.facts,
        request,
        hw: pl.hw,
    }
    .best(n_ctx)
}

/// The first cheaper KV cache type that makes the model fit, or puts more
/// layers on the GPU, with what it saves and gains.
fn kv_cache_hint(pl: &Planner<'_>, p: &FitPlan) -> Option<String> {
    let full_offload = p.n_layer + 1;
    let has_gpu = !pl.hw.gpus.is_empty();
    for kv in KvCacheType::ALL {
        let cheaper = pl.request.kv_type.ggml_type().type_size() * kv.ggml_type().block_size()
            > kv.ggml_type().type_size() * pl.request.kv_type.ggml_type().block_size();
        if !cheaper {
            continue;
        }
        let request = PlanRequest {
            kv_type: kv,
            ..pl.request.clone()
        };
        let alt = best_with(pl, &request, p.n_ctx_requested);
        let kv_now: u64 = p.cpu.kv_cache_bytes + p.gpus.iter().map(|g| g.kv_cache_bytes).sum::<u64>();
        let kv_alt: u64 = alt.cpu.kv_cache_bytes + alt.gpus.iter().map(|g| g.kv_cache_bytes).sum::<u64>();
        let better = (alt.fits() && !p.fits()) || (alt.fits() && alt.gpu_layers > p.gpu_layers);
        if better {
            let gain = if alt.n_gpu_layers == full_offload && has_gpu {
                "everything then fits on the GPU".to_string()
            } else if has_gpu && alt.gpu_layers > 0 {
                format!("{} of {} layers then fit on the GPU", alt.gpu_layers, p.n_layer)
            } else {
                "the model then fits".to_string()
            };
            return Some(format!(
                "a {kv} KV cache (--kv {kv}) needs {} less: {gain}",
                mib(kv_now - kv_alt)
            ));
        }
    }
    None
}

/// What a window-sized cache on sliding-window layers would save, when they
/// keep a full-size one and the saving is worth mentioning (16 MiB or more).
fn swa_hint(pl: &Planner<'_>, p: &FitPlan) -> Option<String> {
    if !p.swa_full || p.swa_layer_kv_bytes.is_none() {
        return None;
    }
    let request = PlanRequest {
        swa_full: false,
        ..pl.request.clone()
    };
    let alt = best_with(pl, &request, p.n_ctx_requested);
    let saved = p.total_bytes().saturating_sub(alt.total_bytes());
    (saved >= 16 * 1024 * 1024).then(|| {
        format!(
            "sliding-window layers keep a full-size KV cache (llama.cpp's swa_full); a window-sized cache would save {}",
            mib(saved)
        )
    })
}

/// The largest context (multiple of 256) for which `ok` holds. Memory grows
/// with the context, so `ok` holds up to some point and not beyond: a binary
/// search over multiples of 256.
pub(super) fn max_ctx_where(pl: &Planner<'_>, ok: impl Fn(u32) -> bool) -> Option<u32> {
    let steps = pl.ctx_limit() / CTX_PAD;
    if steps == 0 || !ok(CTX_PAD) {
        return None;
    }
    let (mut lo, mut hi) = (1, steps);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if ok(mid * CTX_PAD) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo * CTX_PAD)
}

/// How small the weights must be to fit (entirely on the GPU when there is
/// one, else in RAM), as a named quantization.
fn quantization_hint(pl: &Planner<'_>, p: &FitPlan) -> Option<String> {
    let weights_now = pl.facts.total_weights();
    let params = pl.facts.parameter_count;
    if params == 0 || weights_now == 0 {
        return None;
    }
    let room = if !pl.hw.gpus.is_empty() && p.verdict != Verdict::DoesNotFit {
        // With everything offloaded: what the GPUs have left after KV, compute and overhead.
        let all = pl.layout(p.n_ctx_requested, p.n_layer + 1);
        let others: u64 = all
            .gpus
            .iter()
            .map(|g| g.kv_cache_bytes + g.compute_bytes + g.overhead_bytes)
            .sum();
        let budget: u64 = all.gpus.iter().map(DevicePlan::budget_bytes).sum();
        // The input embedding stays in RAM whatever happens.
        (budget.saturating_sub(others) + pl.facts.token_embd_bytes).min(weights_now)
    } else {
        let gpu_weights: u64 = p
            .gpus
            .iter()
            .map(|g| g.budget_bytes().saturating_sub(g.total_bytes() - g.weights_bytes))
            .sum();
        let cpu_room = p
            .cpu
            .budget_bytes()
            .saturating_sub(p.cpu.total_bytes() - p.cpu.weights_bytes);
        (cpu_room + gpu_weights).min(weights_now)
    };
    if room >= weights_now {
        return None;
    }
    let bpw_now = weights_now as f64 * 8.0 / params as f64;
    let bpw_room = room as f64 * 8.0 / params as f64;
    let name = QUANTS
        .iter()
        .find(|(_, bpw)| *bpw <= bpw_room && *bpw < bpw_now - 0.1)
        .map(|(n, _)| *n);
    let target = if p.verdict == Verdict::DoesNotFit {
        "to fit"
    } else {
        "to fit entirely on the GPU"
    };
    Some(match name {
        Some(q) => format!(
            "a lower quantization {target}: weights of at most {} ({bpw_room:.1} bits per weight, now {bpw_now:.1}), e.g. {q}",
            mib(room)
        ),
        None => format!("no common quantization is small enough {target}: weights would have to be at most {}", mib(room)),
    })
}

impl FitPlan {
    /// The verdict in a few words: "fits on GPU", "partial offload: 20 of 33 layers on
    /// GPU", "CPU only", "does not fit".
    pub fn verdict_words(&self) -> String {
        match self.verdict {
            Verdict::FitsOnGpu => "fits on GPU".to_string(),
            Verdict::PartialOffload => {
                format!("partial offload: {} of {} layers on GPU", self.gpu_layers, self.n_layer)
            }
            Verdict::CpuOnly => "CPU only".to_string(),
            Verdict::DoesNotFit => "does not fit".to_string(),
        }
    }

    /// The verdict with the decode ceiling where one is known: "CPU only, up to 7.1
    /// tokens/s" (see [`crate::membw::cpu_decode_ceiling_tps`]).
    pub fn fit_words(&self, decode_ceiling_tps: Option<f64>) -> String {
        match decode_ceiling_tps {
            Some(tps) => format!("{}, up to {tps:.1} tokens/s", self.verdict_words()),
            None => self.verdict_words(),
        }
    }

    /// The plan in words: verdict and reason, each term in MiB per device,
    /// and what to change.
    pub fn explain(&self) -> String {
        let mut s = String::new();
        self.explain_settings(&mut s);
        self.explain_devices(&mut s);
        self.explain_notes(&mut s);
        s
    }

    /// The model, the context and cache asked for, the verdict and the sizes of one layer.
    fn explain_settings(&self, s: &mut String) {
        let verdict = self.verdict_words();
        let _ = writeln!(
            s,
            "{}{}",
            self.model,
            self.quantization
                .as_deref()
                .map(|q| format!(" ({q})"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            s,
            "context {} tokens{} (llama.cpp allocates {}), batch {}, KV cache {}{}",
            self.n_ctx_requested,
            self.n_ctx_train.map(|t| format!(" of {t} trained")).unwrap_or_default(),
            self.n_ctx,
            self.n_batch,
            self.kv_type,
            if self.swa_full && self.swa_layer_kv_bytes.is_some() {
                ", full-size sliding-window cache"
            } else {
                ""
            }
        );
        let _ = writeln!(s, "verdict: {verdict}: {}", self.reason);
        let _ = writeln!(
            s,
            "n_gpu_layers = {} (llama.cpp counts the output layer as one)",
            self.n_gpu_layers
        );
        let _ = writeln!(
            s,
            "per layer: weights {:.1} MiB, KV cache {:.1} MiB{}",
            self.layer_weights_bytes as f64 / MIB,
            self.layer_kv_bytes as f64 / MIB,
            self.swa_layer_kv_bytes
                .map(|b| format!(" ({:.1} MiB on sliding-window layers)", b as f64 / MIB))
                .unwrap_or_default()
        );
    }

    /// The table: each term in MiB per device, and what the numbers mean.
    fn explain_devices(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "{:<40} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "device", "layers", "weights", "KV", "compute", "overhead", "total", "budget"
        );
        for d in std::iter::once(&self.cpu).chain(&self.gpus) {
            let layers = format!("{}{}", d.layers, if d.output_layer { "+out" } else { "" });
            let _ = writeln!(
                s,
                "{:<40} {:>7} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0}{}",
                truncate(&d.device, 40),
                layers,
                d.weights_bytes as f64 / MIB,
                d.kv_cache_bytes as f64 / MIB,
                d.compute_bytes as f64 / MIB,
                d.overhead_bytes as f64 / MIB,
                d.total_bytes() as f64 / MIB,
                d.budget_bytes() as f64 / MIB,
                if d.fits() { "" } else { "  <- over" }
            );
        }
        let _ = writeln!(s, "(MiB; budget = free memory less headroom; CPU compute counts what use touches of the {:.0} MiB llama.cpp reserves)", self.cpu.compute_reserved_bytes as f64 / MIB);
    }

    /// The resident size, the context and sequences that fit, and what to change.
    fn explain_notes(&self, s: &mut String) {
        if self.cpu.reclaimable_bytes > 0 {
            let _ = writeln!(
                s,
                "the process's RSS will show {:.0} MiB more: file pages of weights the CPU backend repacked, reclaimed when memory runs short",
                self.cpu.reclaimable_bytes as f64 / MIB
            );
        }
        if let Some(c) = self.max_context {
            let _ = writeln!(s, "largest context with this split: {c} tokens");
        }
        if self.fits() {
            let n = self.parallel_sequences(crate::plan::SEQUENCES_SHOWN);
            let _ = writeln!(
                s,
                "sequences at once (hearth serve --parallel): {n}{} of {} tokens each, {:.0} MiB of KV cache each",
                if n == crate::plan::SEQUENCES_SHOWN {
                    " or more"
                } else {
                    ""
                },
                self.n_ctx,
                self.cpu
                    .kv_cache_bytes
                    .max(self.gpus.iter().map(|g| g.kv_cache_bytes).sum()) as f64
                    / MIB
            );
        }
        for tip in &self.suggestions {
            let _ = writeln!(s, "try: {tip}");
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}
