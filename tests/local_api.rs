//! The app's local OpenAI-compatible API, turned on from the settings through IPC (mock
//! runtime) and called over real HTTP on 127.0.0.1: it serves the model the app has
//! loaded beside the chat, asks for the token when one is set, counts what runs, moves
//! ports without losing what was serving, and says which port cannot be used.
//! (tests/e2e runs the real app and engine with the `openai` Python client.)
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::scripted;
use hearth_api::testing::{SCRIPTED_MODEL, SCRIPTED_REPLY};
use serde_json::{json, Value};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tauri::async_runtime::block_on(f)
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            // A hang's bound, not a speed: what is awaited takes milliseconds.
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn turn_on(h: &common::Harness, port: u16, token: Option<&str>) -> Result<Value, Value> {
    let mut view = h.invoke("get_settings", json!({})).unwrap();
    view["apiEnabled"] = json!(true);
    view["apiPort"] = json!(port);
    view["apiToken"] = json!(token);
    h.invoke("save_settings", json!({ "settings": view }))
}

fn api_url(h: &common::Harness) -> String {
    let status = h.invoke("app_status", json!({})).unwrap();
    status["api"]["url"].as_str().expect("the API serves").to_owned()
}

fn running(h: &common::Harness) -> u64 {
    h.invoke("app_status", json!({})).unwrap()["api"]["running"]
        .as_u64()
        .unwrap()
}

#[test]
fn the_api_serves_the_loaded_model_beside_the_chat() {
    let h = scripted();
    let status = h.invoke("app_status", json!({})).unwrap();
    assert_eq!(status["api"]["url"], Value::Null, "off until turned on: {status}");
    assert_eq!(h.invoke("get_settings", json!({})).unwrap()["apiEnabled"], false);

    let status = turn_on(&h, 0, Some("let-me-in")).unwrap();
    assert_eq!(status["api"]["tokenRequired"], true, "{status}");
    // Turning the API on unloads the engine, to load again with several sequences (the
    // real app's hook reloads it; here the scripted backend is installed again).
    assert_eq!(status["model"], Value::Null, "{status}");
    block_on(h.state().manager.install(
        hearth_manager::BackendKind::Embedded,
        std::sync::Arc::new(hearth_api::testing::ScriptedBackend::new()),
        SCRIPTED_MODEL,
    ))
    .unwrap();
    let url = api_url(&h);
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/v1"), "{url}");
    let client = reqwest::Client::new();

    // Without the token: refused. With it: the app's model, under its name.
    let refused = block_on(client.get(format!("{url}/models")).send()).unwrap();
    assert_eq!(refused.status(), 401);
    let json_of = |request: reqwest::RequestBuilder| -> Value {
        block_on(async {
            request
                .bearer_auth("let-me-in")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    };
    let models = json_of(client.get(format!("{url}/models")));
    assert_eq!(models["data"][0]["id"], SCRIPTED_MODEL, "{models}");

    // A whole reply.
    let reply = json_of(
        client
            .post(format!("{url}/chat/completions"))
            .json(&json!({"model": SCRIPTED_MODEL, "messages": [{"role": "user", "content": "hi"}]})),
    );
    assert_eq!(reply["choices"][0]["message"]["content"], SCRIPTED_REPLY, "{reply}");

    // A stream that runs until dropped: counted while it runs, and the chat still answers.
    let mut stream = block_on(async {
        client
            .post(format!("{url}/chat/completions"))
            .bearer_auth("let-me-in")
            .json(&json!({"model": SCRIPTED_MODEL, "messages": [{"role": "user", "content": "sing forever"}], "stream": true}))
            .send()
            .await
            .unwrap()
    });
    assert_eq!(stream.status(), 200);
    let first = block_on(stream.chunk()).unwrap().expect("a first chunk");
    assert!(String::from_utf8_lossy(&first).contains("data:"), "{first:?}");
    assert_eq!(running(&h), 1);
    let turn = h
        .invoke("send_message", json!({ "text": "hello", "onEvent": h.channel().1 }))
        .unwrap();
    assert_eq!(turn["text"], SCRIPTED_REPLY);
    let more = block_on(stream.chunk()).unwrap().expect("the API's stream goes on");
    assert!(!more.is_empty());
    assert_eq!(running(&h), 1);
    drop(stream);
    wait_for("the dropped stream to end", || running(&h) == 0);

    // Off: nothing listens any more.
    let mut view = h.invoke("get_settings", json!({})).unwrap();
    view["apiEnabled"] = json!(false);
    let status = h.invoke("save_settings", json!({ "settings": view })).unwrap();
    assert_eq!(status["api"]["url"], Value::Null);
    assert!(
        block_on(client.get(format!("{url}/models")).send()).is_err(),
        "still listening"
    );
}

#[test]
fn a_port_in_use_is_refused_by_name_and_the_api_keeps_serving() {
    let h = scripted();
    turn_on(&h, 0, None).unwrap();
    let url = api_url(&h);
    let settings_before = h.invoke("get_settings", json!({})).unwrap();

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let e = turn_on(&h, port, None).unwrap_err();
    assert_eq!(e["code"], "invalid_settings", "{e}");
    assert_eq!(e["field"], "apiPort", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains(&port.to_string()) && message.contains("choose another port"),
        "{message}"
    );
    // Nothing was saved, and the API still serves where it did, with no token.
    assert_eq!(h.invoke("get_settings", json!({})).unwrap(), settings_before);
    assert_eq!(api_url(&h), url);
    let status = block_on(reqwest::get(format!("{url}/models"))).unwrap().status();
    assert_eq!(status, 200);
    let status = h.invoke("app_status", json!({})).unwrap();
    assert!(
        status["api"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("choose another port"),
        "{status}"
    );

    // A token with a space in it names its field too.
    let e = turn_on(&h, 0, Some("two words")).unwrap_err();
    assert_eq!(e["field"], "apiToken", "{e}");

    // A free port: the API moves there and the old one is let go.
    drop(taken);
    turn_on(&h, port, None).unwrap();
    assert_eq!(api_url(&h), format!("http://127.0.0.1:{port}/v1"));
    assert_eq!(h.invoke("app_status", json!({})).unwrap()["api"]["error"], Value::Null);
    assert!(
        block_on(reqwest::get(format!("{url}/models"))).is_err(),
        "the old port still answers"
    );
    // The same port again with a token: restarted in place.
    turn_on(&h, port, Some("now-secret")).unwrap();
    let status = block_on(reqwest::get(format!("http://127.0.0.1:{port}/v1/models")))
        .unwrap()
        .status();
    assert_eq!(status, 401);
}
