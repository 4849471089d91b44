//! When the database fails mid-chat (here: the disk fills up), history goes off for
//! the run and the conversation goes on, every turn still in the next prompt.
//! Needs mount rights (root, as `make test` and CI run) for a small tmpfs; without
//! them it fails and says so.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::manager_with_store;
use hearth_api::testing::SCRIPTED_REPLY;
use hearth_core::{Role, SamplingParams};
use hearth_manager::{Settings, StopSignal};
use hearth_store::{AsyncStore, StoreOptions};

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(point: &Path) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
            .arg(point)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs(point.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_disk_turns_history_off_and_the_chat_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let point = dir.path().join("small");
    std::fs::create_dir_all(&point).expect("mkdir");
    let _disk = match Tmpfs::mount(&point) {
        Ok(disk) => disk,
        Err(e) => panic!("a full disk needs mount rights (run as root, as `make test` and CI do): {e}"),
    };
    let store = AsyncStore::open(point.join("hearth.db"), StoreOptions::default())
        .await
        .expect("store");
    let fixture = manager_with_store(Settings::default(), store, dir).await;
    let manager = &fixture.manager;
    let first = manager
        .send(
            "before the disk fills",
            SamplingParams::greedy(64),
            &StopSignal::default(),
            |_| {},
        )
        .await
        .expect("first turn");
    assert!(first.saved);

    // Fill what is left of the disk.
    let mut filler = std::fs::File::create(point.join("filler")).expect("filler");
    let block = vec![0u8; 64 * 1024];
    while filler.write_all(&block).is_ok() {}

    let second = manager
        .send(
            "after the disk filled",
            SamplingParams::greedy(64),
            &StopSignal::default(),
            |_| {},
        )
        .await
        .expect("the chat goes on");
    assert_eq!(second.text, SCRIPTED_REPLY);
    assert!(!second.saved);
    let health = manager.health().await;
    let why = health.history.expect("history is reported off");
    assert!(why.contains("disk full"), "{why}");

    let third = manager
        .send("and later", SamplingParams::greedy(64), &StopSignal::default(), |_| {})
        .await
        .expect("still going");
    assert!(!third.saved);
    let roles: Vec<Role> = manager.conversation().messages().iter().map(|m| m.role).collect();
    assert_eq!(roles.len(), 6, "every turn stays in the conversation: {roles:?}");
    // What was saved before the disk filled is still there.
    let saved = manager
        .store()
        .list_messages(first.session.expect("session"))
        .await
        .expect("reads still work");
    assert!(saved.len() >= 2);
    assert_eq!(saved[0].content, "before the disk fills");
}
