//! Periodic snapshots into a ring buffer, for the dashboard's live graphs.
//!
//! One OS thread (not a tokio task: sysinfo and NVML calls block, and the
//! sampler must work in the CLI without a runtime) takes a snapshot every
//! `interval` and keeps the last `capacity`. It measures its own cost: the CPU
//! time its thread consumed, so "cheap enough to leave on" is a number
//! (`hearth bench hw`), not a hope.

use std::collections::VecDeque;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::proc_files;
use crate::snapshot::{Probe, Snapshot};
use crate::HwError;

/// The dashboard's default: one reading a second.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Ten minutes of history at the default rate.
pub const DEFAULT_CAPACITY: usize = 600;

/// What the sampler has cost so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplerOverhead {
    pub samples: u64,
    /// Wall time since the sampler started.
    pub wall_secs: f64,
    /// Wall time spent inside `Probe::sample` (an upper bound on its CPU time
    /// that works everywhere).
    pub busy_secs: f64,
    /// CPU time of the sampler thread (Linux scheduler accounting; `None` elsewhere).
    pub cpu_secs: Option<f64>,
    /// CPU time per second of wall time, in % of one core (`busy_secs` where
    /// `cpu_secs` is unknown).
    pub cpu_percent_of_one_core: f64,
    /// Mean wall time of one snapshot, milliseconds.
    pub ms_per_sample: f64,
}

#[derive(Default)]
struct State {
    ring: VecDeque<Snapshot>,
    samples: u64,
    busy: Duration,
    /// Thread CPU time and the wall time since start when it was read.
    cpu_ns: Option<(u64, Duration)>,
}

struct Shared {
    capacity: usize,
    state: Mutex<State>,
    /// Signalled after each snapshot, for [`SamplerHandle::wait_for_samples`].
    sampled: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data that is still valid.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts the sampler; see [`Sampler::start`].
#[derive(Debug)]
pub struct Sampler;

impl Sampler {
    /// Starts sampling every `interval` (at least 10 ms) into a ring of
    /// `capacity` (at least 1) snapshots. The first snapshot is taken at once.
    /// Sampling stops when the handle is dropped.
    pub fn start(interval: Duration, capacity: usize) -> Result<SamplerHandle, HwError> {
        if interval < Duration::from_millis(10) {
            return Err(HwError::InvalidSetting(format!("interval {interval:?} is below 10 ms")));
        }
        if capacity == 0 {
            return Err(HwError::InvalidSetting("capacity must be at least 1".to_string()));
        }
        let shared = Arc::new(Shared {
            capacity,
            state: Mutex::new(State {
                ring: VecDeque::with_capacity(capacity),
                ..State::default()
            }),
            sampled: Condvar::new(),
        });
        // Dropping the sender wakes the thread at once (no sleep to wait out).
        let (stop_tx, stop_rx) = mpsc::sync_channel::<()>(1);
        let thread_shared = Arc::clone(&shared);
        let started = Instant::now();
        let thread = std::thread::Builder::new()
            .name("hearth-hw-sampler".into())
            .spawn(move || {
                let mut probe = Probe::new();
                let cpu_at_start = proc_files::thread_cpu_ns();
                let mut next = Instant::now();
                loop {
                    // Read on waking: the kernel brings it up to date when the
                    // thread is switched out, so it covers every earlier sample
                    // exactly (read after the work it could miss the last one).
                    let cpu = proc_files::thread_cpu_ns()
                        .zip(cpu_at_start)
                        .map(|(now, s)| (now.saturating_sub(s), started.elapsed()));
                    let t0 = Instant::now();
                    let snapshot = probe.sample();
                    let busy = t0.elapsed();
                    {
                        let mut state = thread_shared.lock();
                        if state.ring.len() == thread_shared.capacity {
                            state.ring.pop_front();
                        }
                        state.ring.push_back(snapshot);
                        state.samples += 1;
                        state.busy += busy;
                        state.cpu_ns = cpu;
                    }
                    thread_shared.sampled.notify_all();
                    // Fixed-rate schedule: a slow sample does not shift later ones.
                    next += interval;
                    let now = Instant::now();
                    if next < now {
                        next = now;
                    }
                    match stop_rx.recv_timeout(next - now) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            })
            .map_err(HwError::SamplerStart)?;
        Ok(SamplerHandle {
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
            started,
            interval,
        })
    }
}

/// A running sampler. Dropping it stops and joins the thread.
pub struct SamplerHandle {
    shared: Arc<Shared>,
    stop: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    started: Instant,
    interval: Duration,
}

impl std::fmt::Debug for SamplerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamplerHandle")
            .field("interval", &self.interval)
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

impl SamplerHandle {
    /// The newest snapshot (`None` only before the first one is taken).
    pub fn latest(&self) -> Option<Snapshot> {
        self.shared.lock().ring.back().cloned()
    }

    /// All kept snapshots, oldest first.
    pub fn history(&self) -> Vec<Snapshot> {
        self.shared.lock().ring.iter().cloned().collect()
    }

    /// Snapshots taken so far (including those the ring has dropped).
    pub fn samples(&self) -> u64 {
        self.shared.lock().samples
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Blocks until at least `n` snapshots were taken or `timeout` passed;
    /// returns the count reached.
    pub fn wait_for_samples(&self, n: u64, timeout: Duration) -> u64 {
        let guard = self.shared.lock();
        let (guard, _) = self
            .shared
            .sampled
            .wait_timeout_while(guard, timeout, |s| s.samples < n)
            .unwrap_or_else(PoisonError::into_inner);
        guard.samples
    }

    /// What sampling has cost so far.
    pub fn overhead(&self) -> SamplerOverhead {
        let state = self.shared.lock();
        let wall = self.started.elapsed().as_secs_f64().max(f64::EPSILON);
        let busy = state.busy.as_secs_f64();
        let cpu = state.cpu_ns.map(|(ns, _)| ns as f64 / 1e9);
        // Both measures as a rate over the wall time they cover.
        let percent = match state.cpu_ns {
            Some((ns, at)) if !at.is_zero() => 100.0 * (ns as f64 / 1e9) / at.as_secs_f64(),
            _ => 100.0 * busy / wall,
        };
        SamplerOverhead {
            samples: state.samples,
            wall_secs: wall,
            busy_secs: busy,
            cpu_secs: cpu,
            cpu_percent_of_one_core: percent,
            ms_per_sample: if state.samples == 0 {
                0.0
            } else {
                1000.0 * busy / state.samples as f64
            },
        }
    }
}

impl Drop for SamplerHandle {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The sampler's cost at `interval` over `duration` of real sampling, for
/// `hearth bench hw`. Blocks for `duration`.
pub fn measure_overhead(interval: Duration, duration: Duration) -> Result<SamplerOverhead, HwError> {
    let handle = Sampler::start(interval, 16)?;
    let wanted = (duration.as_secs_f64() / interval.as_secs_f64()).ceil().max(1.0) as u64 + 1;
    handle.wait_for_samples(wanted, duration + interval * 2 + Duration::from_secs(5));
    Ok(handle.overhead())
}
