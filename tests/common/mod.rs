//! The desktop app's commands driven through Tauri's IPC with the mock runtime (no
//! window, no display): a real AppState on a temporary settings file, models folder
//! and SQLite database, and a webview whose `Channel` messages are captured.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use hearth_desktop::{AppPaths, AppState};
use serde_json::Value;
use tauri::ipc::{CallbackFn, InvokeBody, InvokeResponseBody};
use tauri::test::{get_ipc_response, mock_builder, mock_context, noop_assets, MockRuntime, INVOKE_KEY};
use tauri::webview::InvokeRequest;
use tauri::{App, Manager, WebviewWindow, WebviewWindowBuilder};

/// One captured channel message: its JSON (in the order they arrived).
#[derive(Debug, Clone)]
pub struct Received {
    pub message: Value,
}

type Inbox = Arc<Mutex<HashMap<u32, Vec<Received>>>>;

pub struct Harness {
    pub app: App<MockRuntime>,
    pub webview: WebviewWindow<MockRuntime>,
    pub dir: tempfile::TempDir,
    inbox: Inbox,
    next_channel: AtomicU32,
}

pub fn paths(dir: &tempfile::TempDir) -> AppPaths {
    AppPaths::with_settings_file(
        dir.path().join("config/settings.toml"),
        dir.path().join("models"),
        dir.path().join("data/hearth.db"),
    )
}

/// The app with its real state (the worker program is the built `hearth-app`).
pub fn harness_with(dir: tempfile::TempDir, prepare: impl FnOnce(&AppState)) -> Harness {
    let worker = PathBuf::from(env!("CARGO_BIN_EXE_hearth-app"));
    let state = tauri::async_runtime::block_on(AppState::open(paths(&dir), worker)).unwrap();
    prepare(&state);
    let inbox: Inbox = Arc::default();
    let sink = Arc::clone(&inbox);
    let builder = mock_builder().channel_interceptor(move |_webview, callback: CallbackFn, _index, body| {
        let message = match body {
            InvokeResponseBody::Json(json) => serde_json::from_str(json).unwrap(),
            InvokeResponseBody::Raw(bytes) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
        };
        sink.lock()
            .unwrap()
            .entry(callback.0)
            .or_default()
            .push(Received { message });
        true
    });
    let app = hearth_desktop::attach(builder, state)
        .build(mock_context(noop_assets()))
        .unwrap();
    let webview = WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .unwrap();
    Harness {
        app,
        webview,
        dir,
        inbox,
        next_channel: AtomicU32::new(1000),
    }
}

/// A harness whose embedded backend is the scripted test double (for command plumbing).
pub fn scripted() -> Harness {
    harness_with(tempfile::tempdir().unwrap(), |state| {
        tauri::async_runtime::block_on(state.manager.install(
            hearth_manager::BackendKind::Embedded,
            Arc::new(hearth_api::testing::ScriptedBackend::new()),
            "scripted",
        ))
        .unwrap();
    })
}

impl Harness {
    pub fn state(&self) -> tauri::State<'_, AppState> {
        self.app.state::<AppState>()
    }

    /// Invokes `cmd` as the webview would; `Ok(data)` or `Err(AppError as JSON)`.
    pub fn invoke(&self, cmd: &str, args: Value) -> Result<Value, Value> {
        invoke_on(&self.webview, cmd, args)
    }

    /// A fresh channel id to pass as an `onEvent` argument.
    pub fn channel(&self) -> (u32, String) {
        let id = self.next_channel.fetch_add(1, Ordering::Relaxed);
        (id, format!("__CHANNEL__:{id}"))
    }

    pub fn received(&self, channel: u32) -> Vec<Received> {
        self.inbox.lock().unwrap().get(&channel).cloned().unwrap_or_default()
    }

    /// The `kind` of each message on `channel`.
    pub fn kinds(&self, channel: u32) -> Vec<String> {
        self.received(channel)
            .iter()
            .filter_map(|r| r.message["kind"].as_str().map(str::to_owned))
            .collect()
    }

    /// The text of the `delta` events on `channel`, concatenated.
    pub fn delta_text(&self, channel: u32) -> String {
        self.received(channel)
            .iter()
            .filter(|r| r.message["kind"] == "delta")
            .map(|r| r.message["text"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The token counts the channel's delta batches carried, summed.
    pub fn delta_tokens(&self, channel: u32) -> u64 {
        self.received(channel)
            .iter()
            .filter(|r| r.message["kind"] == "delta")
            .map(|r| r.message["tokens"].as_u64().unwrap())
            .sum()
    }
}

pub fn invoke_on(webview: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Result<Value, Value> {
    let request = InvokeRequest {
        cmd: cmd.into(),
        callback: CallbackFn(0),
        error: CallbackFn(1),
        // The app's own origin on Linux (a remote origin may not call app commands).
        url: "tauri://localhost".parse().unwrap(),
        body: InvokeBody::Json(args),
        headers: Default::default(),
        invoke_key: INVOKE_KEY.to_string(),
    };
    get_ipc_response(webview, request).map(|body| body.deserialize::<Value>().unwrap())
}
