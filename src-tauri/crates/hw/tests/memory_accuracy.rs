//! The fit planner's RAM prediction against real loads of the two default
//! models on the CPU, at several context lengths.
//!
//! Each load runs in a fresh child process (this binary re-executed with
//! `HEARTH_HW_MEM_CHILD` set), so the resident memory it measures is that one
//! load's and not what earlier loads left in the allocator. The child measures
//! RssAnon + RssFile (heap and KV cache, plus the mmapped weights the warm-up
//! touched) before `Engine::load` and after it returns, and again after one
//! prompt of a few hundred tokens (the working set of real use). It also passes
//! back llama.cpp's own buffer-size log lines, printed with the table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use hearth_hw::plan::{plan, PlanRequest};
use hearth_hw::snapshot::{MemoryInfo, Probe, Snapshot};

const CHILD_ENV: &str = "HEARTH_HW_MEM_CHILD";
const RESULT_TAG: &str = "HEARTH_HW_MEM_RESULT";
const TOLERANCE: f64 = 0.10;
const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    if !selected_by_harness_args() {
        return;
    }
    parent();
}

/// `cargo test` passes libtest's arguments: honour a name filter, `--skip`
/// and `--list` like the default harness, and ignore the rest.
fn selected_by_harness_args() -> bool {
    const NAME: &str = "memory_accuracy";
    let (mut filters, mut skips, mut list) = (Vec::new(), Vec::new(), false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--list" => list = true,
            "--skip" => skips.extend(args.next()),
            // Options whose value is the next argument.
            "--test-threads" | "--format" | "--color" | "--logfile" | "--shuffle-seed" | "-Z" => {
                args.next();
            }
            _ if a.starts_with('-') => {}
            _ => filters.push(a),
        }
    }
    let selected = (filters.is_empty() || filters.iter().any(|f| NAME.contains(f.as_str())))
        && !skips.iter().any(|s| NAME.contains(s.as_str()));
    if list {
        if selected {
            println!("{NAME}: test");
        }
        return false;
    }
    selected
}

struct Case {
    file: &'static str,
    contexts: &'static [u32],
}

fn parent() {
    let cases = [
        Case {
            file: hearth_core::paths::DEFAULT_CHAT_MODEL,
            contexts: &[512, 4096, 8192],
        },
        Case {
            file: hearth_core::paths::DEFAULT_BASE_MODEL,
            contexts: &[512, 4096, 32768],
        },
    ];
    let mut failures = Vec::new();
    let machine = cpu_only_machine();
    println!("CPU SIMD: {}", machine.cpu.simd.join(" "));
    println!(
        "{:<32} {:>6} | {:>7} {:>7} {:>7} {:>8} {:>7} | {:>9} | {:>9} {:>7} | {:>11} {:>7}",
        "model (MiB)",
        "n_ctx",
        "weights",
        "KV",
        "compute",
        "overhead",
        "repack",
        "predicted",
        "load",
        "error",
        "+prompt",
        "error"
    );
    for case in &cases {
        let path = hearth_core::paths::models_dir().join(case.file);
        assert!(
            path.exists(),
            "{} is missing: run `make models` (this test uses the real default models)",
            path.display()
        );
        let info = hearth_gguf::read(&path).expect("model header reads");
        for &n_ctx in case.contexts {
            let m = measure(&path, n_ctx);
            let p = plan(
                &info,
                &PlanRequest {
                    n_ctx,
                    ..PlanRequest::default()
                },
                &machine,
            );
            let cpu = &p.cpu;
            // RSS includes the repacked weights' file pages until the kernel reclaims them.
            let predicted = cpu.resident_bytes() as f64;
            let err = |measured: u64| (predicted - measured as f64) / measured as f64;
            let (e_load, e_prompt) = (err(m.load_growth), err(m.prompt_growth));
            println!(
                "{:<32} {:>6} | {:>7.1} {:>7.1} {:>7.1} {:>8.1} {:>7.1} | {:>9.1} | {:>9.1} {:>+6.1}% | {:>11.1} {:>+6.1}%",
                case.file,
                n_ctx,
                cpu.weights_bytes as f64 / MIB,
                cpu.kv_cache_bytes as f64 / MIB,
                cpu.compute_bytes as f64 / MIB,
                cpu.overhead_bytes as f64 / MIB,
                cpu.reclaimable_bytes as f64 / MIB,
                predicted / MIB,
                m.load_growth as f64 / MIB,
                100.0 * e_load,
                m.prompt_growth as f64 / MIB,
                100.0 * e_prompt,
            );
            println!("    +prompt: after a {}-token prompt", m.prompt_tokens);
            for line in &m.llama_lines {
                println!("    llama.cpp: {line}");
            }
            for (what, e, measured) in [
                ("after load", e_load, m.load_growth),
                ("after a prompt", e_prompt, m.prompt_growth),
            ] {
                if e.abs() > TOLERANCE {
                    failures.push(format!(
                        "{} n_ctx {n_ctx} {what}: predicted {:.1} MiB, measured {:.1} MiB ({:+.1}%)",
                        case.file,
                        predicted / MIB,
                        measured as f64 / MIB,
                        100.0 * e
                    ));
                }
            }
            // The KV cache is arithmetic, not estimation: it must agree with
            // llama.cpp to its printed precision (two decimals per cache).
            let kv = m.llama_kv_mib.expect("llama.cpp logged its KV buffer size");
            let ours = cpu.kv_cache_bytes as f64 / MIB;
            assert!(
                (ours - kv).abs() < 0.011,
                "{} n_ctx {n_ctx}: KV cache {ours:.3} MiB, llama.cpp {kv:.2} MiB",
                case.file
            );
            // So is the set of repacked weights.
            let repack = cpu.reclaimable_bytes as f64 / MIB;
            assert!(
                (repack - m.llama_repack_mib).abs() <= 0.01 * m.llama_repack_mib.max(1.0),
                "{} n_ctx {n_ctx}: repacked weights {repack:.2} MiB, llama.cpp {:.2} MiB",
                case.file,
                m.llama_repack_mib
            );
            // The compute buffer llama.cpp reserves is what a GPU commits: the
            // GPU plan rests on this estimate.
            let compute = m.llama_compute_mib.expect("llama.cpp logged its compute buffer size");
            let reserved = cpu.compute_reserved_bytes as f64 / MIB;
            assert!(
                (reserved - compute).abs() <= 0.02 * compute,
                "{} n_ctx {n_ctx}: reserved compute {reserved:.2} MiB, llama.cpp {compute:.2} MiB",
                case.file
            );
        }
    }
    assert!(
        failures.is_empty(),
        "RAM predictions off by more than ±10%:\n{}",
        failures.join("\n")
    );
}

