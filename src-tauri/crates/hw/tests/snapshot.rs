//! The snapshot on this machine against /proc, its JSON schema, and the sampler.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use hearth_hw::{Sampler, Snapshot};

/// Logical CPUs and distinct (physical id, core id) pairs, read here
/// independently of the crate's parser.
fn proc_cpu_counts() -> (u32, u32) {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let mut logical = 0;
    let mut cores = BTreeSet::new();
    let mut package = String::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        match k.trim() {
            "processor" => logical += 1,
            "physical id" => package = v.trim().to_string(),
            "core id" => {
                cores.insert((package.clone(), v.trim().to_string()));
            }
            _ => {}
        }
    }
    let physical = if cores.is_empty() { logical } else { cores.len() as u32 };
    (logical, physical)
}

fn meminfo_kib(key: &str) -> u64 {
    common::proc_kib("/proc/meminfo", key).unwrap_or_else(|| panic!("{key} in /proc/meminfo"))
}

#[test]
fn cores_and_ram_agree_with_proc() {
    let s = Snapshot::capture();
    let (logical, physical) = proc_cpu_counts();
    assert_eq!(s.cpu.logical_cores, logical);
    assert_eq!(s.cpu.physical_cores, physical);
    assert!(!s.cpu.model.is_empty());
    assert_eq!(s.memory.total_bytes, meminfo_kib("MemTotal") * 1024);
    // Available memory moves while other processes run: same within 5%.
    let avail = meminfo_kib("MemAvailable") * 1024;
    let diff = s.memory.available_bytes.abs_diff(avail) as f64 / avail as f64;
    assert!(
        diff < 0.05,
        "available {} vs /proc/meminfo {avail}",
        s.memory.available_bytes
    );
    assert!(s.memory.available_bytes <= s.memory.total_bytes);
    // This process: resident, and RssAnon + RssFile (+ RssShmem) make up VmRSS.
    assert!(s.process.rss_bytes > 0);
    assert_eq!(s.process.pid, std::process::id());
    let parts = s.process.rss_anon_bytes.unwrap() + s.process.rss_file_bytes.unwrap();
    assert!(parts <= s.process.rss_bytes && parts + (64 << 20) >= s.process.rss_bytes);
}

#[test]
fn simd_flags_come_from_cpuinfo() {
    let s = Snapshot::capture();
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let flags: BTreeSet<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("flags").or_else(|| l.strip_prefix("Features")))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.split_whitespace().collect())
        .unwrap_or_default();
    for f in &s.cpu.simd {
        let kernel = match f.as_str() {
            "sse3" => "pni",
            "neon" => "asimd",
            "neon_fp16" => "asimdhp",
            "dotprod" => "asimddp",
            other => other,
        };
        assert!(flags.contains(kernel), "{f} reported but /proc/cpuinfo lacks {kernel}");
    }
    for must in ["avx2", "avx512f", "fma", "f16c"] {
        assert_eq!(flags.contains(must), s.cpu.simd.iter().any(|f| f == must), "{must}");
    }
}

#[test]
fn no_gpu_here_means_an_empty_list_and_a_note() {
    let nvidia = Path::new("/dev/nvidiactl").exists();
    let amd = std::fs::read_dir("/sys/class/drm")
        .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.path().join("device/mem_info_vram_total").exists())));
    let s = Snapshot::capture();
    if nvidia || amd {
        assert!(
            !s.gpus.is_empty(),
            "a GPU driver is present but no GPU was listed: {:?}",
            s.notes
        );
        return;
    }
    assert!(s.gpus.is_empty(), "{:?}", s.gpus);
    assert!(s.notes.iter().any(|n| n.starts_with("NVIDIA:")), "{:?}", s.notes);
}

/// Every key path in a JSON value (`gpus[].name`), arrays' elements merged.
fn key_paths(v: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone());
                key_paths(v, &path, out);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                key_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn json_schema_is_stable() {
    // This machine (no GPU) and a recorded one with a GPU, so GPU keys are covered.
    let live = serde_json::to_value(Snapshot::capture()).unwrap();
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/profiles/rtx4090_24gb.json"))
        .unwrap();
    let recorded: Snapshot = serde_json::from_str(&text).unwrap();
    let mut keys = BTreeSet::new();
    key_paths(&live, "", &mut keys);
    key_paths(&serde_json::to_value(&recorded).unwrap(), "", &mut keys);
    let expected_text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshot_keys.txt")).unwrap();
    let expected: BTreeSet<String> = expected_text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let added: Vec<_> = keys.difference(&expected).collect();
    let removed: Vec<_> = expected.difference(&keys).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "snapshot schema changed (update tests/snapshot_keys.txt and SCHEMA_VERSION): added {added:?}, removed {removed:?}"
    );
    // Unknown values are null, never missing: the same keys with or without a GPU.
    assert!(live["process"]["rss_anon_bytes"].is_u64());
    assert!(live["gpus"].is_array());
}

#[test]
fn sampler_keeps_the_newest_snapshots_in_order() {
    let sampler = Sampler::start(Duration::from_millis(20), 5).unwrap();
    // A hang detector: 8 samples at 20 ms take 0.2 s.
    assert!(sampler.wait_for_samples(8, Duration::from_secs(60)) >= 8);
    let history = sampler.history();
    assert_eq!(history.len(), 5);
    assert!(history.windows(2).all(|w| w[0].taken_at_ms <= w[1].taken_at_ms));
    let latest = sampler.latest().unwrap();
    assert!(latest.taken_at_ms >= history[4].taken_at_ms);
    assert!(sampler.samples() >= 8);
}

#[test]
fn sampler_costs_under_one_percent_of_a_core_at_one_hertz() {
    // Sample fast for a short while to measure the cost of one snapshot, then
    // scale to the default rate: at 1 Hz, under 1% of a core means under 10 ms.
    let sampler = Sampler::start(Duration::from_millis(20), 4).unwrap();
    // A hang detector: 40 samples at 20 ms take 0.8 s.
    sampler.wait_for_samples(40, Duration::from_secs(60));
    let o = sampler.overhead();
    println!("{o:?}");
    assert!(o.samples >= 40);
    assert!(o.ms_per_sample > 0.0, "{o:?}");
    // Scheduler CPU time, what the thread really consumed per sample; not the wall
    // time of a sample (`ms_per_sample`), which a busy machine stretches while the
    // thread waits for a core, without it costing anything more.
    let cpu = o
        .cpu_secs
        .expect("the sampler thread's CPU time (Linux: /proc/thread-self/schedstat)");
    let per_sample_ms = 1000.0 * cpu / (o.samples - 1) as f64;
    assert!(per_sample_ms < 10.0, "{o:?}");
}

#[test]
fn dropping_the_sampler_stops_it_at_once() {
    // An hour's interval: a drop that waited for the next tick would take an hour.
    // It runs on a thread so that the test fails after 60 s instead of hanging; the
    // 60 s is a hang detector (a prompt drop takes microseconds), not a speed claim.
    let sampler = Sampler::start(Duration::from_secs(3600), 2).unwrap();
    assert_eq!(sampler.wait_for_samples(1, Duration::from_secs(60)), 1);
    let (done, dropped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(sampler);
        let _ = done.send(());
    });
    dropped
        .recv_timeout(Duration::from_secs(60))
        .expect("dropping the sampler waited for its next tick");
}

#[test]
fn bad_sampler_settings_are_refused() {
    assert!(Sampler::start(Duration::from_millis(1), 10).is_err());
    assert!(Sampler::start(Duration::from_secs(1), 0).is_err());
}
