//! The server's limits and access rules, validated before anything binds.

use std::net::SocketAddr;
use std::time::Duration;

/// The largest `max_tokens` (and context) a request may ask for.
pub const MAX_TOKENS_CAP: u32 = 32_768;

/// What the server accepts and from whom.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Bearer token every `/v1/*` and `/metrics` request must carry; `None` = no auth
    /// (allowed only on a loopback address).
    pub token: Option<String>,
    /// The port the server is bound to: a Host header must name it (DNS-rebinding defence).
    pub port: u16,
    /// Host names accepted besides localhost, 127.0.0.1 and [::1] (any port).
    pub allowed_hosts: Vec<String>,
    /// Accept any Host header (containers reached by an IP or a name unknown in advance).
    /// Allowed only together with a token.
    pub allow_any_host: bool,
    /// Largest request body in bytes; larger bodies get 413.
    pub body_limit: usize,
    /// Largest `max_tokens` a request may ask for; also the default when it asks for none.
    pub max_tokens_cap: u32,
    /// Generations running at once; more wait in the queue.
    pub max_concurrent: usize,
    /// Requests waiting for a generation slot; more get 429 at once.
    pub max_queued: usize,
    /// How long a queued request waits for a slot before it gets 503.
    pub queue_timeout: Duration,
    /// Seconds a client is told to wait (Retry-After) when the server is full.
    pub retry_after_secs: u32,
}

impl ApiConfig {
    /// Defaults for a server on `port`: no token, loopback only, one generation at a
    /// time (the local engine decodes one sequence) with eight waiting.
    pub fn new(port: u16) -> Self {
        Self {
            token: None,
            port,
            allowed_hosts: Vec::new(),
            allow_any_host: false,
            body_limit: 4 * 1024 * 1024,
            max_tokens_cap: MAX_TOKENS_CAP,
            max_concurrent: 1,
            max_queued: 8,
            queue_timeout: Duration::from_secs(120),
            retry_after_secs: 2,
        }
    }

    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Refuses settings that would expose the server: a non-loopback address or an
    /// open Host check without a token, an empty token, zero-sized limits.
    pub fn validate(&self, addr: &SocketAddr) -> Result<(), ConfigError> {
        if self.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(ConfigError::EmptyToken);
        }
        if !addr.ip().is_loopback() && self.token.is_none() {
            return Err(ConfigError::PublicWithoutToken { addr: *addr });
        }
        if self.allow_any_host && self.token.is_none() {
            return Err(ConfigError::AnyHostWithoutToken);
        }
        if self.max_concurrent == 0 || self.body_limit == 0 || self.max_tokens_cap == 0 {
            return Err(ConfigError::ZeroLimit);
        }
        if self.max_tokens_cap > MAX_TOKENS_CAP {
            return Err(ConfigError::TokensCapTooLarge {
                cap: self.max_tokens_cap,
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("refusing to listen on {addr} without a token: anyone on the network could use the model. Pass --token (or HEARTH_API_TOKEN), or listen on 127.0.0.1")]
    PublicWithoutToken { addr: SocketAddr },
    #[error("accepting any Host header needs a token (DNS rebinding would otherwise expose the server to web pages)")]
    AnyHostWithoutToken,
    #[error("the API token is empty: pass a non-empty token")]
    EmptyToken,
    #[error("max_concurrent, body_limit and max_tokens_cap must be at least 1")]
    ZeroLimit,
    #[error("max_tokens_cap = {cap} is above the supported {MAX_TOKENS_CAP}")]
    TokensCapTooLarge { cap: u32 },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn public_addresses_need_a_token() {
        let config = ApiConfig::new(8080);
        assert_eq!(config.validate(&addr("127.0.0.1:8080")), Ok(()));
        assert_eq!(config.validate(&addr("[::1]:8080")), Ok(()));
        assert!(matches!(
            config.validate(&addr("0.0.0.0:8080")),
            Err(ConfigError::PublicWithoutToken { .. })
        ));
        let with_token = config.with_token(Some("secret".into()));
        assert_eq!(with_token.validate(&addr("0.0.0.0:8080")), Ok(()));
        let empty = ApiConfig::new(1).with_token(Some(" ".into()));
        assert_eq!(empty.validate(&addr("127.0.0.1:1")), Err(ConfigError::EmptyToken));
    }

    #[test]
    fn any_host_needs_a_token() {
        let config = ApiConfig {
            allow_any_host: true,
            ..ApiConfig::new(1)
        };
        assert_eq!(
            config.validate(&addr("127.0.0.1:1")),
            Err(ConfigError::AnyHostWithoutToken)
        );
    }
}
