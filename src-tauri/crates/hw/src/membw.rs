//! A simple memory-read bandwidth measurement: the ceiling for decode speed.
//!
//! Generating one token reads (nearly) every weight once, so tokens/s cannot
//! exceed read bandwidth ÷ model bytes. This sums a buffer far larger than the
//! caches with the same number of threads decode uses, and reports the best of a
//! few passes.

use std::time::Instant;

/// Bytes per second read by `threads` threads summing a 512 MiB buffer, the best of
/// five passes (`hearth bench`: the ceiling quoted beside measured decode speeds).
pub fn read_bandwidth(threads: usize) -> f64 {
    read_bandwidth_of(512 << 20, 5, threads)
}

/// A quicker reading (128 MiB, still far beyond any cache; three passes, about a
/// quarter of a second): for the expected speed shown beside a model to download.
pub fn quick_read_bandwidth(threads: usize) -> f64 {
    read_bandwidth_of(128 << 20, 3, threads)
}

fn read_bandwidth_of(bytes: usize, passes: usize, threads: usize) -> f64 {
    let words = bytes / 8;
    let buffer: Vec<u64> = (0..words as u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    let threads = threads.max(1);
    let chunk = words.div_ceil(threads);
    let mut best = 0.0f64;
    for _ in 0..passes.max(1) {
        let started = Instant::now();
        let sum: u64 = std::thread::scope(|scope| {
            let handles: Vec<_> = buffer
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        // Four independent accumulators keep the loads, not the adds, the bottleneck.
                        let mut acc = [0u64; 4];
                        for quad in part.chunks_exact(4) {
                            for (a, v) in acc.iter_mut().zip(quad) {
                                *a = a.wrapping_add(*v);
                            }
                        }
                        acc.iter().fold(0u64, |x, y| x.wrapping_add(*y))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0u64, u64::wrapping_add)
        });
        let secs = started.elapsed().as_secs_f64();
        std::hint::black_box(sum);
        best = best.max(bytes as f64 / secs);
    }
    best
}

/// The most tokens per second decoding can reach where the plan runs everything on the
/// CPU: each token reads every weight once, so read bandwidth ÷ weight bytes. `None` for
/// plans with layers on a GPU (its bandwidth is not measured here) or that do not fit.
pub fn cpu_decode_ceiling_tps(plan: &crate::FitPlan, bandwidth: f64) -> Option<f64> {
    (plan.verdict == crate::Verdict::CpuOnly && plan.cpu.weights_bytes > 0 && bandwidth > 0.0)
        .then(|| bandwidth / plan.cpu.weights_bytes as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_is_a_plausible_bandwidth() {
        let bw = quick_read_bandwidth(1);
        // Between a slow laptop's one core and far beyond any machine's memory.
        assert!((5e8..1e12).contains(&bw), "{bw}");
    }
}
