//! Every command through Tauri's IPC (mock runtime, no display) on a real AppState:
//! a temporary settings file, models folder and SQLite database. Generation here uses
//! the scripted test backend for the plumbing (tests/engine.rs runs the real engine).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{invoke_on, scripted};
use hearth_api::testing::SCRIPTED_REPLY;
use serde_json::{json, Value};

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn send_message_streams_batched_deltas_that_make_the_reply() {
    let h = scripted();
    let (id, channel) = h.channel();
    let turn = h
        .invoke("send_message", json!({ "text": "hello", "onEvent": channel }))
        .unwrap();
    assert_eq!(turn["text"], SCRIPTED_REPLY);
    assert_eq!(turn["backend"], "embedded");
    assert_eq!(turn["model"], "scripted");
    assert_eq!(turn["finishReason"], "stop");
    assert!(turn["sessionId"].is_string());

    let kinds = h.kinds(id);
    assert_eq!(kinds.first().map(String::as_str), Some("started"), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("done"), "{kinds:?}");
    assert_eq!(h.delta_text(id), SCRIPTED_REPLY);
    // The scripted words arrive within one batch window: fewer events than words.
    let words = SCRIPTED_REPLY.split_inclusive(' ').count();
    let deltas = kinds.iter().filter(|k| *k == "delta").count();
    assert!(deltas >= 1 && deltas < words, "{deltas} delta events for {words} words");
    let done = h.received(id).last().unwrap().message.clone();
    assert_eq!(done["completionTokens"], json!(words));
    assert_eq!(done["finishReason"], "stop");
    // Each batch says how many deltas (tokens) it holds: the UI's live tokens/s.
    assert_eq!(h.delta_tokens(id), words as u64);

    let status = h.invoke("app_status", json!({})).unwrap();
    assert_eq!(status["activeBackend"], "embedded");
    assert_eq!(status["model"], "scripted");
    assert_eq!(status["ready"], true);
    assert_eq!(status["generating"], false);
    assert_eq!(status["session"], turn["sessionId"]);
    assert_eq!(status["lastDecodeTps"], json!(50.0));
    assert!(status["dbPath"].as_str().unwrap().ends_with("hearth.db"));

    let empty = h.invoke("send_message", json!({ "text": "  ", "onEvent": h.channel().1 }));
    assert_eq!(empty.unwrap_err()["code"], "invalid_request");

    // While a model loads, a message is refused with what to do, not sent half-way.
    h.state().set_loading(true);
    let loading = h.invoke("send_message", json!({ "text": "hi", "onEvent": h.channel().1 }));
    let err = loading.unwrap_err();
    assert_eq!(err["code"], "model_loading");
    assert!(err["message"].as_str().unwrap().contains("Ready"), "{err}");
    h.state().set_loading(false);
}

#[test]
fn stop_generation_stops_the_reply_and_keeps_its_text() {
    let h = scripted();
    let (id, channel) = h.channel();
    let webview = h.webview.clone();
    // The scripted backend streams "la " every 5 ms until stopped.
    let sender = std::thread::spawn(move || {
        invoke_on(
            &webview,
            "send_message",
            json!({ "text": "sing forever", "onEvent": channel }),
        )
    });
    // A hang's bound: the scripted backend sends a delta every 5 ms.
    wait_for("deltas", Duration::from_secs(60), || {
        h.kinds(id).iter().filter(|k| *k == "delta").count() >= 4
    });
    let status = h.invoke("app_status", json!({})).unwrap();
    assert_eq!(status["generating"], true);
    // One reply at a time.
    let second = h.invoke("send_message", json!({ "text": "again", "onEvent": h.channel().1 }));
    assert_eq!(second.unwrap_err()["code"], "busy");

    h.invoke("stop_generation", json!({})).unwrap();
    let turn = sender.join().unwrap().unwrap();
    assert_eq!(turn["finishReason"], "cancelled");
    let text = turn["text"].as_str().unwrap();
    assert!(!text.is_empty());
    // A stopped reply keeps its figures, timed by the manager on the stream it got: one
    // token per delta, a first token, and a rate no faster than the backend's 5 ms pace.
    assert_eq!(turn["completionTokens"], json!(text.matches("la ").count()), "{turn}");
    assert!(turn["ttftMs"].as_f64().unwrap() > 0.0, "{turn}");
    let tps = turn["decodeTps"].as_f64().unwrap();
    assert!(tps > 0.0 && tps <= 200.0, "{turn}");
    let perf = h.invoke("recent_performance", json!({ "limit": 1 })).unwrap();
    assert_eq!(perf[0]["decodeTps"], turn["decodeTps"], "the stored record: {perf}");
    assert_eq!(h.delta_text(id), text, "the deltas make the saved text");
    assert_eq!(h.kinds(id).last().map(String::as_str), Some("done"));

    // Batched: ~5 tokens per 25 ms window. Counted, not timed: how far apart two
    // batches land is the machine's business (a busy one delays a tick), how many
    // tokens ride in each is the batcher's decision.
    let deltas: Vec<_> = h
        .received(id)
        .into_iter()
        .filter(|r| r.message["kind"] == "delta")
        .collect();
    let tokens = text.matches("la ").count();
    assert!(
        deltas.len() * 2 <= tokens,
        "{} events for {tokens} tokens",
        deltas.len()
    );

    let status = h.invoke("app_status", json!({})).unwrap();
    assert_eq!(status["generating"], false);
    // The stopped reply is saved, marked incomplete.
    let session = turn["sessionId"].as_str().unwrap().to_owned();
    let messages = h.invoke("open_session", json!({ "id": session })).unwrap();
    let last = messages.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["role"], "assistant");
    assert_eq!(last["incomplete"], true);
}

