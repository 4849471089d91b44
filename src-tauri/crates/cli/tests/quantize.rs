//! `hearth quantize` on the real Gemma 3 270M: no F16 model is available here, so the
//! test makes one (Q4_K_M dequantized, whose weights F16 then holds exactly), quantizes
//! it to Q8_0 and Q4_0, and loads and runs each. Also: the refusals, a cancel, a full disk.
//! The full-disk test mounts a small tmpfs: it needs root, as `make test` and CI run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use hearth_core::SamplingParams;
use hearth_engine::{Engine, EngineConfig, GenerationRequest, Prompt};
use serde_json::Value;

fn quantize(source: &Path, target: &str, output: &Path, extra: &[&str]) -> Output {
    Command::new(hearth())
        .arg("quantize")
        .arg(source)
        .args(["--type", target, "--json", "-o"])
        .arg(output)
        .args(extra)
        .output()
        .expect("run hearth quantize")
}

/// The `plan` and `done` lines of a successful run.
fn lines(out: &Output) -> (Value, Value) {
    assert!(
        out.status.success(),
        "hearth quantize failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |name: &str| {
        events
            .iter()
            .find(|e| e["event"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} line in {events:?}"))
    };
    let progress: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "progress")
        .map(|e| e["done"].as_u64().unwrap())
        .collect();
    assert!(
        progress.len() > 10 && progress.windows(2).all(|w| w[0] < w[1]),
        "{progress:?}"
    );
    (find("plan"), find("done"))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Loads the file and generates a few tokens from a story opening.
fn runs(path: &Path) -> String {
    let engine = Engine::load(EngineConfig::new(path.to_path_buf()).with_n_ctx(512)).expect("loads");
    let out = engine
        .generate(GenerationRequest {
            prompt: Prompt::Text("Once upon a time, there was a".into()),
            params: SamplingParams::greedy(12),
        })
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(out.metrics.completion_tokens, 12, "{}: {:?}", path.display(), out.text);
    out.text
}

#[test]
fn a_family_made_from_f16_loads_runs_and_has_the_predicted_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let f16 = dir.path().join("gemma-F16.gguf");
    let (plan, done) = lines(&quantize(&base_model(), "F16", &f16, &["--allow-requantize"]));
    let mut sizes = vec![("F16", done["bytes"].as_u64().unwrap())];
    for (plan, done) in [(plan, done)].into_iter().chain(["Q8_0", "Q4_0"].map(|t| {
        let out = dir.path().join(format!("gemma-{t}.gguf"));
        let (plan, done) = lines(&quantize(&f16, t, &out, &[]));
        sizes.push((t, done["bytes"].as_u64().unwrap()));
        (plan, done)
    })) {
        let (predicted, bytes) = (
            plan["predicted_bytes"].as_f64().unwrap(),
            done["bytes"].as_f64().unwrap(),
        );
        assert!((bytes - predicted).abs() / bytes < 0.01, "{plan} vs {done}");
        assert_eq!(plan["predicted_bytes"], done["predicted_bytes"]);
        let output = PathBuf::from(done["output"].as_str().unwrap());
        assert_eq!(
            std::fs::metadata(&output).unwrap().len(),
            done["bytes"].as_u64().unwrap()
        );
        assert_eq!(done["tensors"], 236, "{done}");
        assert!(!runs(&output).trim().is_empty());
    }
    let size = |t: &str| sizes.iter().find(|(n, _)| *n == t).unwrap().1;
    assert!(size("Q4_0") < size("Q8_0") && size("Q8_0") < size("F16"), "{sizes:?}");
    // Only the finished files: no partial file left behind.
    assert_eq!(
        files_in(dir.path()),
        ["gemma-F16.gguf", "gemma-Q4_0.gguf", "gemma-Q8_0.gguf"]
    );

    // What each costs against the F16, on the start of the default text (quick).
    let text = dir.path().join("text.txt");
    std::fs::write(&text, &DEFAULT_TEXT[..9000]).unwrap();
    let f16_vs_f16 = eval(&f16, &f16, &text);
    assert_eq!(f16_vs_f16["kl_mean"], 0.0, "{f16_vs_f16}");
    assert_eq!(f16_vs_f16["same_top_percent"], 100.0, "{f16_vs_f16}");
    assert_eq!(f16_vs_f16["perplexity"], f16_vs_f16["reference_perplexity"]);
    let q8 = eval(&dir.path().join("gemma-Q8_0.gguf"), &f16, &text);
    let q4 = eval(&dir.path().join("gemma-Q4_0.gguf"), &f16, &text);
    let kl = |v: &Value| v["kl_mean"].as_f64().unwrap();
    assert!(0.0 < kl(&q8) && kl(&q8) < kl(&q4), "Q8_0 {q8}\nQ4_0 {q4}");
    assert!(q4["windows"].as_u64().unwrap() >= 3, "{q4}");
    // The same figures computed here from the logits the engine returns.
    let direct = direct_eval(
        &dir.path().join("gemma-Q4_0.gguf"),
        &f16,
        &std::fs::read_to_string(&text).unwrap(),
    );
    for (key, value) in [
        ("perplexity", direct.0),
        ("reference_perplexity", direct.1),
        ("kl_mean", direct.2),
        ("same_top_percent", direct.3),
    ] {
        let reported = q4[key].as_f64().unwrap();
        assert!(
            (reported - value).abs() <= 1e-4 * value.abs().max(1.0),
            "{key}: hearth eval says {reported}, the direct computation {value}"
        );
    }

    // Small models fit twice here, so the planner ran the reference beside the model.
    assert_eq!(q4["reference_run"]["mode"], "together", "{q4}");
    // The two-pass way, for models too large to load twice: the reference alone first,
    // its top tokens spooled to a temporary file, then the model alone. Both passes run
    // the same windows as the together run, so perplexities and the top-token agreement
    // are the same; the KL divergence lumps the tokens left out (at most 8,192 kept per
    // position) into one outcome, which can only lower it: by -0.17% here (Gemma's flat
    // distributions over 262,144 tokens leave up to 1.4% of the probability out).
    let spooled = eval_with(
        &dir.path().join("gemma-Q4_0.gguf"),
        &f16,
        &text,
        &["--reference-pass", "spooled", "--no-record"],
    );
    let run = &spooled["reference_run"];
    assert_eq!(run["mode"], "spooled", "{spooled}");
    assert!(run["max_tail_mass"].as_f64().unwrap() < 0.05, "{run}");
    assert!(run["spool_bytes"].as_u64().unwrap() > 0, "{run}");
    for key in [
        "perplexity",
        "reference_perplexity",
        "same_top_percent",
        "tokens_scored",
    ] {
        assert_eq!(spooled[key], q4[key], "{key}: spooled {spooled}\ntogether {q4}");
    }
    let (together_kl, spooled_kl) = (kl(&q4), kl(&spooled));
    assert!(
        spooled_kl <= together_kl + 1e-6 && (together_kl - spooled_kl) / together_kl < 0.01,
        "KL: together {together_kl}, spooled {spooled_kl}"
    );

    // Each measurement was recorded: `hearth models` shows the latest beside each file.
    let out = Command::new(hearth())
        .env("HEARTH_DATA_DIR", dir.path())
        .env("HEARTH_MODELS_DIR", dir.path())
        .args(["models", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let measured = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap()["measured"].clone();
    let q4_card = measured("gemma-Q4_0.gguf");
    assert_eq!(q4_card["perplexity"], q4["perplexity"], "{q4_card}");
    assert_eq!(q4_card["reference"]["kl_mean"], q4["kl_mean"], "{q4_card}");
    assert_eq!(q4_card["reference"]["name"], "gemma-F16.gguf", "{q4_card}");
    assert_eq!(q4_card["quant_type"], "Q4_0", "{q4_card}");
    assert_eq!(
        q4_card["file"]["bytes"],
        sizes.iter().find(|(n, _)| *n == "Q4_0").unwrap().1
    );
    assert_eq!(measured("gemma-F16.gguf")["reference"]["same_top_percent"], 100.0);
    let text_out = Command::new(hearth())
        .env("HEARTH_DATA_DIR", dir.path())
        .env("HEARTH_MODELS_DIR", dir.path())
        .arg("models")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&text_out.stdout);
    let q4_line = table.lines().find(|l| l.starts_with("gemma-Q4_0.gguf")).unwrap();
    assert!(q4_line.contains("vs gemma-F16.gguf: KL"), "{table}");
}

const DEFAULT_TEXT: &str = include_str!("../../../../data/eval/pride-and-prejudice-1-12.txt");

/// `hearth eval --json`, recording into the database of the model's folder.
fn eval(model: &Path, reference: &Path, text: &Path) -> Value {
    eval_with(model, reference, text, &[])
}

fn eval_with(model: &Path, reference: &Path, text: &Path, extra: &[&str]) -> Value {
    let out = Command::new(hearth())
        .env("HEARTH_DATA_DIR", model.parent().unwrap())
        .arg("eval")
        .arg(model)
        .arg("--reference")
        .arg(reference)
        .arg("--text")
        .arg(text)
        .arg("--json")
        .args(extra)
        .output()
        .expect("run hearth eval");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Perplexity of both, mean KL(reference || model) and same-top %, written out here:
/// llama-perplexity's windows (512 tokens, the start token first, the second half
/// scored), softmax in f64 of the raw logits.
fn direct_eval(model: &Path, reference: &Path, text: &str) -> (f64, f64, f64, f64) {
    let load = |p: &Path| Engine::load(EngineConfig::new(p.to_path_buf()).with_n_ctx(512)).unwrap();
    let (m, r) = (load(model), load(reference));
    let tokens = m.tokenize(Prompt::Text(text.into())).unwrap();
    let bos = m.info().bos_token;
    let log_softmax = |x: &[f32]| -> Vec<f64> {
        let max = x.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
        let lse = max + x.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
        x.iter().map(|&v| v as f64 - lse).collect()
    };
    let (mut nll, mut ref_nll, mut kl, mut same, mut n) = (0.0, 0.0, 0.0, 0usize, 0usize);
    for chunk in tokens.chunks_exact(512) {
        let mut window = chunk.to_vec();
        if let Some(bos) = bos {
            window[0] = bos;
        }
        let (rm, rr) = (
            m.score(window.clone(), 256).unwrap(),
            r.score(window.clone(), 256).unwrap(),
        );
        for pos in 256..511 {
            let (lm, lr) = (
                log_softmax(&rm.recv().unwrap().unwrap()),
                log_softmax(&rr.recv().unwrap().unwrap()),
            );
            let next = window[pos + 1] as usize;
            nll -= lm[next];
            ref_nll -= lr[next];
            kl += lr.iter().zip(&lm).map(|(p, q)| p.exp() * (p - q)).sum::<f64>();
            let top = |v: &[f64]| (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b });
            same += usize::from(top(&lm) == top(&lr));
            n += 1;
        }
    }
    let n = n as f64;
    ((nll / n).exp(), (ref_nll / n).exp(), kl / n, 100.0 * same as f64 / n)
}

fn fails(out: &Output, expected: &str) -> String {
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains(expected), "expected {expected:?} in: {stderr}");
    stderr
}

