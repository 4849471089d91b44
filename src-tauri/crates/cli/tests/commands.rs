//! `hearth generate` and `hearth chat` as a user runs them: through a worker process
//! by default, in this process with `--in-process`; Ctrl-C stops a reply, not the chat;
//! a damaged database gets nothing written into it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{alive, base_model, chat_model, children_of, damage_model_evals, hearth, wait_gone};
use hearth_core::Role;
use hearth_store::{NewMessage, NewSession, SessionId, Store};

fn generate_json(data_dir: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let output = Command::new(hearth())
        .args([
            "generate",
            "--json",
            "--temperature",
            "0",
            "-n",
            "24",
            "-t",
            "1",
            "--ctx",
            "1024",
        ])
        .arg("--model")
        .arg(chat_model())
        .args(extra)
        .arg("Name three colors.")
        .env("HEARTH_DATA_DIR", data_dir)
        .stdin(Stdio::null())
        .output()
        .expect("run hearth generate");
    assert!(
        output.status.success(),
        "hearth generate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}

#[test]
fn generate_through_the_worker_gives_the_in_process_text() {
    let data = tempfile::tempdir().expect("tempdir");
    let worker = generate_json(data.path(), &[]);
    let local = generate_json(data.path(), &["--in-process"]);
    assert_eq!(worker["engine"], "worker");
    assert_eq!(local["engine"], "in-process");
    let text = worker["text"].as_str().expect("text");
    assert!(!text.trim().is_empty(), "empty reply: {worker}");
    assert_eq!(
        worker["text"], local["text"],
        "greedy text differs across the process boundary"
    );
    assert_eq!(
        worker["metrics"]["completion_tokens"],
        local["metrics"]["completion_tokens"]
    );
    // Every load and every generation leaves a performance record, in either mode.
    let store = Store::open(data.path().join("hearth.db")).expect("the database");
    let stats = store.stats().expect("stats");
    assert_eq!(stats.perf_logs, 4, "{stats:?}");
}

/// Reads a child's stderr on a thread, so the test can wait for a line with a deadline.
fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        match lines.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line containing {needle:?} ({e})"),
        }
    }
}

#[tokio::test]
async fn ctrl_c_stops_the_reply_not_the_chat_and_the_worker_goes_with_it() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(hearth())
        .args(["chat", "--temperature", "0", "-n", "3000", "-t", "1", "--ctx", "4096"])
        .arg("--model")
        .arg(chat_model())
        .env("HEARTH_DATA_DIR", data.path())
        // No settings file: the embedded engine alone, whatever this machine's user configured.
        .env("HEARTH_SETTINGS", data.path().join("settings.toml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hearth chat");
    let pid = child.id();
    let errors = lines_of(child.stderr.take().expect("stderr"));
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stdin = child.stdin.take().expect("stdin");
    wait_for_line(&errors, "ready (worker");
    let workers = children_of(pid);
    assert_eq!(workers.len(), 1, "one worker process expected, found {workers:?}");

    writeln!(
        stdin,
        "Write a very long story about a dragon who learns to bake bread."
    )
    .expect("send");
    let session = wait_for_line(&errors, "saving as session");
    let session = session
        .split("--session ")
        .nth(1)
        .and_then(|s| s.strip_suffix(')'))
        .expect("session id")
        .to_owned();
    // The reply has started once its first bytes arrive.
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).expect("the reply starts");
    let stdout_drain = std::thread::spawn(move || {
        let mut rest = Vec::new();
        let _ = stdout.read_to_end(&mut rest);
        rest
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("Ctrl-C");
    let summary = wait_for_line(&errors, "tok/s");
    assert!(summary.contains("cancelled"), "the reply was not cancelled: {summary}");
    assert!(alive(pid), "Ctrl-C ended the chat");
    assert!(alive(workers[0]), "Ctrl-C ended the worker");

    writeln!(stdin, "/quit").expect("quit");
    drop(stdin);
    let status = child.wait().expect("wait");
    assert!(status.success(), "chat exited with {status}");
    let _ = stdout_drain.join();
    // A hang detector: the worker goes with the chat in milliseconds; an orphan never does.
    wait_gone(workers[0], Duration::from_secs(60)).await;

    // The stopped reply is kept, marked incomplete.
    let store = Store::open(data.path().join("hearth.db")).expect("the database");
    let messages = store
        .list_messages(&SessionId::from(session.as_str()))
        .expect("messages");
    let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::User, Role::Assistant]);
    assert!(
        messages[1].metadata.incomplete,
        "the stopped reply is not marked incomplete"
    );
    assert!(!messages[1].content.is_empty());
}

