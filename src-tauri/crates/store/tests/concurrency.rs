//! 5 reader threads and 2 async writer tasks on one real database file for
//! 10 s: no error (busy, locked or other) reaches a caller, and every reader
//! sees every written row exactly once.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_store::{
    AsyncStore, MessageId, NewMessage, NewSession, Role, SessionId, Store, StoreError, StoreOptions, LOCAL_USER,
};

const RUN_FOR: Duration = Duration::from_secs(10);
/// Each writer also writes at least this many messages, however slow the machine
/// (a count, not a rate: a busy machine takes longer rather than failing).
const AT_LEAST: usize = 600;
/// Only a hang takes this long: 1,200 commits take about a second on an idle machine.
const HANG: Duration = Duration::from_secs(300);
const READERS: usize = 5;
const WRITERS: usize = 2;

#[test]
fn five_readers_two_writers_ten_seconds() {
    let dir = tempfile::tempdir().unwrap();
    // Fewer pooled connections than reader threads: readers also contend for
    // the pool, not only for the database.
    let store = Store::open_with(
        dir.path().join("hearth.db"),
        StoreOptions {
            readers: 4,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let sessions: Vec<SessionId> = (0..2)
        .map(|i| {
            store
                .create_session(&NewSession {
                    title: format!("s{i}"),
                    ..NewSession::default()
                })
                .unwrap()
                .id
        })
        .collect();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let writers_done = Arc::new(AtomicBool::new(false));

    // Readers: tail both sessions, checking order and uniqueness as they go.
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (store, sessions, errors, done) =
                (store.clone(), sessions.clone(), errors.clone(), writers_done.clone());
            std::thread::spawn(move || {
                let mut seen: HashMap<MessageId, String> = HashMap::new();
                let mut last: Vec<Option<MessageId>> = vec![None; sessions.len()];
                let mut rounds = 0u64;
                let record = |e: StoreError| errors.lock().unwrap().push(format!("reader {r}: {e:?}"));
                loop {
                    // Read once more after the writers finished: the final drain.
                    let finished = done.load(Ordering::SeqCst);
                    for (i, session) in sessions.iter().enumerate() {
                        loop {
                            match store.messages_after(session, last[i], 64) {
                                Ok(batch) => {
                                    for m in &batch {
                                        assert!(Some(m.id) > last[i], "reader {r}: out of order");
                                        assert_eq!(&m.session_id, session);
                                        assert!(
                                            seen.insert(m.id, m.content.clone()).is_none(),
                                            "reader {r} saw {} twice",
                                            m.id
                                        );
                                        last[i] = Some(m.id);
                                    }
                                    if batch.len() < 64 {
                                        break;
                                    }
                                }
                                Err(e) => {
                                    record(e);
                                    break;
                                }
                            }
                        }
                    }
                    // Other reads the app makes, for load.
                    rounds += 1;
                    if rounds % 8 == 0 {
                        if let Err(e) = store.search_messages("payload", None, 20) {
                            record(e);
                        }
                        if let Err(e) = store.list_sessions(LOCAL_USER, 50) {
                            record(e);
                        }
                        if let Err(e) = store.recent_messages(&sessions[r % 2], 50) {
                            record(e);
                        }
                    }
                    if finished {
                        return seen;
                    }
                }
            })
        })
        .collect();

    // Writers: two tokio tasks through the async API.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let async_store = AsyncStore::from(store.clone());
    let written: HashMap<MessageId, String> = runtime.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (store, sessions, errors) = (async_store.clone(), sessions.clone(), errors.clone());
                tokio::spawn(async move {
                    let mut acked = HashMap::new();
                    let mut n = 0usize;
                    while n < AT_LEAST || started.elapsed() < RUN_FOR {
                        assert!(started.elapsed() < HANG, "writer {w} wrote {n} messages in {HANG:?}");
                        let content = format!("writer {w} message {n} payload");
                        let session = sessions[(n + w) % sessions.len()].clone();
                        match store
                            .append_message(session, NewMessage::new(Role::Assistant, content.clone()))
                            .await
                        {
                            Ok(id) => {
                                assert!(acked.insert(id, content).is_none(), "id {id} reused");
                            }
                            Err(e) => errors.lock().unwrap().push(format!("writer {w}: {e:?}")),
                        }
                        n += 1;
                    }
                    acked
                })
            })
            .collect();
        let mut all = HashMap::new();
        for task in tasks {
            for (id, content) in task.await.unwrap() {
                assert!(all.insert(id, content).is_none(), "two writers got id {id}");
            }
        }
        all
    });
    writers_done.store(true, Ordering::SeqCst);

    let seen_by: Vec<HashMap<MessageId, String>> = readers.into_iter().map(|h| h.join().unwrap()).collect();
    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "{} errors reached callers, first: {:?}",
        errors.len(),
        errors.first()
    );
    assert!(
        written.len() >= WRITERS * AT_LEAST,
        "only {} messages written",
        written.len()
    );
    for (r, seen) in seen_by.iter().enumerate() {
        assert_eq!(seen.len(), written.len(), "reader {r} saw a different number of rows");
        assert_eq!(seen, &written, "reader {r} saw different rows");
    }
    // And the database agrees.
    let mut stored: Vec<MessageId> = Vec::new();
    for s in &sessions {
        stored.extend(store.list_messages(s).unwrap().iter().map(|m| m.id));
    }
    let unique: HashSet<_> = stored.iter().copied().collect();
    assert_eq!(unique.len(), stored.len());
    assert_eq!(unique, written.keys().copied().collect());
    let report = store.integrity_check().unwrap();
    assert!(report.ok, "{report:?}");
    // Sustained writes with readers always active must not grow the WAL
    // without bound (each message writes ~10 pages: unchecked, thousands of
    // messages make hundreds of MB); the checkpointer restarts it at ~16 MiB.
    let wal = store.stats().unwrap().wal_size_bytes;
    assert!(wal <= 64 << 20, "WAL grew to {} MiB", wal >> 20);
    println!(
        "{} messages written, each read back once by each of {READERS} readers; WAL {} KiB",
        written.len(),
        wal >> 10
    );
}