#[test]
fn bad_requests_are_refused_each_with_its_own_words_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    // Already quantized, without --allow-requantize.
    let text = fails(&quantize(&base_model(), "Q8_0", &out, &[]), "--allow-requantize");
    assert!(
        text.contains("already quantized (Q4_K_M)") && text.contains("compounds"),
        "{text}"
    );
    // A type llama.cpp has but Hearth does not offer.
    let text = fails(
        &quantize(&base_model(), "Q3_K_S", &out, &[]),
        "not a type Hearth quantizes to",
    );
    assert!(text.contains("Q4_K_M") && text.contains("F16"), "{text}");
    // A missing source.
    let missing = dir.path().join("missing.gguf");
    fails(&quantize(&missing, "Q8_0", &out, &[]), "does not exist");
    // A corrupt source: the real file cut short.
    let corrupt = dir.path().join("corrupt.gguf");
    let bytes = std::fs::read(base_model()).unwrap();
    std::fs::write(&corrupt, &bytes[..1_000_000]).unwrap();
    let text = fails(&quantize(&corrupt, "Q8_0", &out, &["--allow-requantize"]), "cut short");
    assert!(text.contains("corrupt.gguf"), "{text}");
    // An output that exists is not overwritten.
    std::fs::write(&out, b"keep me").unwrap();
    fails(
        &quantize(&base_model(), "Q8_0", &out, &["--allow-requantize"]),
        "already exists",
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    assert_eq!(files_in(dir.path()), ["corrupt.gguf", "out.gguf"]);
}

