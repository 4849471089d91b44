//! The one protocol between Hearth and its child processes: the engine worker
//! (`hearth worker`, `hearth-app worker`), the long jobs (`quantize-worker`,
//! `measure-worker`) and the device lister (`hearth-app devices`).
//!
//! A child prints one JSON line per event on stdout ([`ChildLine`]): any number of
//! `progress` lines, then one answer, `done` with its result or `error` with an
//! [`ErrorCode`](hearth_core::ErrorCode) and the words to show. Anything else on stdout
//! is skipped: GPU drivers and llama.cpp may print there, and must not break the answer.
//!
//! The child's side: [`say`], [`progress`], [`report`]. The parent's side: [`run_child`]
//! (blocking, for jobs that run to their end, with a [`Cancel`]) and [`read_answer`]
//! (tokio, for a child whose answer is awaited within a timeout and that may live on,
//! like the engine worker). The engine worker's own contract is in [`worker`].

mod line;
mod read;
mod run;
pub mod worker;

pub use line::{parse_line, progress, report, say, ChildLine, Progress};
pub use read::{read_answer, ReadError};
pub use run::{run_child, run_child_fed, stopped, Cancel, ChildError};
