//! Crash safety: a child process writes and prints the id of every write as
//! soon as it is acknowledged; the test SIGKILLs it at random moments, 50 times.
//! After each kill: the integrity check passes, every acknowledged write is
//! there, and no transaction is half-visible (each write is a message plus its
//! performance record plus the session's message count, in one transaction:
//! all or nothing).
//!
//! The child is this test binary run again with `HEARTH_STORE_CRASH_CHILD` set,
//! executing the ignored test `crash_child_process`. Reproduce a run with the
//! seed it prints: `HEARTH_CRASH_SEED=<seed> cargo test --release -p hearth-store --test crash`.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hearth_store::{MessageId, NewMessage, NewSession, PerfMetrics, PerfRecord, Role, SessionId, Store};

const CHILD_ENV: &str = "HEARTH_STORE_CRASH_CHILD";
const KILLS: usize = 50;

/// The child: opens the database, creates a session, then appends messages
/// with their performance records forever, printing `SESSION <id>` and
/// `MSG <id> <perf id>` after each commit returns.
#[test]
#[ignore = "run by `crash_safety_under_sigkill` in a child process"]
fn crash_child_process() {
    let path = std::env::var_os(CHILD_ENV).expect("only run as the crash test's child");
    let store = Store::open(PathBuf::from(path)).unwrap();
    let mut out = std::io::stdout().lock();
    let session = store.create_session(&NewSession::default()).unwrap();
    writeln!(out, "SESSION {}", session.id).unwrap();
    out.flush().unwrap();
    for n in 0u64.. {
        // Every 7th message is large, so that transactions span many pages.
        let size = if n % 7 == 0 { 40_000 } else { (n as usize * 37) % 2_000 };
        let message = NewMessage::new(Role::Assistant, format!("reply {n} {}", "z".repeat(size)));
        let record = PerfRecord {
            operation: "generate".into(),
            latency_ms: n as f64,
            backend: "crash".into(),
            model: "test".into(),
            metrics: PerfMetrics {
                decode_tps: Some(10.0),
                ..PerfMetrics::default()
            },
            ..PerfRecord::default()
        };
        let (id, perf) = store.append_message_with_perf(&session.id, &message, &record).unwrap();
        writeln!(out, "MSG {} {perf}", id.0).unwrap();
        out.flush().unwrap();
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[derive(Default)]
struct Acked {
    sessions: HashSet<String>,
    messages: HashSet<i64>,
    perf: HashSet<i64>,
}

/// Runs the child on `db`, kills it after `after_acks` acknowledgements plus
/// `extra` delay, and records every acknowledgement it printed in full.
fn run_and_kill(db: &Path, after_acks: u64, extra: Duration, acked: &mut Acked) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, db)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match lines.read_line(&mut line) {
                // A line cut short by the kill (no newline) is no acknowledgement.
                Ok(n) if n > 0 && line.ends_with('\n') => {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    });
    let mut lines = Vec::new();
    // A hang detector, not a speed claim: the child acknowledges its first write
    // within a second even on a busy machine; only a stuck child reaches this.
    let deadline = Instant::now() + Duration::from_secs(120);
    while (lines.len() as u64) < after_acks {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => lines.push(line),
            Err(e) => {
                let _ = child.kill();
                panic!("child stopped acknowledging after {} lines: {e}", lines.len());
            }
        }
    }
    std::thread::sleep(extra);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    for line in lines {
        let mut parts = line.split_whitespace();
        match parts.next() {
            Some("SESSION") => {
                acked.sessions.insert(parts.next().unwrap().to_owned());
            }
            Some("MSG") => {
                acked.messages.insert(parts.next().unwrap().parse().unwrap());
                acked.perf.insert(parts.next().unwrap().parse().unwrap());
            }
            _ => {} // the test harness's own output
        }
    }
}

/// Everything a crash must not break.
fn verify(db: &Path, acked: &Acked, round: usize) {
    if !db.exists() {
        assert!(acked.sessions.is_empty(), "round {round}: database vanished");
        return;
    }
    let store = Store::open(db).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
    let report = store.integrity_check().unwrap();
    assert!(report.ok, "round {round}: {report:?}");
    for s in &acked.sessions {
        assert!(
            store.get_session(&SessionId::from(s.as_str())).unwrap().is_some(),
            "round {round}: acknowledged session {s} lost"
        );
    }
    for &id in &acked.messages {
        assert!(
            store.get_message(MessageId(id)).unwrap().is_some(),
            "round {round}: acknowledged message {id} lost"
        );
    }
    drop(store);
    let raw = rusqlite::Connection::open(db).unwrap();
    let count = |sql: &str| -> i64 { raw.query_row(sql, [], |r| r.get(0)).unwrap() };
    // Message without its record, record without its message.
    assert_eq!(
        count(
            "SELECT count(*) FROM chat_history h
             WHERE NOT EXISTS (SELECT 1 FROM performance_logs p WHERE p.message_id = h.id)"
        ),
        0,
        "round {round}: a message without its performance record"
    );
    assert_eq!(
        count("SELECT count(*) FROM performance_logs WHERE message_id IS NULL"),
        0,
        "round {round}: a performance record without its message"
    );
    // The trigger-maintained count moved with the rows.
    assert_eq!(
        count(
            "SELECT count(*) FROM sessions s
             WHERE s.message_count != (SELECT count(*) FROM chat_history h WHERE h.session_id = s.id)"
        ),
        0,
        "round {round}: a session's message_count disagrees with its messages"
    );
    let stored_perf: HashSet<i64> = raw
        .prepare("SELECT id FROM performance_logs")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        acked.perf.is_subset(&stored_perf),
        "round {round}: acknowledged record lost"
    );
}

#[test]
fn crash_safety_under_sigkill() {
    let seed = std::env::var("HEARTH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("HEARTH_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let main_db = dir.path().join("hearth.db");
    let mut main_acked = Acked::default();
    let started = Instant::now();
    let mut total_acks = 0;
    for round in 0..KILLS {
        if round % 10 == 5 {
            // A new database, killed early: during open, migration, or the
            // first writes.
            let db = dir.path().join(format!("fresh-{round}.db"));
            let mut acked = Acked::default();
            run_and_kill(&db, 0, Duration::from_micros(rng.below(30_000)), &mut acked);
            verify(&db, &acked, round);
            total_acks += acked.messages.len();
        } else {
            let acks = rng.below(40);
            let extra = Duration::from_micros(rng.below(3_000));
            let before = main_acked.messages.len();
            run_and_kill(&main_db, acks, extra, &mut main_acked);
            verify(&main_db, &main_acked, round);
            total_acks += main_acked.messages.len() - before;
        }
    }
    println!(
        "{KILLS} kills in {:?}, {total_acks} acknowledged messages, all intact",
        started.elapsed()
    );
    assert!(main_acked.messages.len() > 100, "too few writes were exercised");
}
