//! Where the loaded model runs reaches the manager's health (the app's status, the tray
//! and the dashboard read it there) from the backend's model list, taken once at load
//! and again when the backend tells that it changed by itself.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hearth_api::testing::{ScriptedBackend, SCRIPTED_MODEL};
use hearth_core::backend::BoxFuture;
use hearth_core::{Backend, BackendError, Changes, EventStream, GenerateRequest, Health, ModelDescriptor};
use hearth_manager::{BackendKind, BackendManager, ManagerOptions, ModelPlacement, Settings};
use hearth_store::{AsyncStore, StoreOptions};
use tokio::sync::watch;

/// The scripted backend, with its model listed where Hearth's worker would place it.
struct Placed {
    inner: ScriptedBackend,
    device: &'static str,
    note: Option<&'static str>,
}

impl Backend for Placed {
    fn name(&self) -> &str {
        "placed"
    }
    fn load<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        self.inner.load(model)
    }
    fn unload(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        self.inner.unload()
    }
    fn models(&self) -> BoxFuture<'_, Result<Vec<ModelDescriptor>, BackendError>> {
        Box::pin(async move {
            let mut models = self.inner.models().await?;
            for m in &mut models {
                m.device = Some(self.device.into());
                m.gpu_layers = Some(if self.device == "CPU" { 0 } else { 20 });
                m.layers_total = Some(31);
                m.placement_note = self.note.map(str::to_owned);
            }
            Ok(models)
        })
    }
    fn health(&self) -> BoxFuture<'_, Health> {
        self.inner.health()
    }
    fn generate(&self, request: GenerateRequest) -> BoxFuture<'_, Result<EventStream, BackendError>> {
        self.inner.generate(request)
    }
}

async fn manager(dir: &tempfile::TempDir) -> BackendManager {
    let store = AsyncStore::open(dir.path().join("hearth.db"), StoreOptions::default())
        .await
        .expect("store");
    BackendManager::new(Settings::default(), ManagerOptions::new("/nonexistent/hearth"), store)
}

async fn embedded_placement(manager: &BackendManager) -> Option<ModelPlacement> {
    let health = manager.health().await;
    let embedded = health.backends.iter().find(|b| b.backend == BackendKind::Embedded);
    embedded.and_then(|b| b.placement.clone())
}

#[tokio::test]
async fn the_health_says_where_the_loaded_model_runs_and_why_not_where_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manager = manager(&dir).await;
    assert_eq!(embedded_placement(&manager).await, None, "nothing loaded");

    let note = "Vulkan0 had room for 20 of the 31 layers asked for; the rest run on the CPU";
    let placed = Placed {
        inner: ScriptedBackend::new(),
        device: "Vulkan0",
        note: Some(note),
    };
    manager
        .install(BackendKind::Embedded, Arc::new(placed), SCRIPTED_MODEL)
        .await
        .expect("install");
    let placement = embedded_placement(&manager).await.expect("placed");
    assert_eq!(placement.device, "Vulkan0");
    assert_eq!((placement.gpu_layers, placement.layers_total), (Some(20), Some(31)));
    assert_eq!(placement.note.as_deref(), Some(note));
    assert_eq!(placement.summary(), "on Vulkan0: 20/31 layers (the rest on CPU)");

    // A reload on the CPU replaces it; unloading clears it.
    let on_cpu = Placed {
        inner: ScriptedBackend::new(),
        device: "CPU",
        note: None,
    };
    manager
        .install(BackendKind::Embedded, Arc::new(on_cpu), SCRIPTED_MODEL)
        .await
        .expect("install");
    let placement = embedded_placement(&manager).await.expect("placed");
    assert_eq!((placement.summary(), placement.note), ("on CPU".to_owned(), None));
    manager.unload(BackendKind::Embedded).await;
    assert_eq!(embedded_placement(&manager).await, None);
}

