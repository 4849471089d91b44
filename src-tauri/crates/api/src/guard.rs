//! Who may talk to the server: the Host header must name this server (a web page that
//! re-points its own DNS name at 127.0.0.1 still sends its own name: DNS rebinding), and
//! with a token configured every `/v1/*` and `/metrics` request must carry it.
//! The health probes stay open so a container runtime can call them without secrets.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use crate::config::ApiConfig;
use crate::error::ApiError;

pub(crate) async fn guard(State(config): State<Arc<ApiConfig>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()));
    match host {
        Some(host) if host_allowed(&config, &host) => {}
        Some(host) => return ApiError::host_not_allowed(&host).into_response(),
        None => return ApiError::invalid_request(None, "the request has no Host header").into_response(),
    }
    let open = matches!(request.uri().path(), "/health" | "/health/ready");
    if let (Some(token), false) = (&config.token, open) {
        if !bearer_matches(request.headers(), token) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

/// localhost, 127.0.0.1 and [::1] with the bound port, or a configured name with any port.
fn host_allowed(config: &ApiConfig, host: &str) -> bool {
    if config.allow_any_host {
        return true;
    }
    let (name, port) = split_host(host);
    let name = name.to_ascii_lowercase();
    let loopback = matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]");
    if loopback {
        return port == Some(config.port);
    }
    config
        .allowed_hosts
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(&name))
}

/// "name:port" → (name, Some(port)); "[v6]:port" keeps the brackets; a bad port → None.
fn split_host(host: &str) -> (&str, Option<u16>) {
    let colon = if host.starts_with('[') {
        host.find(']').and_then(|end| host[end..].find(':').map(|i| end + i))
    } else {
        host.rfind(':')
    };
    match colon {
        Some(i) => (&host[..i], host[i + 1..].parse().ok()),
        None => (host, None),
    }
}

fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(given) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) else {
        return false;
    };
    constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

/// Compares without an early exit, so timing does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let mut config = ApiConfig::new(8080);
        config.allowed_hosts.push("hearth.lan".into());
        for ok in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "LOCALHOST:8080",
            "hearth.lan",
            "hearth.lan:9",
        ] {
            assert!(host_allowed(&config, ok), "{ok}");
        }
        for bad in [
            "localhost",
            "localhost:8081",
            "evil.com:8080",
            "127.0.0.2:8080",
            "[::1]",
            "localhost:x",
            "",
        ] {
            assert!(!host_allowed(&config, bad), "{bad}");
        }
    }

    #[test]
    fn tokens() {
        let mut headers = HeaderMap::new();
        assert!(!bearer_matches(&headers, "s3cret"));
        headers.insert(header::AUTHORIZATION, header::HeaderValue::from_static("Bearer s3cret"));
        assert!(bearer_matches(&headers, "s3cret"));
        assert!(!bearer_matches(&headers, "s3cre"));
        headers.insert(header::AUTHORIZATION, header::HeaderValue::from_static("Basic s3cret"));
        assert!(!bearer_matches(&headers, "s3cret"));
    }
}
