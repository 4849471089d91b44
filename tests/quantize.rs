//! Quantize… through the app's commands on the real models (`make models`): the plan
//! before anything is written, the quantization and its measurement in this package's
//! own `hearth-app quantize-worker` and `measure-worker`, progress on the channel, the
//! measurement in the store and on the model list; refusals and a cancel that leaves
//! nothing behind.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{invoke_on, scripted, Harness};
use serde_json::{json, Value};

/// An installed default model, linked into the harness's models folder.
fn install(h: &Harness, name: &str) -> PathBuf {
    let source = hearth_core::paths::models_dir().join(name);
    assert!(source.exists(), "{} is missing: run `make models`", source.display());
    let dir = common::paths(&h.dir).models_dir;
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join(name);
    std::fs::copy(&source, &target).unwrap();
    target
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn quantize_predicts_runs_with_progress_and_the_list_shows_the_measurement() {
    let h = scripted();
    let source = install(&h, "SmolLM2-135M-Instruct-Q4_1.gguf");
    let types = h.invoke("quantize_types", json!({})).unwrap();
    assert_eq!(types, json!(["F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0"]));

    let plan = h
        .invoke(
            "plan_quantization",
            json!({ "model": "SmolLM2-135M-Instruct-Q4_1.gguf", "target": "Q8_0" }),
        )
        .unwrap();
    assert_eq!(plan["output"], "SmolLM2-135M-Instruct-Q8_0.gguf");
    assert_eq!(plan["sourceType"], "Q4_1");
    assert_eq!(plan["requantize"], true);
    assert_eq!(plan["enoughSpace"], true);
    assert_eq!(plan["fit"], "runs on the CPU", "no GPU on these machines: {plan}");
    assert_eq!(
        plan["sourceBytes"].as_u64().unwrap(),
        std::fs::metadata(&source).unwrap().len()
    );
    let predicted = plan["predictedBytes"].as_f64().unwrap();
    assert!(
        predicted > plan["sourceBytes"].as_f64().unwrap(),
        "Q8_0 is larger than Q4_1: {plan}"
    );
    // The plan wrote nothing.
    assert_eq!(names(source.parent().unwrap()), ["SmolLM2-135M-Instruct-Q4_1.gguf"]);

    // An already-quantized source needs consent.
    let refused = h
        .invoke(
            "quantize_model",
            json!({ "model": "SmolLM2-135M-Instruct-Q4_1.gguf", "target": "Q8_0", "allowRequantize": false, "onEvent": h.channel().1 }),
        )
        .unwrap_err();
    assert_eq!(refused["code"], "already_quantized", "{refused}");
    let unknown = h
        .invoke(
            "plan_quantization",
            json!({ "model": "SmolLM2-135M-Instruct-Q4_1.gguf", "target": "Q3_K_XS" }),
        )
        .unwrap_err();
    assert_eq!(unknown["code"], "invalid_type", "{unknown}");

    let (id, channel) = h.channel();
    let done = h
        .invoke(
            "quantize_model",
            json!({ "model": "SmolLM2-135M-Instruct-Q4_1.gguf", "target": "Q8_0", "allowRequantize": true, "onEvent": channel }),
        )
        .unwrap();
    let model = &done["model"];
    assert_eq!(model["name"], "SmolLM2-135M-Instruct-Q8_0.gguf");
    assert_eq!(model["quantization"], "Q8_0");
    let bytes = model["sizeBytes"].as_f64().unwrap();
    assert!(
        (bytes - predicted).abs() / bytes < 0.01,
        "{bytes} vs predicted {predicted}"
    );
    let measured = &model["measured"];
    assert_eq!(measured["referenceName"], "SmolLM2-135M-Instruct-Q4_1.gguf", "{done}");
    let (kl, same) = (
        measured["klMean"].as_f64().unwrap(),
        measured["sameTopPercent"].as_f64().unwrap(),
    );
    // Q8_0 of a Q4_1 holds nearly the same weights: close, but not the same numbers.
    assert!(kl > 0.0 && kl < 0.05, "{measured}");
    assert!(same > 90.0 && same <= 100.0, "{measured}");
    assert!(measured["tokensScored"].as_u64().unwrap() >= 1024, "{measured}");
    let summary = done["summary"].as_str().unwrap();
    assert!(summary.starts_with("Q8_0: 1."), "{summary}");
    assert!(summary.contains("larger than Q4_1"), "{summary}");
    assert!(
        summary.contains(&format!("top token same as Q4_1 in {same:.0}% of positions")),
        "{summary}"
    );

    // Progress: tensors in order to the last, then windows in order to the last.
    let events: Vec<Value> = h.received(id).into_iter().map(|r| r.message).collect();
    let phase = |p: &str| -> Vec<(u64, u64)> {
        events
            .iter()
            .filter(|e| e["phase"] == p)
            .map(|e| (e["done"].as_u64().unwrap(), e["total"].as_u64().unwrap()))
            .collect()
    };
    let (quantizing, measuring) = (phase("quantizing"), phase("measuring"));
    assert!(quantizing.len() > 10, "{events:?}");
    assert!(quantizing.windows(2).all(|w| w[0].0 < w[1].0), "{quantizing:?}");
    assert_eq!(quantizing.last().unwrap().0, quantizing.last().unwrap().1);
    assert!(!measuring.is_empty(), "{events:?}");
    assert_eq!(measuring.last().unwrap().0, measuring.last().unwrap().1);
    let last_quantizing = events.iter().rposition(|e| e["phase"] == "quantizing").unwrap();
    let first_measuring = events.iter().position(|e| e["phase"] == "measuring").unwrap();
    assert!(last_quantizing < first_measuring);

    // The list shows the new file with the same measurement (from the store).
    let listed = h.invoke("list_models", json!({})).unwrap();
    let card = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "SmolLM2-135M-Instruct-Q8_0.gguf")
        .unwrap()
        .clone();
    assert_eq!(card["measured"], *measured);
    let evals = h
        .state()
        .manager
        .store()
        .blocking()
        .model_evals(
            &hearth_store::ModelFile::identify(
                &common::paths(&h.dir).models_dir.join("SmolLM2-135M-Instruct-Q8_0.gguf"),
            )
            .unwrap()
            .hash,
        )
        .unwrap();
    assert_eq!(evals.len(), 1);
    assert_eq!(
        names(source.parent().unwrap()),
        ["SmolLM2-135M-Instruct-Q4_1.gguf", "SmolLM2-135M-Instruct-Q8_0.gguf"]
    );
    // The output exists now: asking again is refused, not overwritten.
    let exists = h
        .invoke(
            "plan_quantization",
            json!({ "model": "SmolLM2-135M-Instruct-Q4_1.gguf", "target": "Q8_0" }),
        )
        .unwrap_err();
    assert!(
        exists["message"].as_str().unwrap().contains("already exists"),
        "{exists}"
    );
}

