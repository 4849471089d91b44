//! An error as a whole HTTP/1.1 response, bytes to write straight to a socket: for the
//! replies made outside axum (a connection beyond the cap, hyper's own answers to heads
//! it cannot take), which must carry the same JSON as every other error.

use std::fmt::Write as _;

use crate::error::ApiError;

/// `error` as a response that closes its connection; `extra_headers` are whole header
/// lines (no CRLF) to send as well.
pub(crate) fn closing_response(error: &ApiError, extra_headers: &[&str]) -> Vec<u8> {
    // Serialising strings and numbers cannot fail.
    let body = serde_json::to_vec(&error.body()).unwrap_or_default();
    let mut head = format!("HTTP/1.1 {}\r\n", error.status);
    for line in extra_headers {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("content-type: application/json\r\n");
    if let Some(secs) = error.retry_after_secs {
        let _ = write!(head, "retry-after: {secs}\r\n");
    }
    let _ = write!(head, "content-length: {}\r\nconnection: close\r\n\r\n", body.len());
    let mut reply = head.into_bytes();
    reply.extend_from_slice(&body);
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_a_whole_response_with_the_error_json() {
        let reply = closing_response(&ApiError::too_many_connections(4), &["date: x"]);
        let text = String::from_utf8(reply).expect("UTF-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\ndate: x\r\n"),
            "{head}"
        );
        assert!(
            head.contains("retry-after: 1") && head.contains("connection: close"),
            "{head}"
        );
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(json["error"]["code"], "too_many_connections");
    }
}
