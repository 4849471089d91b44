use thiserror::Error;

/// What can go wrong in this crate. Probing hardware itself never fails: a
/// missing driver or file just leaves fields empty (see [`crate::Snapshot`]).
#[derive(Debug, Error)]
pub enum HwError {
    /// The sampler's background thread could not be started.
    #[error("could not start the hardware sampler thread: {0}")]
    SamplerStart(#[source] std::io::Error),
    /// A sampler setting is out of range.
    #[error("invalid sampler setting: {0}")]
    InvalidSetting(String),
}
