//! Hearth's view of the machine, and whether a model fits it.
//!
//! - [`Snapshot`]: CPU (model, cores, SIMD), RAM, this process, and each GPU
//!   (NVIDIA via NVML, loaded at run time; AMD via sysfs). No GPU or no driver
//!   gives an empty list and a note, never an error.
//! - [`Sampler`]: snapshots at a fixed rate into a ring buffer for the
//!   dashboard, with its own CPU cost measured ([`sampler::measure_overhead`]).
//! - [`plan()`]: from a GGUF header, a context length, KV cache type, batch
//!   size and a snapshot, the memory each device needs, term by term, how
//!   many layers to offload, the largest context that fits, and a verdict that
//!   explains itself ([`FitPlan::explain`]).
//!
//! ```no_run
//! let hw = hearth_hw::Snapshot::capture();
//! let info = hearth_gguf::read(std::path::Path::new("model.gguf"))?;
//! let plan = hearth_hw::plan(&info, &hearth_hw::PlanRequest { n_ctx: 8192, ..Default::default() }, &hw);
//! println!("{}", plan.explain());
//! # Ok::<(), hearth_gguf::GgufError>(())
//! ```

mod error;
mod gpu;
pub mod membw;
pub mod plan;
pub mod proc_files;
pub mod sampler;
pub mod snapshot;

pub use error::HwError;
pub use plan::{plan, plan_now, DeviceKind, DevicePlan, FitPlan, KvCacheType, PlanRequest, Verdict};
pub use sampler::{measure_overhead, Sampler, SamplerHandle, SamplerOverhead};
pub use snapshot::{CpuInfo, GpuInfo, GpuVendor, MemoryInfo, Probe, ProcessInfo, Snapshot, SCHEMA_VERSION};