#[test]
fn bench_switch_prints_its_figures() {
    let data = tempfile::tempdir().expect("tempdir");
    let output = Command::new(hearth())
        .args(["bench", "switch", "--reps", "1", "-t", "1", "--model"])
        .arg(chat_model())
        .arg("--model")
        .arg(base_model())
        .env("HEARTH_DATA_DIR", data.path())
        .stdin(Stdio::null())
        .output()
        .expect("run hearth bench switch");
    assert!(
        output.status.success(),
        "hearth bench switch failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(line["bench"], "switch");
    assert_eq!(line["from_model"], "SmolLM2-135M-Instruct-Q4_1");
    assert_eq!(line["to_model"], "gemma-3-270m-Q4_K_M");
    assert_eq!(line["messages_carried"], 6);
    for key in [
        "switch_ms",
        "switch_cold_ms",
        "ttft_ms",
        "ttft_with_one_retry_ms",
        "retry_overhead_ms",
    ] {
        assert!(line[key].is_f64(), "{key} missing: {line}");
    }
    // The retried turn waited out the backoff (1 s) before it started. (A lower bound:
    // a busy machine can only make it later.)
    assert!(line["ttft_with_one_retry_ms"].as_f64() >= Some(1000.0), "{line}");
}

#[test]
fn a_damaged_database_gets_nothing_written_and_the_chat_goes_on_without_history() {
    let data = tempfile::tempdir().expect("tempdir");
    let db = data.path().join("hearth.db");
    {
        let store = Store::open(&db).expect("the database");
        let session = store.create_session(&NewSession::default()).expect("session");
        store
            .append_message(&session.id, &NewMessage::new(Role::User, "kept"))
            .expect("message");
    }
    damage_model_evals(&db);
    let before = std::fs::read(&db).expect("read");

    // A chat (its worker logs the load, the turn saves a session, a message and a
    // performance record) and a generation (two performance records).
    let mut chat = Command::new(hearth())
        .args(["chat", "--temperature", "0", "-n", "4", "-t", "1", "--ctx", "1024"])
        .arg("--model")
        .arg(chat_model())
        .env("HEARTH_DATA_DIR", data.path())
        .env("HEARTH_SETTINGS", data.path().join("settings.toml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hearth chat");
    let mut stdin = chat.stdin.take().expect("stdin");
    writeln!(stdin, "Say hi.\n/quit").expect("send");
    drop(stdin);
    let chat = chat.wait_with_output().expect("wait");
    let said = String::from_utf8_lossy(&chat.stderr);
    assert!(chat.status.success(), "{said}");
    assert!(
        said.contains("chat history is off for this run") && said.contains("is corrupt"),
        "{said}"
    );
    generate_json(data.path(), &[]);
    // The check finds the damage, and what is left can be backed up.
    let hearth_db = |args: &[&str]| {
        Command::new(hearth())
            .arg("db")
            .args(args)
            .env("HEARTH_DATA_DIR", data.path())
            .output()
            .expect("run hearth db")
    };
    let check = hearth_db(&["check"]);
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).expect("a JSON report");
    assert_eq!(report["ok"], false, "{report}");
    assert!(!check.status.success());
    assert!(String::from_utf8_lossy(&check.stderr).contains("hearth db backup FILE"));
    let backup = data.path().join("backup.db");
    let copied = hearth_db(&["backup", backup.to_str().expect("utf-8")]);
    assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));
    assert!(backup.exists());

    assert_eq!(
        std::fs::read(&db).expect("read"),
        before,
        "something was written into the damaged file"
    );
    let wal = data.path().join("hearth.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "changes wait in {}",
        wal.display()
    );
}
