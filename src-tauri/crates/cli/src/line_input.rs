//! What `hearth chat` reads. At a terminal: rustyline, so the line can be edited (arrows,
//! Home/End, Ctrl-W...), earlier messages come back with Up (kept across runs in
//! `chat_history.txt` in the data folder), and a block pasted with several lines arrives
//! as one message (bracketed paste: the newlines stay in the line until Enter). From a
//! pipe: lines as they come. Either way, a line of `"""` opens a block that the next
//! `"""` closes, sent as one message: several lines typed by hand, or piped.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::Result;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Config, Editor};

/// Opens and closes a block of several lines.
pub const BLOCK_FENCE: &str = "\"\"\"";

/// The most messages the history keeps.
const HISTORY_SIZE: usize = 1000;

type LineEditor = Editor<(), DefaultHistory>;

/// One read.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// A message or command, without its final newline.
    Message(String),
    /// Ctrl-C at the prompt (a terminal only).
    Interrupted,
    /// Ctrl-D or the end of the input.
    End,
}

/// The chat's input: a line editor at a terminal, plain lines otherwise.
pub struct LineInput {
    /// `None` when reading from a pipe; taken while a read runs off the runtime.
    editor: Option<LineEditor>,
    history: Option<PathBuf>,
}

impl LineInput {
    /// A line editor when stdin and stdout are both a terminal, with its history in
    /// `history` (read now, written after each message); plain lines otherwise.
    pub fn open(history: Option<PathBuf>) -> Result<Self> {
        let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        if !terminal {
            return Ok(LineInput {
                editor: None,
                history: None,
            });
        }
        let config = Config::builder()
            .max_history_size(HISTORY_SIZE)?
            .auto_add_history(false)
            .history_ignore_dups(true)?
            .history_ignore_space(true)
            .bracketed_paste(true)
            .build();
        let mut editor = LineEditor::with_config(config)?;
        if let Some(path) = &history {
            // No history yet is the usual first run; an unreadable one starts afresh.
            let _ = editor.load_history(path);
        }
        Ok(LineInput {
            editor: Some(editor),
            history,
        })
    }

    /// The next message: one line, or a `"""` block of several.
    pub async fn message(&mut self, prompt: &str) -> Result<Input> {
        let first = self.line(prompt).await?;
        let Input::Message(line) = first else {
            return Ok(first);
        };
        if line.trim() != BLOCK_FENCE {
            self.remember(&line);
            return Ok(Input::Message(line));
        }
        let mut block: Vec<String> = Vec::new();
        loop {
            match self.line("… ").await? {
                Input::Message(line) if line.trim() == BLOCK_FENCE => break,
                Input::Message(line) => block.push(line),
                // Ctrl-C abandons the block; the end of the input sends what came.
                Input::Interrupted => return Ok(Input::Interrupted),
                Input::End => break,
            }
        }
        let message = block.join("\n");
        self.remember(&message);
        Ok(Input::Message(message))
    }

    /// One line (at a terminal, possibly holding pasted newlines).
    async fn line(&mut self, prompt: &str) -> Result<Input> {
        match self.editor.take() {
            None => {
                eprint!("{prompt}");
                tokio::task::spawn_blocking(read_plain_line).await?
            }
            Some(mut editor) => {
                let prompt = prompt.to_owned();
                let (editor, read) = tokio::task::spawn_blocking(move || {
                    let read = editor.readline(&prompt);
                    (editor, read)
                })
                .await?;
                self.editor = Some(editor);
                match read {
                    Ok(line) => Ok(Input::Message(line)),
                    Err(ReadlineError::Interrupted) => Ok(Input::Interrupted),
                    Err(ReadlineError::Eof) => Ok(Input::End),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Adds a message to the history and saves it (a failed save costs only the history).
    fn remember(&mut self, message: &str) {
        let Some(editor) = self.editor.as_mut() else {
            return;
        };
        if message.trim().is_empty() || editor.add_history_entry(message).is_err() {
            return;
        }
        if let Some(path) = &self.history {
            if let Err(e) = editor.save_history(path) {
                tracing::warn!("cannot save the chat history to {}: {e}", path.display());
            }
        }
    }
}

fn read_plain_line() -> Result<Input> {
    let mut line = String::new();
    Ok(match std::io::stdin().lock().read_line(&mut line)? {
        0 => Input::End,
        _ => Input::Message(line.trim_end_matches(['\n', '\r']).to_owned()),
    })
}
