//! A loaded backend's own changes, followed so that nobody polls for them: a worker's
//! loading progress, its crash, its restart (perhaps with fewer layers on the GPU after
//! it ran out of memory there). On each change the manager's tick count moves, which
//! the app follows to tell its windows and tray; when the backend is ready again, its
//! placement is read once and kept, so a status never asks the backend where it runs.

use std::sync::{Arc, Mutex, Weak};

use futures_util::StreamExt;
use hearth_core::Backend;
use tokio::sync::watch;

use crate::placement::ModelPlacement;

/// Where a backend's model runs, as last told: written at install and by the follower.
pub(super) type SharedPlacement = Arc<Mutex<Option<ModelPlacement>>>;

/// The task following one backend; it stops when the backend's slot is gone.
pub(super) struct Follower(tokio::task::AbortHandle);

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Follows `backend`'s changes (if it tells them) until it is dropped or the follower
/// is. It holds the backend weakly: following must not keep a worker alive.
pub(super) fn follow(
    backend: &Arc<dyn Backend>,
    placement: SharedPlacement,
    ticks: Arc<watch::Sender<u64>>,
) -> Option<Follower> {
    let mut changes = backend.changes()?;
    let backend: Weak<dyn Backend> = Arc::downgrade(backend);
    let task = tokio::spawn(async move {
        while changes.next().await.is_some() {
            let Some(backend) = backend.upgrade() else { break };
            reread_placement(backend.as_ref(), &placement).await;
            drop(backend);
            ticks.send_modify(|n| *n = n.wrapping_add(1));
        }
    });
    Some(Follower(task.abort_handle()))
}

/// A backend that reported a placement when it loaded, ready again: where it runs now.
async fn reread_placement(backend: &dyn Backend, placement: &SharedPlacement) {
    let reports_placement = super::lock(placement).is_some();
    if !reports_placement || !backend.health().await.ready {
        return;
    }
    let now = backend
        .models()
        .await
        .ok()
        .and_then(|models| models.first().and_then(ModelPlacement::from_descriptor));
    if let Some(now) = now {
        *super::lock(placement) = Some(now);
    }
}