#[tokio::test]
async fn a_backend_that_does_not_say_has_no_placement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manager = manager(&dir).await;
    manager
        .install(BackendKind::Embedded, Arc::new(ScriptedBackend::new()), SCRIPTED_MODEL)
        .await
        .expect("install");
    let health = manager.health().await;
    let embedded = health.backends.iter().find(|b| b.backend == BackendKind::Embedded);
    assert_eq!(embedded.and_then(|b| b.loaded_model.as_deref()), Some(SCRIPTED_MODEL));
    assert_eq!(embedded_placement(&manager).await, None);
}

/// A backend whose placement moves by itself (as a worker restarted with fewer layers
/// after its GPU ran out of memory), telling each move on its changes; it counts how
/// often its models are listed.
struct Moving {
    inner: ScriptedBackend,
    layers: Arc<AtomicU32>,
    listed: Arc<AtomicUsize>,
    moved: watch::Receiver<u32>,
}

impl Backend for Moving {
    fn name(&self) -> &str {
        "moving"
    }
    fn load<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        self.inner.load(model)
    }
    fn unload(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        self.inner.unload()
    }
    fn models(&self) -> BoxFuture<'_, Result<Vec<ModelDescriptor>, BackendError>> {
        self.listed.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let mut models = self.inner.models().await?;
            for m in &mut models {
                m.device = Some("Vulkan0".into());
                m.gpu_layers = Some(self.layers.load(Ordering::SeqCst));
                m.layers_total = Some(31);
            }
            Ok(models)
        })
    }
    fn health(&self) -> BoxFuture<'_, Health> {
        self.inner.health()
    }
    fn generate(&self, request: GenerateRequest) -> BoxFuture<'_, Result<EventStream, BackendError>> {
        self.inner.generate(request)
    }
    fn changes(&self) -> Option<Changes> {
        Some(Box::pin(futures_util::stream::unfold(
            self.moved.clone(),
            |mut moved| async move {
                moved.changed().await.ok()?;
                Some(((), moved))
            },
        )))
    }
}

#[tokio::test]
async fn a_placement_that_moves_by_itself_is_pushed_and_a_status_never_asks_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manager = manager(&dir).await;
    let (tell, moved) = watch::channel(0);
    let layers = Arc::new(AtomicU32::new(20));
    let listed = Arc::new(AtomicUsize::new(0));
    let backend: Arc<dyn Backend> = Arc::new(Moving {
        inner: ScriptedBackend::new(),
        layers: Arc::clone(&layers),
        listed: Arc::clone(&listed),
        moved,
    });
    let held = Arc::downgrade(&backend);
    manager
        .install(BackendKind::Embedded, backend, SCRIPTED_MODEL)
        .await
        .expect("install");
    let listed_at_install = listed.load(Ordering::SeqCst);
    let mut ticks = manager.watch_changes();
    for _ in 0..3 {
        let placement = embedded_placement(&manager).await.expect("placed");
        assert_eq!(placement.gpu_layers, Some(20));
    }
    assert_eq!(
        listed.load(Ordering::SeqCst),
        listed_at_install,
        "a status asks nothing"
    );

    // The worker restarted with 10 layers: the manager hears it and reads it once.
    layers.store(10, Ordering::SeqCst);
    tell.send_replace(1);
    // Hang-sized: the tick comes as soon as the follower has read the placement.
    tokio::time::timeout(Duration::from_secs(60), ticks.changed())
        .await
        .expect("a tick within a minute")
        .expect("the manager is alive");
    let placement = embedded_placement(&manager).await.expect("placed");
    assert_eq!(placement.gpu_layers, Some(10), "{placement:?}");
    assert_eq!(
        listed.load(Ordering::SeqCst),
        listed_at_install + 1,
        "read once, on the change"
    );

    // Following holds the backend weakly: unloading drops it.
    manager.unload(BackendKind::Embedded).await;
    assert!(held.upgrade().is_none(), "the follower kept the unloaded backend alive");
}
