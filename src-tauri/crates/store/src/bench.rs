//! `hearth bench store`: write and read latency under concurrent load, on a
//! real file, through the same API the app uses.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hearth_core::Role;
use serde::Serialize;

use crate::db::{Store, StoreOptions, Synchronous};
use crate::error::{Result, StoreError};
use crate::messages::{MessageMetadata, NewMessage};
use crate::sessions::{NewSession, SessionId};

/// Target p99 of one message append, milliseconds.
pub const WRITE_P99_TARGET_MS: f64 = 5.0;
/// Target p99 of one read (the last 50 messages of a session), milliseconds.
pub const READ_P99_TARGET_MS: f64 = 2.0;

/// Settings of [`bench_with`].
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub duration: Duration,
    pub readers: usize,
    pub writers: usize,
    pub synchronous: Synchronous,
    /// Sessions the load is spread over.
    pub sessions: usize,
    /// Messages each session starts with, so reads return full pages.
    pub seed_messages: usize,
    /// Bytes of text per written message.
    pub message_bytes: usize,
    /// Pause of each thread between two operations. Zero (the default) is a
    /// closed loop: maximum throughput, and on a machine with fewer cores than
    /// threads the latencies then include waiting for a CPU. A pause models
    /// app-like load (a UI does not read in a tight loop) and measures the
    /// store's own latency.
    pub think_time: Duration,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            duration: Duration::from_secs(10),
            readers: 5,
            writers: 2,
            synchronous: Synchronous::Normal,
            sessions: 20,
            seed_messages: 50,
            message_bytes: 400,
            think_time: Duration::ZERO,
        }
    }
}

/// The result, printed by `hearth bench store` as one JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct StoreBenchReport {
    pub bench: &'static str,
    pub path: PathBuf,
    pub sqlite_version: String,
    pub synchronous: Synchronous,
    pub duration_s: f64,
    pub readers: usize,
    pub writers: usize,
    pub think_time_ms: f64,
    /// CPU cores available to the process.
    pub cpus: usize,
    /// Message appends (one transaction each).
    pub writes: u64,
    /// Reads of the last 50 messages of a random session.
    pub reads: u64,
    /// Calls that returned an error (expected 0).
    pub errors: u64,
    pub write_p50_ms: f64,
    pub write_p99_ms: f64,
    pub write_max_ms: f64,
    pub read_p50_ms: f64,
    pub read_p99_ms: f64,
    pub read_max_ms: f64,
    pub messages_per_sec: f64,
    pub reads_per_sec: f64,
    pub write_p99_target_ms: f64,
    pub read_p99_target_ms: f64,
    pub meets_targets: bool,
    /// Database file at the end of the run.
    pub db_bytes: u64,
    /// WAL file at the end of the run (bounded by the checkpointer).
    pub wal_bytes: u64,
}

/// Runs the benchmark with `readers` reader threads and `writers` writer
/// threads for `duration`, on a new database at `path`, which must not exist
/// (the run writes thousands of rows; it is never pointed at real history).
/// The files are removed afterwards.
pub fn bench(path: &Path, duration: Duration, readers: usize, writers: usize) -> Result<StoreBenchReport> {
    bench_with(
        path,
        &BenchOptions {
            duration,
            readers,
            writers,
            ..BenchOptions::default()
        },
    )
}

/// [`bench()`] with every setting.
pub fn bench_with(path: &Path, options: &BenchOptions) -> Result<StoreBenchReport> {
    if path.exists() {
        return Err(StoreError::InvalidInput(format!(
            "bench database {} already exists; give the benchmark a new path",
            path.display()
        )));
    }
    let result = run(path, options);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    result
}

/// A tiny xorshift generator: the benchmark needs cheap, varied choices, not
/// quality randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn text(rng: &mut Rng, bytes: usize) -> String {
    const WORDS: &[&str] = &[
        "hearth",
        "local",
        "model",
        "token",
        "context",
        "window",
        "llama",
        "quantized",
        "memory",
        "fast",
        "reply",
        "question",
        "answer",
        "rust",
        "sqlite",
        "search",
        "prompt",
        "kernel",
    ];
    let mut s = String::with_capacity(bytes + 16);
    while s.len() < bytes {
        s.push_str(WORDS[rng.below(WORDS.len())]);
        s.push(' ');
    }
    s
}

fn pause(think: Duration) {
    if !think.is_zero() {
        std::thread::sleep(think);
    }
}

fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted_us.len() as f64).ceil() as usize;
    sorted_us[rank.clamp(1, sorted_us.len()) - 1] as f64 / 1e3
}

/// What every load thread shares: the store, the sessions the load is spread
/// over, the flag that stops the run and the count of failed calls.
#[derive(Clone)]
struct Load {
    store: Store,
    sessions: Arc<Vec<SessionId>>,
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
}

/// What a load thread returns: whether it wrote, and the latency of each of
/// its calls in microseconds.
type Latencies = (bool, Vec<u64>);

