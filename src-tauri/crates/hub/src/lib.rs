//! Getting models over Hugging Face's public protocol, the one its mirrors speak too:
//! repository listings and search, downloads that resume across runs and are checked
//! against the Hub's SHA-256 before they take their final name, and GGUF headers read
//! remotely so the fit planner judges a file before a byte of its weights is fetched.
//!
//! Nothing here reaches the network unless the user starts it: [`HubConfig::enabled`]
//! false refuses every request before it leaves the machine.
//!
//! `hf-hub` (Hugging Face's Rust client) is not used: it writes into its own cache
//! layout, and Hearth needs the file in its models folder, a part file tied to the
//! version it came from, a free-space check before the first byte, and header reads.

mod client;
mod download;
mod error;
mod listing;
#[cfg(feature = "local-hub")]
pub mod local_hub;
mod part;
mod remote;

pub use client::{Hub, HubConfig, Token, DEFAULT_ENDPOINT};
pub use download::{FileMeta, Progress, PullTarget, Pulled};
pub use error::{gb, HubError};
pub use listing::{check_repo, quantization_of, select_file, RepoFile, RepoSummary};
pub use part::{available_space, discard_partial};
pub use remote::RemoteHeader;
