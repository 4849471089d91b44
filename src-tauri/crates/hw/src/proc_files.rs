//! Parsers for the Linux `/proc` files the snapshot reads directly.
//!
//! sysinfo covers the portable basics; these give what it does not (the SIMD
//! flags llama.cpp's speed depends on, RssAnon vs RssFile, a thread's own CPU
//! time) and are what the tests compare the snapshot against. Each parser takes
//! the file's text so it can be tested on recorded contents.

/// SIMD extensions that matter to GGML's CPU kernels, by their `/proc/cpuinfo`
/// name, and the name the snapshot reports (the kernel calls SSE3 "pni" and
/// NEON "asimd").
const SIMD_FLAGS: &[(&str, &str)] = &[
    ("pni", "sse3"),
    ("ssse3", "ssse3"),
    ("sse4_1", "sse4_1"),
    ("sse4_2", "sse4_2"),
    ("avx", "avx"),
    ("f16c", "f16c"),
    ("fma", "fma"),
    ("avx2", "avx2"),
    ("avx_vnni", "avx_vnni"),
    ("avx512f", "avx512f"),
    ("avx512bw", "avx512bw"),
    ("avx512vl", "avx512vl"),
    ("avx512_vnni", "avx512_vnni"),
    ("avx512_bf16", "avx512_bf16"),
    ("amx_tile", "amx_tile"),
    ("amx_int8", "amx_int8"),
    ("amx_bf16", "amx_bf16"),
    ("asimd", "neon"),
    ("asimdhp", "neon_fp16"),
    ("asimddp", "dotprod"),
    ("i8mm", "i8mm"),
    ("sve", "sve"),
    ("sve2", "sve2"),
];

/// What `/proc/cpuinfo` says about the CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuinfoFacts {
    pub model: Option<String>,
    pub vendor: Option<String>,
    /// `processor` entries.
    pub logical: u32,
    /// Distinct (`physical id`, `core id`) pairs; `None` when the file has no
    /// core ids (some VMs and ARM kernels).
    pub physical: Option<u32>,
    /// All flags of the first processor, as the kernel names them.
    pub flags: Vec<String>,
}

pub fn parse_cpuinfo(text: &str) -> CpuinfoFacts {
    let mut facts = CpuinfoFacts::default();
    let mut cores = std::collections::BTreeSet::new();
    let mut physical_id = String::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => facts.logical += 1,
            "model name" | "Model" | "cpu model" if facts.model.is_none() && !value.is_empty() => {
                facts.model = Some(value.to_string());
            }
            "vendor_id" | "CPU implementer" if facts.vendor.is_none() => facts.vendor = Some(value.to_string()),
            "physical id" => physical_id = value.to_string(),
            "core id" => {
                cores.insert((physical_id.clone(), value.to_string()));
            }
            // x86 says "flags", ARM "Features".
            "flags" | "Features" if facts.flags.is_empty() => {
                facts.flags = value.split_whitespace().map(str::to_string).collect();
            }
            _ => {}
        }
    }
    facts.physical = u32::try_from(cores.len()).ok().filter(|n| *n > 0);
    facts
}

/// The SIMD extensions among `flags` (kernel names), in the snapshot's names.
pub fn simd_from_flags(flags: &[String]) -> Vec<String> {
    SIMD_FLAGS
        .iter()
        .filter(|(kernel, _)| flags.iter().any(|f| f == kernel))
        .map(|(_, ours)| (*ours).to_string())
        .collect()
}

/// `MemTotal` and `MemAvailable` from `/proc/meminfo`, in bytes.
pub fn parse_meminfo(text: &str) -> (Option<u64>, Option<u64>) {
    (kib_field(text, "MemTotal"), kib_field(text, "MemAvailable"))
}

/// A process's resident memory from `/proc/<pid>/status`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusMemory {
    pub vm_rss: Option<u64>,
    /// Anonymous pages: heap, KV cache, compute buffers.
    pub rss_anon: Option<u64>,
    /// File-backed pages: mmapped model weights once touched, libraries.
    pub rss_file: Option<u64>,
    pub rss_shmem: Option<u64>,
}

pub fn parse_status(text: &str) -> StatusMemory {
    StatusMemory {
        vm_rss: kib_field(text, "VmRSS"),
        rss_anon: kib_field(text, "RssAnon"),
        rss_file: kib_field(text, "RssFile"),
        rss_shmem: kib_field(text, "RssShmem"),
    }
}

/// A `Key:   123 kB` line's value in bytes.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let n: u64 = rest.split_whitespace().next()?.parse().ok()?;
        n.checked_mul(1024)
    })
}

/// This process's resident memory now (Linux; `None` elsewhere).
pub fn self_status_memory() -> Option<StatusMemory> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .map(|t| parse_status(&t))
}

/// CPU time the calling thread has run, in nanoseconds: the first field of
/// `/proc/thread-self/schedstat` (the scheduler's exact accounting, unlike the
/// 10 ms ticks of `/proc/self/stat`). It is brought up to date when the thread
/// is switched out, so read it after a wait, not in the middle of work.
pub fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nphysical id\t: 0\n\
        core id\t\t: 0\nflags\t\t: fpu pni ssse3 sse4_1 avx avx2 fma f16c avx512f\n\nprocessor\t: 1\n\
        vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nphysical id\t: 0\ncore id\t\t: 0\n\
        flags\t\t: fpu pni\n\nprocessor\t: 2\nphysical id\t: 0\ncore id\t\t: 1\n";

    #[test]
    fn cpuinfo_counts_hyperthreads_once() {
        let f = parse_cpuinfo(CPUINFO);
        assert_eq!(f.logical, 3);
        assert_eq!(f.physical, Some(2));
        assert_eq!(f.model.as_deref(), Some("AMD EPYC"));
        assert_eq!(f.vendor.as_deref(), Some("AuthenticAMD"));
        assert_eq!(
            simd_from_flags(&f.flags),
            ["sse3", "ssse3", "sse4_1", "avx", "f16c", "fma", "avx2", "avx512f"]
        );
    }

    #[test]
    fn cpuinfo_without_core_ids_has_no_physical_count() {
        let f = parse_cpuinfo("processor : 0\nFeatures : fp asimd asimddp i8mm\nprocessor : 1\n");
        assert_eq!((f.logical, f.physical), (2, None));
        assert_eq!(simd_from_flags(&f.flags), ["neon", "dotprod", "i8mm"]);
    }

    #[test]
    fn meminfo_and_status_are_bytes() {
        let (total, avail) = parse_meminfo("MemTotal:       24683656 kB\nMemFree: 1 kB\nMemAvailable:   23171076 kB\n");
        assert_eq!(total, Some(24_683_656 * 1024));
        assert_eq!(avail, Some(23_171_076 * 1024));
        let s = parse_status("VmRSS:\t  1000 kB\nRssAnon:\t   600 kB\nRssFile:\t   400 kB\nRssShmem:\t 0 kB\n");
        assert_eq!(s.vm_rss, Some(1_024_000));
        assert_eq!(s.rss_anon, Some(614_400));
        assert_eq!(s.rss_file, Some(409_600));
        // "VmRSSx" must not match "VmRSS".
        assert_eq!(kib_field("VmRSSx: 5 kB\n", "VmRSS"), None);
    }
}
