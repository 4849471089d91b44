//! A manager over a real store file, with backends on loopback or in memory.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use hearth_api::testing::ScriptedBackend;
use hearth_api::{ApiConfig, Metrics};
use hearth_manager::settings::{CooldownSettings, RetrySettings, VllmSettings};
use hearth_manager::{BackendKind, BackendManager, ManagerOptions, Settings};
use hearth_store::{AsyncStore, Message, Role, StoreOptions};

/// The scripted backend served over real HTTP (SSE) on a free loopback port.
pub async fn scripted_server() -> (SocketAddr, Arc<ScriptedBackend>) {
    let backend = Arc::new(ScriptedBackend::new());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = hearth_api::router(
        Arc::clone(&backend) as Arc<dyn hearth_core::Backend>,
        ApiConfig::new(addr.port()),
        Arc::new(Metrics::new()),
    );
    tokio::spawn(hearth_api::serve(listener, router, std::future::pending()));
    (addr, backend)
}

pub fn settings(vllm_url: &str, stall_timeout_ms: u64) -> Settings {
    Settings {
        active: BackendKind::Vllm,
        fallback: vec![BackendKind::Embedded],
        vllm: Some(VllmSettings {
            url: vllm_url.to_owned(),
            model: Some(hearth_api::testing::SCRIPTED_MODEL.into()),
            api_key: None,
            stall_timeout_ms,
        }),
        retry: RetrySettings {
            retries: 3,
            first_delay_ms: 10,
        },
        cooldown: CooldownSettings {
            failures: 2,
            window_secs: 600,
            cooldown_secs: 600,
        },
        ..Settings::default()
    }
}

pub struct Fixture {
    pub manager: BackendManager,
    /// The fallback backend, in memory, standing in for the embedded engine.
    pub fallback: Arc<ScriptedBackend>,
    _dir: tempfile::TempDir,
}

/// A manager with `settings`, a store in a temporary directory, and a scripted backend
/// installed as the embedded one (the fallback).
pub async fn manager(settings: Settings) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AsyncStore::open(dir.path().join("hearth.db"), StoreOptions::default())
        .await
        .expect("store");
    manager_with_store(settings, store, dir).await
}

/// [`manager`] over a store the test opened (`dir` is kept alive with it).
pub async fn manager_with_store(settings: Settings, store: AsyncStore, dir: tempfile::TempDir) -> Fixture {
    let manager = BackendManager::new(settings, ManagerOptions::new("/nonexistent/hearth"), store);
    let fallback = Arc::new(ScriptedBackend::new());
    manager
        .install(
            BackendKind::Embedded,
            Arc::clone(&fallback) as _,
            hearth_api::testing::SCRIPTED_MODEL,
        )
        .await
        .expect("install the fallback");
    Fixture {
        manager,
        fallback,
        _dir: dir,
    }
}

pub async fn history(manager: &BackendManager) -> Vec<Message> {
    let session = manager.conversation().session().expect("a session");
    manager.store().list_messages(session).await.expect("messages")
}

pub fn roles(messages: &[Message]) -> Vec<Role> {
    messages.iter().map(|m| m.role).collect()
}
