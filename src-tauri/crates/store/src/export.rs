//! A conversation as a file a person keeps: Markdown to read (title, each turn under
//! its speaker, the model and figures of each reply, stopped replies marked) or JSON
//! to re-import (the session and its messages exactly as stored). `hearth sessions
//! export` writes these; the format is the store's, so every front end exports alike.

use std::fmt::Write as _;

use hearth_core::Role;

use crate::SessionWithMessages;

/// The formats a conversation exports to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Markdown,
    Json,
}

impl ExportFormat {
    /// "md"/"markdown" or "json", any case.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "md" | "markdown" => Some(Self::Markdown),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// The conversation in `format`.
pub fn export_session(session: &SessionWithMessages, format: ExportFormat) -> String {
    match format {
        ExportFormat::Json => serde_json::to_string_pretty(session).unwrap_or_default(),
        ExportFormat::Markdown => markdown(session),
    }
}

fn markdown(s: &SessionWithMessages) -> String {
    let title = if s.session.title.trim().is_empty() {
        "Untitled conversation"
    } else {
        s.session.title.trim()
    };
    let mut out = format!("# {title}\n\n");
    let _ = writeln!(
        out,
        "_Session {} · {} messages · exported from Hearth_\n",
        s.session.id, s.session.message_count
    );
    for m in &s.messages {
        let speaker = match m.role {
            Role::System => "System",
            Role::User => "You",
            Role::Assistant => "Assistant",
        };
        let _ = writeln!(out, "## {speaker}\n");
        out.push_str(m.content.trim_end());
        out.push_str("\n\n");
        if m.role == Role::Assistant {
            let mut facts: Vec<String> = Vec::new();
            if let Some(model) = &m.metadata.model {
                facts.push(model.clone());
            }
            if let Some(metrics) = &m.metadata.metrics {
                if let Some(tokens) = metrics.get("completion_tokens").and_then(|v| v.as_u64()) {
                    facts.push(format!("{tokens} tokens"));
                }
                if let Some(tps) = metrics.get("decode_tps").and_then(|v| v.as_f64()).filter(|t| *t > 0.0) {
                    facts.push(format!("{tps:.1} tok/s"));
                }
            }
            if m.metadata.incomplete {
                facts.push("stopped before the end".into());
            }
            if !facts.is_empty() {
                let _ = writeln!(out, "_{}_\n", facts.join(" · "));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, MessageId, MessageMetadata, Session, SessionId};

    fn message(id: i64, role: Role, content: &str, metadata: MessageMetadata) -> Message {
        Message {
            id: MessageId(id),
            session_id: SessionId::from("s-1"),
            role,
            content: content.into(),
            timestamp: 1,
            metadata,
        }
    }

    #[test]
    fn markdown_names_each_speaker_and_an_untitled_conversation() {
        let whole = SessionWithMessages {
            session: Session {
                id: SessionId::from("s-1"),
                user_id: "local".into(),
                title: "  ".into(),
                created_at: 1,
                updated_at: 1,
                data: serde_json::json!({}),
                message_count: 3,
            },
            messages: vec![
                message(1, Role::System, "Be brief.", MessageMetadata::default()),
                message(2, Role::User, "Hi\n\n", MessageMetadata::default()),
                message(3, Role::Assistant, "Hello.", MessageMetadata::default()),
            ],
        };
        let md = export_session(&whole, ExportFormat::Markdown);
        assert_eq!(
            md,
            "# Untitled conversation\n\n_Session s-1 · 3 messages · exported from Hearth_\n\n\
             ## System\n\nBe brief.\n\n## You\n\nHi\n\n## Assistant\n\nHello.\n\n"
        );
        let json: SessionWithMessages =
            serde_json::from_str(&export_session(&whole, ExportFormat::Json)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json, whole);
        assert_eq!(ExportFormat::parse("Markdown"), Some(ExportFormat::Markdown));
        assert_eq!(ExportFormat::parse("MD"), Some(ExportFormat::Markdown));
        assert_eq!(ExportFormat::parse("json"), Some(ExportFormat::Json));
        assert_eq!(ExportFormat::parse("pdf"), None);
    }
}
