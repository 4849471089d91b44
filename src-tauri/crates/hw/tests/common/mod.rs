//! Helpers shared by the hw crate's test files.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

/// The value (in kB, as the kernel writes it) of `key` in a `/proc` file of `Key: value kB`
/// lines, such as `/proc/meminfo` or `/proc/self/status`; `None` when the key is absent.
pub fn proc_kib(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    text.lines().find_map(|l| {
        l.strip_prefix(key)?
            .strip_prefix(':')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}
