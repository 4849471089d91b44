//! The contract between the supervisor (`hearth_backends::Supervisor`) and the worker
//! process (`hearth worker`): the environment it is started with and the one JSON line
//! it prints on stdout. Here, below both, so the worker needs nothing of the HTTP
//! client side to speak it.

use serde::{Deserialize, Serialize};

use crate::ErrorCode;

/// The bearer token the worker's API requires. Passed in the environment, never in
/// argv, which any user on the machine can read in /proc.
pub const TOKEN_ENV: &str = "HEARTH_WORKER_TOKEN";
/// The supervisor's pid: the worker exits at once if its parent is already another
/// process (the supervisor died before the worker could arm its death signal).
pub const PARENT_ENV: &str = "HEARTH_WORKER_PARENT";

/// The worker's one line on stdout: ready with its port, or the reason it could not start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handshake {
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<HandshakeError>,
}

/// A line the worker prints while llama.cpp reads the model, before its handshake:
/// `{"loading":0.42}` (the fraction loaded).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoadingLine {
    pub loading: f32,
}

impl LoadingLine {
    pub fn to_line(self) -> String {
        format!("{{\"loading\":{:.3}}}", self.loading.clamp(0.0, 1.0))
    }

    /// The fraction a progress line carries; `None` for any other line.
    pub fn parse(line: &str) -> Option<f32> {
        serde_json::from_str::<LoadingLine>(line.trim()).ok().map(|l| l.loading)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandshakeError {
    pub code: ErrorCode,
    pub message: String,
}

impl Handshake {
    pub fn ready(port: u16, model: impl Into<String>) -> Self {
        Self {
            ready: true,
            port: Some(port),
            pid: std::process::id(),
            model: Some(model.into()),
            error: None,
        }
    }

    pub fn failed(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            ready: false,
            port: None,
            pid: std::process::id(),
            model: None,
            error: Some(HandshakeError {
                code,
                message: message.into(),
            }),
        }
    }

    /// The line as printed: JSON without newlines.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"ready":false,"pid":0}"#.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loading_lines_are_told_from_the_handshake() {
        let line = LoadingLine { loading: 0.4242 }.to_line();
        assert_eq!(line, r#"{"loading":0.424}"#);
        assert_eq!(LoadingLine::parse(&line), Some(0.424));
        assert_eq!(LoadingLine::parse(&Handshake::ready(1, "m").to_line()), None);
        assert!(
            serde_json::from_str::<Handshake>(&line).is_err(),
            "a progress line is no handshake"
        );
    }

    #[test]
    fn lines_round_trip() {
        let ready = Handshake::ready(4242, "SmolLM2");
        let line = ready.to_line();
        assert!(line.starts_with(r#"{"ready":true,"port":4242,"pid":"#), "{line}");
        assert_eq!(serde_json::from_str::<Handshake>(&line).expect("parse"), ready);
        let failed = Handshake::failed(ErrorCode::InvalidModel, "not a GGUF file");
        assert!(
            failed.to_line().contains(r#""code":"invalid_model""#),
            "{}",
            failed.to_line()
        );
        assert_eq!(
            serde_json::from_str::<Handshake>(&failed.to_line()).expect("parse"),
            failed
        );
    }
}