#[test]
fn cancel_mid_quantization_leaves_nothing_and_a_missing_or_corrupt_source_is_refused() {
    let h = scripted();
    let source = install(&h, "gemma-3-270m-Q4_K_M.gguf");
    let dir = source.parent().unwrap().to_path_buf();
    let (id, channel) = h.channel();
    let webview = h.webview.clone();
    let running = std::thread::spawn(move || {
        invoke_on(
            &webview,
            "quantize_model",
            json!({ "model": "gemma-3-270m-Q4_K_M.gguf", "target": "F16", "allowRequantize": true, "onEvent": channel }),
        )
    });
    let started = Instant::now();
    while !h
        .received(id)
        .iter()
        .any(|r| r.message["done"].as_u64().unwrap_or(0) >= 3)
    {
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    // One at a time.
    let second = h
        .invoke(
            "quantize_model",
            json!({ "model": "gemma-3-270m-Q4_K_M.gguf", "target": "Q8_0", "allowRequantize": true, "onEvent": h.channel().1 }),
        )
        .unwrap_err();
    assert_eq!(second["code"], "busy");
    h.invoke("cancel_quantization", json!({})).unwrap();
    let err = running.join().unwrap().unwrap_err();
    assert_eq!(err["code"], "cancelled", "{err}");
    assert_eq!(names(&dir), ["gemma-3-270m-Q4_K_M.gguf"], "no output, no partial file");

    let missing = h
        .invoke("plan_quantization", json!({ "model": "nope.gguf", "target": "Q8_0" }))
        .unwrap_err();
    assert!(
        missing["message"].as_str().unwrap().contains("does not exist"),
        "{missing}"
    );
    let corrupt = dir.join("corrupt.gguf");
    let bytes = std::fs::read(&source).unwrap();
    std::fs::write(&corrupt, &bytes[..bytes.len() / 3]).unwrap();
    let refused = h
        .invoke(
            "plan_quantization",
            json!({ "model": "corrupt.gguf", "target": "Q8_0" }),
        )
        .unwrap_err();
    assert_eq!(refused["code"], "quantize_failed");
    assert!(
        refused["message"].as_str().unwrap().contains("cannot quantize"),
        "{refused}"
    );
    // The slot is free again after the cancel, and planning works as before.
    let plan = h
        .invoke(
            "plan_quantization",
            json!({ "model": "gemma-3-270m-Q4_K_M.gguf", "target": "Q8_0" }),
        )
        .unwrap();
    assert_eq!(plan["output"], "gemma-3-270m-Q8_0.gguf");
}
