//! `hearth chat` at a terminal, as a person types into it: the child runs on a
//! pseudo-terminal, and the test sends the bytes a terminal sends for keys and for a
//! paste. Checked in the database: what each message really was.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{chat_model, hearth};
use hearth_core::Role;
use hearth_store::{Store, LOCAL_USER};
use nix::pty::{openpty, Winsize};

/// `hearth chat` in this process on the default chat model, greedy and short, with its
/// data (and no settings file) in `data`.
fn chat_command(data: &Path) -> Command {
    let mut command = Command::new(hearth());
    command
        .args([
            "chat",
            "--in-process",
            "--temperature",
            "0",
            "-n",
            "6",
            "-t",
            "1",
            "--ctx",
            "1024",
        ])
        .arg("--model")
        .arg(chat_model())
        .env("HEARTH_DATA_DIR", data)
        .env("HEARTH_SETTINGS", data.join("settings.toml"));
    command
}

/// A `hearth chat` on a pseudo-terminal, and everything it has written to it so far.
struct TerminalChat {
    child: Child,
    keyboard: std::fs::File,
    screen: Arc<Mutex<String>>,
}

impl TerminalChat {
    fn start(data: &Path) -> Self {
        let size = Winsize {
            ws_row: 40,
            ws_col: 200,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(Some(&size), None).expect("a pseudo-terminal");
        let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup the terminal"));
        let child = chat_command(data)
            .env("TERM", "xterm-256color")
            .stdin(slave(&pty.slave))
            .stdout(slave(&pty.slave))
            .stderr(slave(&pty.slave))
            .spawn()
            .expect("start hearth chat");
        drop(pty.slave);
        let keyboard = std::fs::File::from(pty.master);
        let mut output = keyboard.try_clone().expect("dup the master side");
        let screen = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the child has closed its side.
            while let Ok(n @ 1..) = output.read(&mut buf) {
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        TerminalChat {
            child,
            keyboard,
            screen,
        }
    }

    /// Waits until the screen has shown `needle` `times` times in all.
    fn wait_for(&self, needle: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let screen = self.screen.lock().unwrap().clone();
            if screen.matches(needle).count() >= times {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not shown {times} times; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn keys(&mut self, bytes: &str) {
        self.keyboard.write_all(bytes.as_bytes()).expect("type");
        self.keyboard.flush().expect("type");
    }

    /// Ctrl-D at the prompt: the chat ends, successfully.
    fn quit(mut self) {
        self.keys("\x04");
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "hearth chat exited with {status}");
    }
}

const UP: &str = "\x1b[A";
const LEFT: &str = "\x1b[D";
const PASTE_START: &str = "\x1b[200~";
const PASTE_END: &str = "\x1b[201~";

/// The user's messages of every saved conversation, oldest conversation first.
fn user_messages(data: &Path) -> Vec<Vec<String>> {
    let store = Store::open(data.join("hearth.db")).expect("the database");
    let mut sessions = store.list_sessions(LOCAL_USER, usize::MAX).expect("sessions");
    sessions.reverse();
    sessions
        .iter()
        .map(|s| {
            store
                .list_messages(&s.id)
                .expect("messages")
                .into_iter()
                .filter(|m| m.role == Role::User)
                .map(|m| m.content)
                .collect()
        })
        .collect()
}

#[test]
fn the_terminal_chat_edits_lines_recalls_history_across_runs_and_takes_a_paste_as_one_message() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut chat = TerminalChat::start(data.path());
    chat.wait_for("ready (in-process", 1);
    // The editor turns bracketed paste on before its first prompt.
    chat.wait_for("\x1b[?2004h", 1);

    // A block of three lines pasted, then Enter: one message.
    chat.keys(&format!(
        "{PASTE_START}Name a colour.\nThen a fruit.\nThen a tree.{PASTE_END}"
    ));
    chat.keys("\r");
    chat.wait_for("tok/s", 1);
    // Typed with a slip, mended with Left: "helo" becomes "hello".
    chat.wait_for("\x1b[?2004h", 2);
    chat.keys(&format!("helo{LEFT}l\r"));
    chat.wait_for("tok/s", 2);
    // Up brings back the last message; Enter sends it again.
    chat.wait_for("\x1b[?2004h", 3);
    chat.keys(&format!("{UP}\r"));
    chat.wait_for("tok/s", 3);
    chat.wait_for("\x1b[?2004h", 4);
    chat.quit();

    // A new run keeps the history (a repeat is kept once): two Ups reach the paste.
    let mut chat = TerminalChat::start(data.path());
    chat.wait_for("\x1b[?2004h", 1);
    chat.keys(&format!("{UP}{UP}\r"));
    chat.wait_for("tok/s", 1);
    chat.wait_for("\x1b[?2004h", 2);
    chat.quit();

    let block = "Name a colour.\nThen a fruit.\nThen a tree.";
    assert_eq!(
        user_messages(data.path()),
        [vec![block, "hello", "hello"], vec![block]],
        "the messages saved"
    );
}

#[test]
fn a_fenced_block_from_a_pipe_is_one_message() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = chat_command(data.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hearth chat");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"\"\"\"\nfirst line\n\n  indented third\n\"\"\"\nsingle line\n/quit\n")
        .expect("send");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        user_messages(data.path()),
        [vec!["first line\n\n  indented third", "single line"]]
    );
}

#[test]
fn status_says_where_the_model_runs() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = chat_command(data.path())
        .args(["--device", "cpu"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hearth chat");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"/status\n/quit\n")
        .expect("send");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Once when the chat starts, once for /status; and in /status's JSON.
    assert_eq!(
        stderr.matches("SmolLM2-135M-Instruct-Q4_1 on CPU\n").count(),
        2,
        "{stderr}"
    );
    assert!(stderr.contains("\"placement\": {"), "{stderr}");
    assert!(stderr.contains("\"device\": \"CPU\""), "{stderr}");
}
