//! The conversation as a prompt for the model at hand: chat messages for a model that
//! has a chat template; for a base model (no template, e.g. Gemma 3 270M) a plain
//! transcript it can continue, with a stop string so it writes one turn only. This is
//! what lets a chat move to any backend and model and keep every earlier turn.

use hearth_core::{ChatMessage, Prompt, Role, SamplingParams};

/// Stops a base model before it writes the user's next turn itself.
pub const TRANSCRIPT_STOP: &str = "\nUser:";

pub fn prompt_for(messages: &[ChatMessage], has_chat_template: bool, params: &mut SamplingParams) -> Prompt {
    if has_chat_template {
        return Prompt::Chat(messages.to_vec());
    }
    if !params.stop.iter().any(|s| s == TRANSCRIPT_STOP) {
        params.stop.push(TRANSCRIPT_STOP.to_owned());
    }
    Prompt::Text(transcript(messages))
}

/// `System` text first, then `User:` / `Assistant:` turns, ending with `Assistant:`.
pub fn transcript(messages: &[ChatMessage]) -> String {
    let mut text = String::new();
    for m in messages {
        let label = match m.role {
            Role::System => {
                text.push_str(m.content.trim());
                text.push_str("\n\n");
                continue;
            }
            Role::User => "User",
            Role::Assistant => "Assistant",
        };
        text.push_str(label);
        text.push_str(": ");
        text.push_str(m.content.trim());
        text.push('\n');
    }
    text.push_str("Assistant:");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_model_gets_every_turn_as_a_transcript() {
        let messages = [
            ChatMessage::system("Be brief."),
            ChatMessage::user("Hi"),
            ChatMessage::assistant("Hello!"),
            ChatMessage::user("What is 2+2?"),
        ];
        let mut params = SamplingParams::greedy(16);
        let prompt = prompt_for(&messages, false, &mut params);
        assert_eq!(
            prompt,
            Prompt::Text("Be brief.\n\nUser: Hi\nAssistant: Hello!\nUser: What is 2+2?\nAssistant:".into())
        );
        assert_eq!(params.stop, [TRANSCRIPT_STOP]);
        let mut params = SamplingParams::greedy(16);
        assert_eq!(
            prompt_for(&messages, true, &mut params),
            Prompt::Chat(messages.to_vec())
        );
        assert!(params.stop.is_empty());
    }
}
