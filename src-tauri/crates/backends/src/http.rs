//! What every HTTP backend here shares: a client that never goes through a system
//! proxy (these servers run on this machine or the LAN, and a proxy must not see the
//! conversation), and errors that keep their whole cause.

use std::time::Duration;

use hearth_core::BackendError;

/// A client for the server `backend` names, with a short connect timeout so an absent
/// server fails fast (and is retried or replaced) instead of hanging a reply.
pub(crate) fn client(backend: &str) -> Result<reqwest::Client, BackendError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .map_err(|e| BackendError::Unavailable {
            backend: backend.to_owned(),
            cause: e.to_string(),
        })
}

/// The whole cause of an error (reqwest's Display hides the interesting part).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