#[test]
fn ctrl_c_mid_quantization_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gemma-F16.gguf");
    let mut child = Command::new(hearth())
        .arg("quantize")
        .arg(base_model())
        .args(["--type", "F16", "--allow-requantize", "--json", "--threads", "1", "-o"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // Wait until the real run is under way (past the plan, some tensors done).
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the run ended before any progress"
        );
        let event: Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "progress" && event["done"].as_u64().unwrap() >= 3 {
            break;
        }
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let rest = child.wait_with_output().unwrap();
    assert!(!rest.status.success());
    let stderr = String::from_utf8_lossy(&rest.stderr);
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert!(files_in(dir.path()).is_empty(), "{:?}", files_in(dir.path()));
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_disk_too_small_is_refused_before_writing_with_the_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let point = dir.path().join("small");
    std::fs::create_dir_all(&point).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
        .arg(&point)
        .output()
        .unwrap();
    assert!(
        mounted.status.success(),
        "a small disk needs mount rights (run as root, as `make test` and CI do): {}",
        String::from_utf8_lossy(&mounted.stderr)
    );
    let _disk = Tmpfs(point.clone());
    let out = point.join("gemma-F16.gguf");
    let text = fails(
        &quantize(&base_model(), "F16", &out, &["--allow-requantize"]),
        "not enough free space",
    );
    // The sizes, in words: the F16 file needs about 548 MB (543 MB and 1% to spare);
    // the empty 64 MiB disk has 67.1 MB free.
    assert!(
        text.contains("needs about 54") && text.contains("67.1 MB is free"),
        "{text}"
    );
    assert!(files_in(&point).is_empty());
}
