//! A simple memory-read bandwidth measurement: the ceiling for decode speed.
//!
//! Generating one token reads (nearly) every weight once, so tokens/s cannot
//! exceed read bandwidth ÷ model bytes. This sums a buffer far larger than the
//! caches with the same number of threads decode uses, and reports the best of a
//! few passes.

use std::time::Instant;

/// Bytes per second read by `threads` threads summing a 512 MiB buffer.
pub fn read_bandwidth(threads: usize) -> f64 {
    const BYTES: usize = 512 << 20;
    let words = BYTES / 8;
    let buffer: Vec<u64> = (0..words as u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    let threads = threads.max(1);
    let chunk = words.div_ceil(threads);
    let mut best = 0.0f64;
    for _ in 0..5 {
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
        best = best.max(BYTES as f64 / secs);
    }
    best
}