/// This machine's CPU (its SIMD extensions decide which weights llama.cpp
/// repacks) with room for everything: the test checks the prediction, not
/// the verdict.
fn cpu_only_machine() -> Snapshot {
    let mut hw = Probe::new().sample();
    hw.gpus.clear();
    hw.memory = MemoryInfo {
        total_bytes: 64 << 30,
        available_bytes: 60 << 30,
    };
    hw
}

struct Measurement {
    load_growth: u64,
    prompt_growth: u64,
    prompt_tokens: u32,
    llama_kv_mib: Option<f64>,
    llama_compute_mib: Option<f64>,
    llama_repack_mib: f64,
    llama_lines: Vec<String>,
}

fn measure(path: &Path, n_ctx: u32) -> Measurement {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .env(CHILD_ENV, format!("{n_ctx}|{}", path.display()))
        .output()
        .expect("child process runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child for {} n_ctx {n_ctx} failed: {}\n{stdout}\n{stderr}",
        path.display(),
        out.status
    );
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT_TAG))
        .unwrap_or_else(|| panic!("no result from child:\n{stdout}\n{stderr}"));
    let v: serde_json::Value = serde_json::from_str(result.trim()).expect("child result is JSON");
    let field = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("child result lacks {k}: {v}"));
    let llama_lines: Vec<String> = stderr
        .lines()
        .filter(|l| l.contains("buffer size"))
        .map(|l| l.split("llama-cpp-2:").last().unwrap_or(l).trim().to_string())
        .collect();
    Measurement {
        load_growth: field("after_load").saturating_sub(field("before")),
        prompt_growth: field("after_prompt").saturating_sub(field("before")),
        prompt_tokens: u32::try_from(field("prompt_tokens")).unwrap_or(0),
        llama_kv_mib: logged_mib(&stderr, "CPU KV buffer size"),
        llama_compute_mib: logged_mib(&stderr, "CPU compute buffer size"),
        llama_repack_mib: logged_mib(&stderr, "CPU_REPACK model buffer size").unwrap_or(0.0),
        llama_lines,
    }
}

/// Sum of llama.cpp's `<label> = X MiB` figures over all its log lines (an
/// iSWA model logs one KV buffer per cache); `None` when there is none.
fn logged_mib(stderr: &str, label: &str) -> Option<f64> {
    let sizes: Vec<f64> = stderr
        .lines()
        .filter_map(|l| l.split(label).nth(1))
        .filter_map(|rest| {
            rest.trim_start()
                .strip_prefix('=')?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    (!sizes.is_empty()).then(|| sizes.iter().sum())
}

fn resident() -> u64 {
    let kib = |key: &str| common::proc_kib("/proc/self/status", key).unwrap_or(0);
    (kib("RssAnon") + kib("RssFile")) * 1024
}

fn child(spec: &str) {
    let (n_ctx, path) = spec.split_once('|').expect("spec is n_ctx|path");
    let n_ctx: u32 = n_ctx.parse().expect("n_ctx");
    let path = PathBuf::from(path);
    // llama.cpp's info lines (buffer sizes) go to stderr for the parent.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter("info")
        .init();

    // llama.cpp and the GPU runtimes it loads start once per process, not per model:
    // started before the measurement, as a model loaded in a running app finds them.
    hearth_engine::devices().expect("llama.cpp starts");
    let before = resident();
    // The plan is for the whole context, the most the engine's KV cache grows to: load
    // it all up front (the engine would otherwise start smaller and grow on demand).
    let config = hearth_engine::EngineConfig::new(&path)
        .with_n_ctx(n_ctx)
        .with_full_context();
    let engine = hearth_engine::Engine::load(config).expect("model loads");
    let after_load = resident();

    // A prompt of a few hundred tokens (one batch), as real use sends.
    let target = (n_ctx / 2).min(400);
    let mut text = String::new();
    let mut tokens = 0;
    while tokens < target {
        text.push_str("The quick brown fox jumps over the lazy dog near the river bank. ");
        tokens = engine
            .count_tokens(hearth_engine::Prompt::Text(text.clone()))
            .expect("tokenize");
    }
    let request = hearth_engine::GenerationRequest {
        prompt: hearth_engine::Prompt::Text(text),
        params: hearth_core::SamplingParams::greedy(1),
    };
    engine.generate_text(request).expect("generation runs");
    let after_prompt = resident();
    println!(
        "{RESULT_TAG} {{\"before\":{before},\"after_load\":{after_load},\"after_prompt\":{after_prompt},\"prompt_tokens\":{tokens}}}"
    );
}
