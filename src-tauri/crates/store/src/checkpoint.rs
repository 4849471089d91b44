//! The background checkpointer: keeps the WAL short without making a writer's commit
//! copy pages back into the database file.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::db::open_error;
use crate::error::{Result, StoreError};

/// Commits between checkpoints when writes are continuous.
const CHECKPOINT_EVERY_COMMITS: u64 = 256;
/// When writes pause, the WAL is checkpointed after this long.
const CHECKPOINT_IDLE: Duration = Duration::from_millis(500);
/// WAL size (frames of one page) past which the WAL is reset with a `RESTART`
/// checkpoint (~16 MiB at 4 KiB pages).
const WAL_RESTART_FRAMES: i64 = 4096;
/// How long a `RESTART` checkpoint waits for readers still using the old WAL.
/// Reads take well under a millisecond; if one is slower the restart is simply
/// retried after the next passive checkpoint.
const RESTART_READER_WAIT: Duration = Duration::from_millis(20);

/// Checkpoints the WAL on its own thread, so a writer's commit does not
/// include copying pages back into the database file.
///
/// Normally it runs `PASSIVE` checkpoints on its own connection, which never
/// block the writer or readers. Under sustained writes that is not enough: the
/// WAL only starts over when a writer finds it *completely* checkpointed, which
/// never happens while commits keep arriving during each checkpoint, so the
/// file would grow without bound (hundreds of MB in a benchmark). Past
/// [`WAL_RESTART_FRAMES`] the checkpointer therefore asks the writer to reset
/// the WAL right after its next commit (see [`restart_wal`]); the writer
/// already holds the write lock, so nothing has to wait for it (taking the
/// writer's mutex from this thread instead waited 100+ ms under load). Most
/// pages were already copied by the passive checkpoints, so the restart copies
/// little: one write in several hundred, and the reads that arrive meanwhile,
/// pay for an fsync, which keeps it out of the p99.
pub(crate) struct Checkpointer {
    commits: Arc<AtomicU64>,
    restart_wanted: Arc<AtomicBool>,
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(crate) fn start(path: &Path) -> Result<Checkpointer> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, e.into()))?;
        let commits = Arc::new(AtomicU64::new(0));
        let (wake, wakeups) = mpsc::sync_channel::<()>(1);
        let counter = Arc::clone(&commits);
        let restart_wanted = Arc::new(AtomicBool::new(false));
        let wanted = Arc::clone(&restart_wanted);
        let thread = std::thread::Builder::new()
            .name("hearth-store-checkpoint".into())
            .spawn(move || {
                let mut done = 0u64;
                let mut last = Instant::now();
                loop {
                    let stop = matches!(
                        wakeups.recv_timeout(CHECKPOINT_IDLE),
                        Err(RecvTimeoutError::Disconnected)
                    );
                    if stop {
                        break;
                    }
                    let now = counter.load(Ordering::Relaxed);
                    let due =
                        now - done >= CHECKPOINT_EVERY_COMMITS || (now != done && last.elapsed() >= CHECKPOINT_IDLE);
                    if due {
                        if checkpoint(&conn, "PASSIVE") >= WAL_RESTART_FRAMES {
                            wanted.store(true, Ordering::Relaxed);
                        }
                        done = now;
                        last = Instant::now();
                    }
                }
            })
            .map_err(|e| StoreError::Io {
                path: path.to_path_buf(),
                source: e,
            })?;
        Ok(Checkpointer {
            commits,
            restart_wanted,
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// Called by the writer after every commit; wakes the thread every N
    /// commits. Returns whether the writer should now reset the WAL.
    pub(crate) fn committed(&self) -> bool {
        let n = self.commits.fetch_add(1, Ordering::Relaxed) + 1;
        if n % CHECKPOINT_EVERY_COMMITS == 0 {
            if let Some(wake) = &self.wake {
                // Full means a wake-up is already pending: nothing to add.
                let _ = wake.try_send(());
            }
        }
        self.restart_wanted.swap(false, Ordering::Relaxed)
    }
}

/// Resets the WAL from the writer connection, which the caller holds (so no
/// commit can add frames meanwhile), outside any transaction.
///
/// A `RESTART` checkpoint has to wait until no reader uses the WAL. SQLite
/// waits by polling (its busy handler sleeps 1, 2, 5, 10... ms), and under CPU
/// contention some pooled reader is nearly always mid-transaction, so polling
/// alone failed again and again and the WAL reached hundreds of MB. Instead:
/// a `PASSIVE` pass first copies what it can with readers running, then the
/// reader gate is taken exclusively, which waits (blocking, not polling) for
/// the pool's in-flight reads and holds new ones back while `RESTART` copies
/// the last frames. Only readers in *other* processes are polled for, at most
/// [`RESTART_READER_WAIT`]; failing that, the WAL is restarted later.
pub(crate) fn restart_wal(writer: &Connection, gate: &RwLock<()>, busy_timeout: Duration) {
    checkpoint(writer, "PASSIVE");
    let _gate = gate.write().unwrap_or_else(PoisonError::into_inner);
    if writer.busy_timeout(RESTART_READER_WAIT).is_ok() {
        checkpoint(writer, "RESTART");
    }
    if let Err(e) = writer.busy_timeout(busy_timeout) {
        tracing::warn!(error = %e, "could not restore the writer's busy timeout");
    }
}

/// Runs one checkpoint; returns the WAL's size in frames (0 when it failed).
fn checkpoint(conn: &Connection, mode: &str) -> i64 {
    let result = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    });
    match result {
        Ok((busy, log, done)) => {
            tracing::trace!(mode, busy, log, done, "WAL checkpoint");
            log
        }
        // The next checkpoint (or the final close) catches up; a failed
        // checkpoint loses nothing, the frames stay in the WAL.
        Err(e) => {
            tracing::warn!(mode, error = %e, "WAL checkpoint failed");
            0
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
