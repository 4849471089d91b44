//! send_message on the real embedded engine: the default model (`make models`) in a
//! worker process that is this package's own `hearth-app worker`, streamed through the
//! command's Channel in batches.
#![allow(clippy::unwrap_used)]

mod common;

use hearth_manager::{BackendKind, Placement};
use serde_json::json;

/// The app with the default chat model loaded in a worker on the CPU, after `prepare`.
fn on_the_real_engine(prepare: impl FnOnce(&hearth_desktop::AppState)) -> common::Harness {
    let model = hearth_core::paths::models_dir().join(hearth_core::paths::DEFAULT_CHAT_MODEL);
    assert!(model.exists(), "{} is missing: run `make models`", model.display());
    common::harness_with(tempfile::tempdir().unwrap(), |state| {
        prepare(state);
        // Spawned from this (the test's) thread, which outlives the worker.
        tauri::async_runtime::block_on(state.manager.initialize_backend(
            BackendKind::Embedded,
            Some(&model.to_string_lossy()),
            None,
            Some(Placement::Cpu),
        ))
        .unwrap();
    })
}

#[test]
fn send_message_on_the_real_engine_streams_batched_deltas() {
    let h = on_the_real_engine(|state| {
        let mut ui = state.ui_settings();
        ui.temperature = 0.0;
        ui.max_tokens = 48;
        state.set_ui_settings(ui);
    });
    let status = h.invoke("app_status", json!({})).unwrap();
    assert_eq!(status["ready"], true, "{status}");
    assert_eq!(status["model"], "SmolLM2-135M-Instruct-Q4_1");
    let hw = h.invoke("hardware_snapshot", json!({})).unwrap();
    assert!(
        hw["modelMemoryBytes"].as_f64().unwrap_or(0.0) > 50e6,
        "the worker's memory: {hw}"
    );

    let (id, channel) = h.channel();
    let turn = h
        .invoke(
            "send_message",
            json!({ "text": "Name three colours of the rainbow.", "onEvent": channel }),
        )
        .unwrap();
    let text = turn["text"].as_str().unwrap();
    assert!(!text.trim().is_empty());
    assert_eq!(h.delta_text(id), text, "the deltas make the reply");
    let kinds = h.kinds(id);
    assert_eq!(kinds.first().map(String::as_str), Some("started"));
    assert_eq!(kinds.last().map(String::as_str), Some("done"));
    let done = h.received(id).last().unwrap().message.clone();
    let tokens = done["completionTokens"].as_u64().unwrap();
    assert!(done["decodeTps"].as_f64().unwrap() > 0.0);
    let deltas = kinds.iter().filter(|k| *k == "delta").count() as u64;
    // The engine streams one delta per token (English text: no character spans two).
    assert_eq!(h.delta_tokens(id), tokens, "token counts carried by the batches");
    // The shell sends at most one delta per DELTA_BATCH tick (plus the last flush), so a
    // stream of D ms carries at most D / 25 + a few events (10% slack for the distance
    // between the engine's clock and the shell's), however fast tokens come. At
    // this machine's rate (well over 40 tokens/s) that is fewer events than tokens; a
    // slower machine still checks the bound without depending on its speed.
    let tps = done["decodeTps"].as_f64().unwrap();
    let stream_ms = tokens.saturating_sub(1) as f64 / tps * 1000.0;
    let batch_ms = hearth_desktop::commands::chat::DELTA_BATCH.as_secs_f64() * 1000.0;
    let most = (stream_ms * 1.1 / batch_ms).ceil() as u64 + 3;
    assert!(
        deltas <= most,
        "{deltas} delta events for {tokens} tokens in {stream_ms:.0} ms: not batched (at most {most})"
    );
    eprintln!("real engine: {tokens} tokens in {deltas} delta events, {tps:.1} tok/s");

    // The worker wrote its load record into the app's database (this test's own file),
    // not into the default one.
    let store = hearth_store::Store::open(h.dir.path().join("data/hearth.db")).unwrap();
    let loads = store.recent_perf(Some("load_model"), 10).unwrap();
    assert_eq!(loads.len(), 1, "{loads:?}");
    assert_eq!(loads[0].model, "SmolLM2-135M-Instruct-Q4_1.gguf");
}

/// The worker processes this test process started for the app whose data is in `dir`
/// (`hearth-app worker … --db DIR/…`; the other tests' workers are children too).
fn worker_children(dir: &std::path::Path) -> Vec<u32> {
    let dir = dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect();
            if args.iter().any(|a| a == "worker") && args.iter().any(|a| a.starts_with(&dir)) {
                pids.push(pid);
            }
        }
    }
    pids
}

#[test]
fn a_worker_crash_and_its_restart_reach_the_window_without_being_asked() {
    use tauri::Listener;
    let h = on_the_real_engine(|_| {});
    hearth_desktop::connect(h.app.handle());
    let (told, heard) = std::sync::mpsc::channel::<serde_json::Value>();
    h.app
        .listen_any(hearth_desktop::commands::APP_STATUS_EVENT, move |event| {
            let _ = told.send(serde_json::from_str(event.payload()).unwrap());
        });
    let workers = worker_children(h.dir.path());
    assert_eq!(workers.len(), 1, "one worker: {workers:?}");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &workers[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Nothing asks for the status from here on: the window hears the worker go down,
    // then come back. (Hang-sized waits: the restart takes about a second.)
    let next = || heard.recv_timeout(std::time::Duration::from_secs(60)).unwrap();
    let down = loop {
        let status = next();
        if status["ready"] == false {
            break status;
        }
    };
    assert!(down["reason"].is_string(), "the window is told why: {down}");
    let up = loop {
        let status = next();
        if status["ready"] == true {
            break status;
        }
    };
    assert_eq!(up["model"], "SmolLM2-135M-Instruct-Q4_1", "{up}");
    let restarted = worker_children(h.dir.path());
    assert_eq!(restarted.len(), 1, "{restarted:?}");
    assert_ne!(restarted, workers, "a new worker");
}
