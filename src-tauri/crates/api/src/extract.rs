//! `JsonBody`: the body extractor every POST route uses, and `parse`, which turns it
//! into a typed request. axum's own `Json` answers bad input with plain-text
//! 400/415/422; these answer in OpenAI's error shape, name the offending field, and
//! never let bad input reach a 500. A body must arrive whole within the server's body
//! timeout: hyper sets none, and a client that stalls in its body (or announces more
//! than it sends) would otherwise hold its connection for ever.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body: sent as JSON, within the size limit, valid UTF-8.
pub struct JsonBody(pub Bytes);

impl<S> FromRequest<S> for JsonBody
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Requiring a JSON content type makes a browser send a CORS preflight first, which
        // this server never approves: a web page cannot make the model work for it.
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::unsupported_media_type());
        }
        let limit = req.extensions().get::<BodyLimit>().map_or(usize::MAX, |l| l.0);
        let timeout = req
            .extensions()
            .get::<BodyReadTimeout>()
            .map_or_else(|| crate::ConnectionLimits::default().body_read, |t| t.0);
        let read = tokio::time::timeout(timeout, Bytes::from_request(req, state))
            .await
            .map_err(|_| ApiError::body_timeout(timeout))?;
        let bytes = read.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::body_too_large(limit)
            } else {
                ApiError::invalid_request(None, format!("could not read the request body: {rejection}"))
            }
        })?;
        if let Err(e) = std::str::from_utf8(&bytes) {
            return Err(ApiError::invalid_request(
                None,
                format!("the request body is not valid UTF-8 (at byte {})", e.valid_up_to()),
            ));
        }
        Ok(JsonBody(bytes))
    }
}

/// The body limit in force, put in the request's extensions by the router so the
/// 413 message can state it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub usize);

/// How long a body may take to arrive, put in the request's extensions by the server
/// (`serve_with`); without it (a router served otherwise) the default applies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyReadTimeout(pub Duration);

fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a body into `T`, mapping every failure to a 400 that says what is wrong and where.
/// (serde's `flatten` would lose the field path, hence one parse per part of a request.)
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let param = (path != ".").then_some(path);
        let message = match inner.classify() {
            serde_json::error::Category::Data => match &param {
                Some(p) => format!("invalid value for `{p}`: {inner}"),
                None => format!("invalid request: {inner}"),
            },
            _ => format!("the request body is not valid JSON: {inner}"),
        };
        ApiError::invalid_request(param.as_deref(), message)
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::invalid_request(None, format!("the request body is not valid JSON: {e}")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Req {
        max_tokens: Option<u32>,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        x: bool,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse::<Req>(br#"{"max_tokens": -1}"#).expect_err("negative");
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
        let e = parse::<Req>(br#"{"inner": {"x": 3}}"#).expect_err("wrong type");
        assert_eq!(e.param.as_deref(), Some("inner.x"));
        let e = parse::<Req>(b"{\"max_tokens\": 1} trailing").expect_err("trailing");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn json_content_types() {
        let v = |s: &'static str| header::HeaderValue::from_static(s);
        assert!(is_json(Some(&v("application/json"))));
        assert!(is_json(Some(&v("Application/JSON; charset=utf-8"))));
        assert!(is_json(Some(&v("application/vnd.api+json"))));
        assert!(!is_json(Some(&v("text/plain"))));
        assert!(!is_json(None));
    }
}