fn messages(h: &common::Harness, session: &str) -> Vec<Value> {
    h.invoke("open_session", json!({ "id": session }))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn sessions_new_open_rename_delete() {
    let h = scripted();
    let turn = h
        .invoke(
            "send_message",
            json!({ "text": "remember me", "onEvent": h.channel().1 }),
        )
        .unwrap();
    let session = turn["sessionId"].as_str().unwrap().to_owned();

    h.invoke("new_session", json!({})).unwrap();
    assert_eq!(h.invoke("app_status", json!({})).unwrap()["session"], Value::Null);

    let listed = messages(&h, &session);
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["role"], "user");
    assert_eq!(listed[0]["content"], "remember me");
    assert_eq!(listed[1]["role"], "assistant");
    assert_eq!(listed[1]["content"], SCRIPTED_REPLY);
    assert_eq!(listed[1]["backend"], "embedded");
    assert_eq!(listed[1]["model"], "scripted");
    assert_eq!(listed[1]["decodeTps"], json!(50.0));
    assert_eq!(listed[1]["ttftMs"], json!(1.0));
    assert_eq!(listed[1]["incomplete"], false);
    assert!(listed[1]["id"].as_i64().unwrap() > listed[0]["id"].as_i64().unwrap());
    // Opening continues it.
    assert_eq!(h.invoke("app_status", json!({})).unwrap()["session"], json!(session));
    let next = h
        .invoke("send_message", json!({ "text": "and again", "onEvent": h.channel().1 }))
        .unwrap();
    assert_eq!(next["sessionId"], json!(session));

    h.invoke("rename_session", json!({ "id": session, "title": "Renamed chat" }))
        .unwrap();
    let stored = tauri::async_runtime::block_on(
        h.state()
            .manager
            .store()
            .get_session(hearth_store::SessionId::from(session.as_str())),
    )
    .unwrap()
    .unwrap();
    assert_eq!(stored.title, "Renamed chat");
    let blank = h.invoke("rename_session", json!({ "id": session, "title": " " }));
    assert!(blank.unwrap_err()["message"].as_str().unwrap().contains("`title`"));

    h.invoke("delete_session", json!({ "id": session })).unwrap();
    assert_eq!(h.invoke("app_status", json!({})).unwrap()["session"], Value::Null);
    let gone = h.invoke("open_session", json!({ "id": session })).unwrap_err();
    assert_eq!(gone["code"], "not_found");
    let again = h.invoke("delete_session", json!({ "id": session })).unwrap_err();
    assert_eq!(again["code"], "not_found");
}

