//! The app's loaded model as a backend for its local API: it serves only what is
//! loaded, never loads or unloads, and counts what runs through it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use hearth_api::testing::{ScriptedBackend, SCRIPTED_MODEL, SCRIPTED_REPLY};
use hearth_core::{Backend, BackendError, ChatMessage, GenerateRequest, GenerationEvent, Prompt, SamplingParams};
use hearth_manager::{BackendKind, BackendManager, ManagerOptions, ServedBackend, Settings};
use hearth_store::{AsyncStore, StoreOptions};

fn request(text: &str, model: Option<&str>) -> GenerateRequest {
    GenerateRequest {
        model: model.map(str::to_owned),
        prompt: Prompt::Chat(vec![ChatMessage::user(text)]),
        params: SamplingParams::default(),
    }
}

async fn empty_manager(dir: &tempfile::TempDir) -> Arc<BackendManager> {
    let store = AsyncStore::open(dir.path().join("hearth.db"), StoreOptions::default())
        .await
        .expect("store");
    Arc::new(BackendManager::new(
        Settings::default(),
        ManagerOptions::new("/nonexistent/hearth"),
        store,
    ))
}

/// A manager whose embedded backend (the scripted one) has its model loaded.
async fn loaded_manager(dir: &tempfile::TempDir) -> (Arc<BackendManager>, Arc<ScriptedBackend>) {
    let manager = empty_manager(dir).await;
    let engine = Arc::new(ScriptedBackend::new());
    manager
        .install(BackendKind::Embedded, Arc::clone(&engine) as _, SCRIPTED_MODEL)
        .await
        .expect("install");
    (manager, engine)
}

async fn text_of(stream: hearth_core::EventStream) -> String {
    let events: Vec<_> = stream.collect().await;
    events
        .into_iter()
        .filter_map(|e| match e.expect("no backend failure") {
            GenerationEvent::Delta { text } => Some(text),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn nothing_is_served_before_the_app_has_loaded_a_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = ServedBackend::new(empty_manager(&dir).await);
    let health = served.health().await;
    assert!(!health.ready);
    assert!(
        health
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("pick a model in its Settings"),
        "{health:?}"
    );
    assert_eq!(served.models().await.expect("models"), []);
    let Err(e) = served.generate(request("hi", None)).await else {
        panic!("a generation without a model")
    };
    assert!(matches!(e, BackendError::Unavailable { .. }), "{e:?}");
    assert!(e.is_transient(), "a client may retry once the model is loaded");
    let refused = served
        .load("/some/other.gguf")
        .await
        .expect_err("the app chooses the model");
    assert_eq!(refused.code(), hearth_core::ErrorCode::InvalidRequest);
    assert_eq!(served.running(), 0);
}

#[tokio::test]
async fn the_loaded_model_is_served_under_its_name_and_counted_while_it_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (manager, engine) = loaded_manager(&dir).await;
    let served = ServedBackend::new(Arc::clone(&manager));
    let mut changes = served.watch_running();

    assert!(served.health().await.ready);
    let models = served.models().await.expect("models");
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].id, SCRIPTED_MODEL);

    // Named or not, the request goes to the loaded model; another name is refused.
    assert_eq!(
        text_of(served.generate(request("hi", None)).await.expect("unnamed")).await,
        SCRIPTED_REPLY
    );
    let named = served
        .generate(request("hi", Some(SCRIPTED_MODEL)))
        .await
        .expect("named");
    assert_eq!(text_of(named).await, SCRIPTED_REPLY);
    let Err(e) = served.generate(request("hi", Some("gpt-4o"))).await else {
        panic!("an unknown model was served")
    };
    assert_eq!(e.code(), hearth_core::ErrorCode::ModelNotFound);

    // Two at once: both counted, each uncounted when its stream is dropped.
    changes.borrow_and_update();
    let first = served.generate(request("sing forever", None)).await.expect("first");
    let second = served.generate(request("sing forever", None)).await.expect("second");
    assert_eq!(served.running(), 2);
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("a change is announced")
        .expect("sender alive");
    drop(first);
    assert_eq!(served.running(), 1);
    drop(second);
    assert_eq!(served.running(), 0);
    assert_eq!(
        engine.live_streams(),
        0,
        "dropping the API's stream cancels the generation"
    );

    // The API server stopping must leave the chat's model loaded.
    served.unload().await.expect("unload");
    assert!(manager.serving().await.is_some());
    assert!(engine.health().await.ready);
}

#[tokio::test]
async fn an_api_generation_runs_beside_a_chat_reply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (manager, _engine) = loaded_manager(&dir).await;
    let served = ServedBackend::new(Arc::clone(&manager));
    let api = served
        .generate(request("sing forever", None))
        .await
        .expect("api stream");
    // While the API's stream is open, a chat turn goes through the manager as usual.
    let stop = hearth_manager::StopSignal::default();
    let mut chat_text = String::new();
    let report = manager
        .send("Hello", SamplingParams::default(), &stop, |delta| {
            chat_text.push_str(delta)
        })
        .await
        .expect("chat turn");
    assert_eq!(chat_text, SCRIPTED_REPLY, "{report:?}");
    assert_eq!(served.running(), 1, "the API's generation still runs");
    drop(api);
    assert_eq!(served.running(), 0);
}