/// Seeds the sessions, runs the writer and reader threads for
/// `options.duration`, and reports their latencies.
fn run(path: &Path, options: &BenchOptions) -> Result<StoreBenchReport> {
    let store = Store::open_with(
        path,
        StoreOptions {
            synchronous: options.synchronous,
            readers: options.readers.max(1),
            ..StoreOptions::default()
        },
    )?;
    let sessions = seed_sessions(&store, options)?;
    let load = Load {
        store,
        sessions: Arc::new(sessions),
        stop: Arc::new(AtomicBool::new(false)),
        errors: Arc::new(AtomicU64::new(0)),
    };

    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..options.writers {
        handles.push(spawn_writer(load.clone(), w, options));
    }
    for r in 0..options.readers {
        handles.push(spawn_reader(load.clone(), r, options));
    }
    std::thread::sleep(options.duration);
    load.stop.store(true, Ordering::Relaxed);
    let mut writes = Vec::new();
    let mut reads = Vec::new();
    for handle in handles {
        let (is_writer, latencies) = handle
            .join()
            .map_err(|_| StoreError::Task("a benchmark thread panicked".into()))?;
        if is_writer {
            writes.extend(latencies);
        } else {
            reads.extend(latencies);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    writes.sort_unstable();
    reads.sort_unstable();
    report(path, options, &load, elapsed, &writes, &reads)
}

/// Creates the sessions the load is spread over, each with
/// `options.seed_messages` messages so that reads return full pages.
fn seed_sessions(store: &Store, options: &BenchOptions) -> Result<Vec<SessionId>> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut sessions: Vec<SessionId> = Vec::new();
    for i in 0..options.sessions.max(1) {
        let session = store.create_session(&NewSession {
            title: format!("bench {i}"),
            ..NewSession::default()
        })?;
        let seed: Vec<NewMessage> = (0..options.seed_messages)
            .map(|j| {
                let role = if j % 2 == 0 { Role::User } else { Role::Assistant };
                NewMessage::new(role, text(&mut rng, options.message_bytes))
            })
            .collect();
        store.store_session(&session, &seed)?;
        sessions.push(session.id);
    }
    Ok(sessions)
}

/// Writer thread `w`: appends a message to a random session until stopped.
fn spawn_writer(load: Load, w: usize, options: &BenchOptions) -> JoinHandle<Latencies> {
    let Load {
        store,
        sessions,
        stop,
        errors,
    } = load;
    let bytes = options.message_bytes;
    let think = options.think_time;
    std::thread::spawn(move || {
        let mut rng = Rng(0xA076_1D64_78BD_642F ^ (w as u64 + 1));
        let mut latencies = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let session = &sessions[rng.below(sessions.len())];
            let message = NewMessage::new(Role::Assistant, text(&mut rng, bytes)).with_metadata(MessageMetadata {
                backend: Some("bench".into()),
                model: Some("bench-model".into()),
                ..MessageMetadata::default()
            });
            let t = Instant::now();
            let result = store.append_message(session, &message);
            latencies.push(t.elapsed().as_micros() as u64);
            if result.is_err() {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            pause(think);
        }
        (true, latencies)
    })
}

/// Reader thread `r`: reads the last 50 messages of a random session until stopped.
fn spawn_reader(load: Load, r: usize, options: &BenchOptions) -> JoinHandle<Latencies> {
    let Load {
        store,
        sessions,
        stop,
        errors,
    } = load;
    let think = options.think_time;
    std::thread::spawn(move || {
        let mut rng = Rng(0xE703_7ED1_A0B4_28DB ^ (r as u64 + 1));
        let mut latencies = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let session = &sessions[rng.below(sessions.len())];
            let t = Instant::now();
            let result = store.recent_messages(session, 50);
            latencies.push(t.elapsed().as_micros() as u64);
            if result.is_err() {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            pause(think);
        }
        (false, latencies)
    })
}

/// The report of a run that took `elapsed` seconds, from the sorted latencies
/// of its `writes` and `reads` (microseconds) and the files as they are now.
fn report(
    path: &Path,
    options: &BenchOptions,
    load: &Load,
    elapsed: f64,
    writes: &[u64],
    reads: &[u64],
) -> Result<StoreBenchReport> {
    let stats = load.store.stats()?;
    let write_p99 = percentile_ms(writes, 99.0);
    let read_p99 = percentile_ms(reads, 99.0);
    let errors = &load.errors;
    Ok(StoreBenchReport {
        bench: "store",
        path: path.to_path_buf(),
        sqlite_version: stats.sqlite_version,
        synchronous: options.synchronous,
        duration_s: elapsed,
        readers: options.readers,
        writers: options.writers,
        think_time_ms: options.think_time.as_secs_f64() * 1e3,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        writes: writes.len() as u64,
        reads: reads.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        write_p50_ms: percentile_ms(writes, 50.0),
        write_p99_ms: write_p99,
        write_max_ms: writes.last().map_or(0.0, |&us| us as f64 / 1e3),
        read_p50_ms: percentile_ms(reads, 50.0),
        read_p99_ms: read_p99,
        read_max_ms: reads.last().map_or(0.0, |&us| us as f64 / 1e3),
        messages_per_sec: writes.len() as f64 / elapsed,
        reads_per_sec: reads.len() as f64 / elapsed,
        write_p99_target_ms: WRITE_P99_TARGET_MS,
        read_p99_target_ms: READ_P99_TARGET_MS,
        meets_targets: errors.load(Ordering::Relaxed) == 0
            && write_p99 <= WRITE_P99_TARGET_MS
            && read_p99 <= READ_P99_TARGET_MS,
        db_bytes: stats.file_size_bytes,
        wal_bytes: stats.wal_size_bytes,
    })
}