#[test]
fn export_session_saves_markdown_and_json_without_overwriting() {
    let h = scripted();
    let turn = h
        .invoke("send_message", json!({ "text": "hello", "onEvent": h.channel().1 }))
        .unwrap();
    let id = turn["sessionId"].as_str().unwrap().to_owned();
    h.invoke("rename_session", json!({ "id": id, "title": "Greetings: a/b" }))
        .unwrap();
    let exports = common::paths(&h.dir).exports_dir;

    let first = h.invoke("export_session", json!({ "id": id, "format": "md" })).unwrap();
    let first = std::path::PathBuf::from(first.as_str().unwrap());
    assert_eq!(first, exports.join("Greetings- a-b.md"));
    let markdown = std::fs::read_to_string(&first).unwrap();
    assert!(markdown.starts_with("# Greetings: a/b\n"), "{markdown}");
    assert!(markdown.contains("## You\n\nhello"), "{markdown}");
    assert!(
        markdown.contains(&format!("## Assistant\n\n{SCRIPTED_REPLY}")),
        "{markdown}"
    );
    // Again: a new file beside it, the first untouched.
    let second = h.invoke("export_session", json!({ "id": id, "format": "md" })).unwrap();
    assert_eq!(
        second.as_str().unwrap(),
        exports.join("Greetings- a-b (2).md").display().to_string()
    );
    assert_eq!(std::fs::read_to_string(&first).unwrap(), markdown);

    let json_path = h
        .invoke("export_session", json!({ "id": id, "format": "json" }))
        .unwrap();
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(json_path.as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(stored["session"]["id"], json!(id));
    assert_eq!(stored["messages"].as_array().unwrap().len(), 2);

    let bad = h
        .invoke("export_session", json!({ "id": id, "format": "pdf" }))
        .unwrap_err();
    assert_eq!(bad["code"], "invalid_request");
    let missing = h
        .invoke("export_session", json!({ "id": "nope", "format": "md" }))
        .unwrap_err();
    assert_eq!(missing["code"], "not_found");
}

#[test]
fn regenerate_and_edit_replace_the_tail() {
    let h = scripted();
    let nothing = h.invoke("regenerate", json!({ "onEvent": h.channel().1 })).unwrap_err();
    assert_eq!(nothing["code"], "nothing_to_regenerate");

    let first = h
        .invoke("send_message", json!({ "text": "first", "onEvent": h.channel().1 }))
        .unwrap();
    let session = first["sessionId"].as_str().unwrap().to_owned();
    h.invoke("send_message", json!({ "text": "second", "onEvent": h.channel().1 }))
        .unwrap();
    let before = messages(&h, &session);
    assert_eq!(before.len(), 4);

    let (id, channel) = h.channel();
    let again = h.invoke("regenerate", json!({ "onEvent": channel })).unwrap();
    assert_eq!(again["text"], SCRIPTED_REPLY);
    assert_eq!(h.delta_text(id), SCRIPTED_REPLY);
    let after = messages(&h, &session);
    assert_eq!(after.len(), 4, "the last reply was replaced, not added to");
    assert_eq!(after[2]["content"], "second");
    assert_ne!(after[3]["id"], before[3]["id"]);
    assert_eq!(h.state().manager.conversation().messages().len(), 4);

    let first_id = after[0]["id"].as_i64().unwrap();
    let edited = h
        .invoke(
            "edit_and_resend",
            json!({ "messageId": first_id, "text": "first, edited", "onEvent": h.channel().1 }),
        )
        .unwrap();
    assert_eq!(edited["sessionId"], json!(session));
    let after = messages(&h, &session);
    assert_eq!(after.len(), 2);
    assert_eq!(after[0]["content"], "first, edited");
    assert_eq!(after[1]["role"], "assistant");

    let reply_id = after[1]["id"].as_i64().unwrap();
    let not_mine = h
        .invoke(
            "edit_and_resend",
            json!({ "messageId": reply_id, "text": "x", "onEvent": h.channel().1 }),
        )
        .unwrap_err();
    assert_eq!(not_mine["code"], "invalid_request");
    let missing = h
        .invoke(
            "edit_and_resend",
            json!({ "messageId": 999_999, "text": "x", "onEvent": h.channel().1 }),
        )
        .unwrap_err();
    assert_eq!(missing["code"], "not_found");
}

#[test]
fn settings_round_trip_and_errors_name_the_field() {
    let h = scripted();
    let mut view = h.invoke("get_settings", json!({})).unwrap();
    assert_eq!(view["backend"], "embedded");
    assert_eq!(view["gpuLayers"], "auto");
    assert_eq!(view["device"], "auto");
    assert_eq!(view["ollamaUrl"], Value::Null);

    view["temperature"] = json!(0.25);
    view["topP"] = json!(0.5);
    view["maxTokens"] = json!(64);
    view["systemPrompt"] = json!("Answer in one sentence.");
    view["ctx"] = json!(2048);
    view["gpuLayers"] = json!("0");
    view["device"] = json!("cpu");
    view["ollamaUrl"] = json!("http://127.0.0.1:11434");
    view["ollamaModel"] = json!("llama3.2:1b");
    let status = h.invoke("save_settings", json!({ "settings": view })).unwrap();
    assert_eq!(status["activeBackend"], "embedded");
    assert_eq!(h.invoke("get_settings", json!({})).unwrap(), view);

    // Both files were written, and a fresh start reads the same settings back.
    let paths = common::paths(&h.dir);
    let toml = std::fs::read_to_string(&paths.settings_file).unwrap();
    assert!(toml.contains("llama3.2:1b"), "{toml}");
    let ui: Value = serde_json::from_str(&std::fs::read_to_string(&paths.ui_settings_file).unwrap()).unwrap();
    assert_eq!(ui["systemPrompt"], "Answer in one sentence.");
    let reopened =
        tauri::async_runtime::block_on(hearth_desktop::AppState::open(paths.clone(), "unused".into())).unwrap();
    assert_eq!(reopened.manager.settings(), h.state().manager.settings());
    assert_eq!(reopened.ui_settings(), h.state().ui_settings());
    // The tray's backend menu item for Ollama is now enabled: it is configured.
    assert!(h
        .state()
        .manager
        .settings()
        .is_configured(hearth_manager::BackendKind::Ollama));

    for (field, value, named) in [
        ("topP", json!(2.0), "`topP`"),
        ("temperature", json!(-1.0), "`temperature`"),
        ("maxTokens", json!(0), "`maxTokens`"),
        ("ctx", json!(0), "`ctx`"),
        ("gpuLayers", json!("many"), "`gpuLayers`"),
        ("device", json!("vulkan 0"), "`device`"),
        ("ollamaUrl", json!("not a url"), "`ollamaUrl`"),
        ("ollamaModel", json!(""), "`ollamaModel`"),
        ("vllmUrl", json!("ftp://host"), "`vllmUrl`"),
        ("backend", json!("llamafile"), "`backend`"),
        ("model", json!(" "), "`model`"),
    ] {
        let mut bad = view.clone();
        bad[field] = value;
        let e = h.invoke("save_settings", json!({ "settings": bad })).unwrap_err();
        assert_eq!(e["code"], "invalid_settings", "{field}: {e}");
        let message = e["message"].as_str().unwrap();
        assert!(message.contains(named), "{field}: {message}");
    }
    // Nothing invalid was saved.
    assert_eq!(h.invoke("get_settings", json!({})).unwrap(), view);
}

#[test]
fn devices_are_listed_by_the_app_run_as_a_child_process() {
    let h = scripted();
    // The default model is not in the test's models folder: devices without verdicts.
    let listed = h.invoke("list_devices", json!({ "model": null, "ctx": null })).unwrap();
    let devices = listed.as_array().unwrap();
    let cpu = devices
        .iter()
        .find(|d| d["value"] == "cpu")
        .expect("the CPU is always listed");
    assert_eq!(cpu["name"], "CPU");
    assert!(cpu["memoryTotalBytes"].as_u64().unwrap() > 0, "{cpu}");
    assert_eq!(devices.iter().filter(|d| d["auto"] == true).count(), 1, "{listed}");

    let models = common::paths(&h.dir).models_dir;
    std::fs::create_dir_all(&models).unwrap();
    let shape = hearth_gguf::builder::DecoderShape::qwen3_14b_q4_k_m();
    hearth_gguf::builder::GgufBuilder::decoder(&shape)
        .write(&models.join("qwen3-14b-Q4_K_M.gguf"))
        .unwrap();
    let planned = h
        .invoke("list_devices", json!({ "model": "qwen3-14b", "ctx": 2048 }))
        .unwrap();
    for d in planned.as_array().unwrap() {
        assert!(d["verdict"].is_string(), "{d}");
        assert_eq!(d["nLayersTotal"], 41, "{d}");
    }
}

#[test]
fn system_prompt_opens_a_new_conversation() {
    let h = scripted();
    let mut view = h.invoke("get_settings", json!({})).unwrap();
    view["systemPrompt"] = json!("You are terse.");
    // Only UI settings change: the scripted backend stays installed.
    h.invoke("save_settings", json!({ "settings": view })).unwrap();
    let turn = h
        .invoke("send_message", json!({ "text": "hi there", "onEvent": h.channel().1 }))
        .unwrap();
    let session = turn["sessionId"].as_str().unwrap().to_owned();
    let listed = messages(&h, &session);
    let roles: Vec<_> = listed.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant"]);
    assert_eq!(listed[0]["content"], "You are terse.");
    let stored = tauri::async_runtime::block_on(
        h.state()
            .manager
            .store()
            .get_session(hearth_store::SessionId::from(session.as_str())),
    )
    .unwrap()
    .unwrap();
    assert_eq!(stored.title, "hi there", "titled after the user's text, not the prompt");
}

#[test]
fn switch_backend_errors_say_what_to_do() {
    let h = scripted();
    let e = h.invoke("switch_backend", json!({ "backend": "ollama" })).unwrap_err();
    assert_eq!(e["code"], "not_configured");
    assert!(e["message"].as_str().unwrap().contains("Settings"), "{e}");
    // The argument is the generated BackendKind: another name is refused before the
    // command runs (the UI offers only the registry's kinds), naming the argument.
    let e = h
        .invoke("switch_backend", json!({ "backend": "llamafile" }))
        .unwrap_err();
    let text = e.as_str().unwrap_or_default();
    assert!(text.contains("`backend`") && text.contains("unknown variant"), "{e}");
    let status = h.invoke("switch_backend", json!({ "backend": "embedded" })).unwrap();
    assert_eq!(status["activeBackend"], "embedded");
    assert_eq!(status["loading"], false);
    assert_eq!(status["ready"], true);
}

#[test]
fn models_list_and_import() {
    use hearth_gguf::builder::{DecoderShape, GgufBuilder};
    let h = scripted();
    assert_eq!(h.invoke("list_models", json!({})).unwrap(), json!([]));

    let outside = tempfile::tempdir().unwrap();
    let source = outside.path().join("tiny-qwen3.gguf");
    // A small header-only model (sparse file): the shape of Qwen3, a few MB of "weights".
    let shape = DecoderShape {
        n_layer: 2,
        n_embd: 256,
        n_ff: 512,
        n_head: 4,
        n_head_kv: 2,
        head_dim: 64,
        n_vocab: 1024,
        ..DecoderShape::qwen3_14b_q4_k_m()
    };
    GgufBuilder::decoder(&shape).write(&source).unwrap();
    let model = h
        .invoke(
            "import_model",
            json!({ "path": source.display().to_string(), "onEvent": h.channel().1 }),
        )
        .unwrap();
    assert_eq!(model["name"], "tiny-qwen3.gguf");
    assert_eq!(model["source"], "hearth");
    assert_eq!(model["architecture"], "qwen3");
    assert_eq!(model["quantization"], "Q4_K_M");
    assert_eq!(model["hasChatTemplate"], true);
    assert_eq!(
        model["sizeBytes"].as_u64().unwrap(),
        std::fs::metadata(&source).unwrap().len()
    );
    // The planner's verdict for this machine, with its reason.
    let fit = model["fit"].as_str().unwrap();
    assert!(fit.contains(": "), "{fit}");
    let installed = common::paths(&h.dir).models_dir.join("tiny-qwen3.gguf");
    assert!(installed.exists());

    let listed = h.invoke("list_models", json!({})).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    // The same, but the verdict's free-memory figures are live: leave them out.
    let without_fit = |m: &Value| {
        let mut m = m.clone();
        m["fit"] = Value::Null;
        m
    };
    assert_eq!(without_fit(&listed[0]), without_fit(&model));

    let again = h
        .invoke(
            "import_model",
            json!({ "path": source.display().to_string(), "onEvent": h.channel().1 }),
        )
        .unwrap_err();
    assert_eq!(again["code"], "model_exists");
    let text = outside.path().join("notes.gguf");
    std::fs::write(&text, "just text").unwrap();
    let bad = h
        .invoke(
            "import_model",
            json!({ "path": text.display().to_string(), "onEvent": h.channel().1 }),
        )
        .unwrap_err();
    assert_eq!(bad["code"], "invalid_model");
    // Nothing half-copied is left behind.
    let names: Vec<_> = std::fs::read_dir(common::paths(&h.dir).models_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["tiny-qwen3.gguf"]);
}

#[test]
fn hardware_and_recent_performance() {
    let h = scripted();
    let hw = h.invoke("hardware_snapshot", json!({})).unwrap();
    assert!(hw["ramTotalBytes"].as_f64().unwrap() > 0.0);
    assert!(hw["ramUsedBytes"].as_f64().unwrap() > 0.0);
    assert!(hw["cpuPercent"].as_f64().unwrap() >= 0.0);
    assert!(hw["gpus"].is_array());
    // The scripted backend runs in this process: no worker, no model memory.
    assert_eq!(hw["modelMemoryBytes"], Value::Null);

    assert_eq!(
        h.invoke("recent_performance", json!({ "limit": 5 })).unwrap(),
        json!([])
    );
    for text in ["one", "two"] {
        h.invoke("send_message", json!({ "text": text, "onEvent": h.channel().1 }))
            .unwrap();
    }
    let perf = h.invoke("recent_performance", json!({ "limit": 1 })).unwrap();
    let perf = perf.as_array().unwrap();
    assert_eq!(perf.len(), 1);
    assert_eq!(perf[0]["backend"], "embedded");
    assert_eq!(perf[0]["model"], "scripted");
    assert_eq!(perf[0]["decodeTps"], json!(50.0));
    assert!(perf[0]["timestamp"].as_i64().unwrap() > 0);
}
