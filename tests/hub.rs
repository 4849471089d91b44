//! The Get models page's commands through Tauri's IPC against a local server that speaks
//! Hugging Face's protocol, serving the real default chat model: search, a repository's
//! files judged for this machine, the first run's recommendations, a download stopped,
//! discarded, then completed, and downloads turned off in the settings.
//!
//! One test in this binary: it points `HF_ENDPOINT` at its server for the whole process.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{harness_with, invoke_on};
use hearth_hub::local_hub::{sha256_file, LocalHub};
use serde_json::{json, Value};

const REPO: &str = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF";
/// One of the app's recommendation candidates, so the first run finds it.
const CANDIDATE: &str = "bartowski/SmolLM2-135M-Instruct-GGUF";

fn chat_model() -> std::path::PathBuf {
    let path = hearth_core::paths::models_dir().join(hearth_core::paths::DEFAULT_CHAT_MODEL);
    assert!(path.exists(), "{} is missing: run `make models`", path.display());
    path
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn get_models_searches_judges_recommends_and_downloads() {
    let model = chat_model();
    let name = model.file_name().unwrap().to_string_lossy().into_owned();
    let size = std::fs::metadata(&model).unwrap().len();
    let server = LocalHub::start().unwrap();
    server.add_file(REPO, &name, &model).unwrap();
    server
        .add_file(CANDIDATE, "SmolLM2-135M-Instruct-Q4_K_M.gguf", &model)
        .unwrap();
    // Set before any thread of this process reads the environment.
    std::env::set_var("HF_ENDPOINT", &server.url);
    std::env::remove_var("HF_TOKEN");
    std::env::remove_var("HUGGING_FACE_HUB_TOKEN");
    std::env::remove_var("HEARTH_DOWNLOADS");

    let h = harness_with(tempfile::tempdir().unwrap(), |_| {});
    let models_dir = h.dir.path().join("models");

    let found = h.invoke("search_models", json!({ "query": " smol " })).unwrap();
    let ids: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&REPO) && ids.contains(&CANDIDATE), "{found}");

    // Each file judged from its header alone.
    let files = h.invoke("repo_files", json!({ "repo": REPO })).unwrap();
    let files = files.as_array().unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    assert_eq!(file["file"], name);
    assert_eq!(file["sizeBytes"], json!(size));
    assert_eq!(file["quantization"], "Q4_1");
    assert_eq!(file["badge"], "cpu", "no GPU here: {file}");
    assert!(file["fit"].as_str().unwrap().starts_with("CPU only"), "{file}");
    assert_eq!(file["recommended"], true, "the only file that fits is the pick");
    assert_eq!(file["installed"], false);
    let read = file["headerBytesRead"].as_u64().unwrap();
    assert!(read > 0 && read * 20 < size, "read {read} of {size} bytes");
    let missing = h.invoke("repo_files", json!({ "repo": "nobody/nothing" })).unwrap_err();
    assert_eq!(missing["code"], "not_found", "{missing}");

    // The first run: the candidates this server has, judged and ranked.
    let recommended = h.invoke("recommended_models", json!({})).unwrap();
    let recommended = recommended.as_array().unwrap();
    assert_eq!(recommended.len(), 1, "{recommended:?}");
    assert_eq!(recommended[0]["repo"], CANDIDATE);
    assert_eq!(recommended[0]["recommended"], true);

    // A download stopped half-way keeps its part; a second one meanwhile is refused.
    server.throttle(Some(size / 4));
    let (channel_id, channel) = h.channel();
    let webview = h.webview.clone();
    let args = json!({ "repo": REPO, "file": name, "onEvent": channel });
    let first = {
        let args = args.clone();
        std::thread::spawn(move || invoke_on(&webview, "download_model", args))
    };
    wait_for("progress", Duration::from_secs(60), || {
        h.received(channel_id)
            .iter()
            .any(|r| r.message["doneBytes"].as_u64().unwrap_or(0) > 0)
    });
    let again = h
        .invoke(
            "download_model",
            json!({ "repo": REPO, "file": name, "onEvent": h.channel().1 }),
        )
        .unwrap_err();
    assert_eq!(again["code"], "busy", "{again}");
    let discard_busy = h.invoke("discard_download", json!({ "file": name })).unwrap_err();
    assert_eq!(discard_busy["code"], "busy", "{discard_busy}");
    h.invoke("cancel_download", json!({})).unwrap();
    let stopped = first.join().unwrap().unwrap_err();
    assert_eq!(stopped["code"], "cancelled", "{stopped}");
    let part = models_dir.join(format!("{name}.part"));
    assert!(part.is_file(), "the stopped download keeps its part");
    assert!(!models_dir.join(&name).exists());
    let progress = h.received(channel_id);
    let last = &progress.last().unwrap().message;
    assert_eq!(last["totalBytes"], json!(size));
    assert!(last["bytesPerSec"].as_f64().unwrap() > 0.0, "{last}");

    // Discarded: the part and its record go.
    h.invoke("discard_download", json!({ "file": name })).unwrap();
    assert!(!part.exists());
    assert!(!models_dir.join(format!("{name}.part.json")).exists());

    // Completed: verified, in the models folder, listed, marked installed.
    server.throttle(None);
    let (channel_id, channel) = h.channel();
    let pulled = h
        .invoke(
            "download_model",
            json!({ "repo": REPO, "file": name, "onEvent": channel }),
        )
        .unwrap();
    assert_eq!(pulled["name"], name);
    assert_eq!(pulled["sizeBytes"], json!(size));
    assert_eq!(pulled["hasChatTemplate"], true);
    let landed = models_dir.join(&name);
    assert_eq!(sha256_file(&landed).unwrap(), sha256_file(&model).unwrap());
    let progress = h.received(channel_id);
    let last: &Value = &progress.last().unwrap().message;
    assert_eq!(last["doneBytes"], json!(size), "{last}");
    assert_eq!(last["resumedFrom"], 0, "the discarded part was not reused");
    let listed = h.invoke("list_models", json!({})).unwrap();
    assert!(listed.as_array().unwrap().iter().any(|m| m["name"] == name), "{listed}");
    let files = h.invoke("repo_files", json!({ "repo": REPO })).unwrap();
    assert_eq!(files[0]["installed"], true);
    drop(h);

    // Downloads turned off in the settings: nothing is asked of the server.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/settings.toml"),
        "[downloads]\nenabled = false\n",
    )
    .unwrap();
    let h = harness_with(dir, |_| {});
    server.clear_log();
    for (command, args) in [
        ("search_models", json!({ "query": "smol" })),
        ("repo_files", json!({ "repo": REPO })),
        ("recommended_models", json!({})),
        (
            "download_model",
            json!({ "repo": REPO, "file": name, "onEvent": h.channel().1 }),
        ),
    ] {
        let off = h.invoke(command, args).unwrap_err();
        assert_eq!(off["code"], "downloads_off", "{command}: {off}");
        assert!(off["message"].as_str().unwrap().contains("downloads"), "{off}");
    }
    assert!(server.log().is_empty(), "requests were made: {:?}", server.log());
}
