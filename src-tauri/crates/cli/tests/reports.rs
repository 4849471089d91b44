//! The commands that report rather than chat: `hearth hw`, `hearth db` and `hearth bench`
//! (generate, store, hw, worker), run as a user runs them. What the figures are is not
//! asserted (speed is machine-dependent); that each line is there, well-formed, and
//! consistent with itself is.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{base_model, chat_model, hearth};

fn run(data: &Path, args: &[&str]) -> Output {
    Command::new(hearth())
        .args(args)
        .env("HEARTH_DATA_DIR", data)
        .stdin(Stdio::null())
        .output()
        .expect("run hearth")
}

fn run_ok(data: &Path, args: &[&str]) -> String {
    let output = run(data, args);
    assert!(
        output.status.success(),
        "hearth {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

#[test]
fn hw_describes_this_machine_in_words_and_json() {
    let data = tempfile::tempdir().expect("tempdir");
    let words = run_ok(data.path(), &["hw"]);
    assert!(words.starts_with("CPU "), "{words}");
    assert!(words.contains("RAM "), "{words}");
    let snapshot: serde_json::Value = serde_json::from_str(&run_ok(data.path(), &["hw", "--json"])).expect("JSON");
    let cores = snapshot["cpu"]["logical_cores"].as_u64().expect("logical cores");
    assert!(cores >= 1);
    let total = snapshot["memory"]["total_bytes"].as_u64().expect("total RAM");
    let available = snapshot["memory"]["available_bytes"].as_u64().expect("available RAM");
    assert!(available <= total && total > 0, "{snapshot}");
    // The words say what the JSON says.
    assert!(words.contains(&format!("{cores} threads")), "{words}");

    // --watch: one line per reading, stopping after --count.
    let watched = run_ok(
        data.path(),
        &["hw", "--watch", "--json", "--interval-ms", "50", "--count", "3"],
    );
    assert_eq!(json_lines(&watched).len(), 3, "{watched}");
    let too_fast = run(data.path(), &["hw", "--watch", "--interval-ms", "1"]);
    assert!(!too_fast.status.success());
    assert!(
        String::from_utf8_lossy(&too_fast.stderr).contains("use 10 ms or more"),
        "{}",
        String::from_utf8_lossy(&too_fast.stderr)
    );
}

#[test]
fn db_stats_backup_and_check_on_the_data_folder() {
    let data = tempfile::tempdir().expect("tempdir");
    // A new database, as the first chat makes it (reading commands never create one).
    drop(hearth_store::Store::open(data.path().join("hearth.db")).expect("a new database"));
    let stats: serde_json::Value = serde_json::from_str(&run_ok(data.path(), &["db", "stats"])).expect("JSON");
    assert_eq!(stats["user_version"], stats["supported_version"], "{stats}");
    assert_eq!(stats["journal_mode"], "wal");
    assert_eq!(stats["sessions"], 0);
    assert!(
        Path::new(stats["path"].as_str().expect("path")).starts_with(data.path()),
        "{stats}"
    );

    let copy = data.path().join("copy.db");
    let backup: serde_json::Value = serde_json::from_str(&run_ok(
        data.path(),
        &["db", "backup", copy.to_str().expect("UTF-8 path")],
    ))
    .expect("JSON");
    assert_eq!(
        backup["bytes"].as_u64(),
        Some(std::fs::metadata(&copy).expect("the copy").len())
    );

    let check: serde_json::Value = serde_json::from_str(&run_ok(data.path(), &["db", "check"])).expect("JSON");
    assert_eq!(check["ok"], true, "{check}");
}

#[test]
fn db_check_fails_on_a_damaged_database_and_says_what_to_do() {
    let data = tempfile::tempdir().expect("tempdir");
    drop(hearth_store::Store::open(data.path().join("hearth.db")).expect("a new database"));
    let db = data.path().join("hearth.db");
    // Overwrite the root page of an index: the database still opens (nothing reads
    // that index on open), and only the integrity check finds it.
    let root: u64 = rusqlite::Connection::open(&db)
        .expect("open")
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = 'chat_history_by_session'",
            [],
            |r| r.get(0),
        )
        .expect("the index's root page");
    let page_size = 4096;
    let mut bytes = std::fs::read(&db).expect("read the database");
    let start = usize::try_from((root - 1) * page_size).expect("offset");
    bytes[start..start + 4096].fill(0x5a);
    std::fs::write(&db, bytes).expect("damage it");
    let output = run(data.path(), &["db", "check"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a damaged database passed: {stderr}");
    assert!(stderr.contains("hearth db backup"), "{stderr}");
}

#[test]
fn bench_store_and_hw_print_one_line_each() {
    let data = tempfile::tempdir().expect("tempdir");
    let store = json_lines(&run_ok(
        data.path(),
        &["bench", "store", "--seconds", "1", "--think-ms", "5"],
    ));
    assert_eq!(store.len(), 1);
    let store = &store[0];
    assert_eq!(store["bench"], "store");
    assert_eq!(store["errors"], 0, "{store}");
    assert!(store["writes"].as_u64().expect("writes") > 0, "{store}");
    assert!(store["reads"].as_u64().expect("reads") > 0, "{store}");
    let (p50, p99) = (
        store["write_p50_ms"].as_f64().unwrap(),
        store["write_p99_ms"].as_f64().unwrap(),
    );
    assert!(p50 <= p99, "{store}");
    // The scratch database is removed; the user's is never touched.
    assert!(!data.path().join("hearth.db").exists());

    let hw = json_lines(&run_ok(data.path(), &["bench", "hw", "--seconds", "2"]));
    assert_eq!(hw.len(), 1);
    assert!(hw[0]["samples"].as_u64().expect("samples") >= 1, "{}", hw[0]);
    assert!(hw[0]["cpu_percent_of_one_core"].as_f64().is_some(), "{}", hw[0]);
}

#[test]
fn bench_generate_prints_a_line_per_model_and_draft_length() {
    let data = tempfile::tempdir().expect("tempdir");
    let model = chat_model();
    let model = model.to_str().expect("UTF-8 path");
    let args = [
        "bench",
        "generate",
        "--model",
        model,
        "--reps",
        "2",
        "-n",
        "16",
        "--prompt-tokens",
        "64",
        "--ctx",
        "512",
        "-t",
        "1",
        "--no-bandwidth",
        "--draft",
        "0,4",
    ];
    let lines = json_lines(&run_ok(data.path(), &args));
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, draft) in lines.iter().zip([0, 4]) {
        assert_eq!(line["bench"], "generate");
        assert_eq!(line["workload"], "prose");
        assert_eq!(line["model"], "SmolLM2-135M-Instruct-Q4_1.gguf");
        assert_eq!(line["max_draft"], draft);
        assert_eq!(line["reps"], 2);
        assert_eq!(line["completion_tokens"], 16, "{line}");
        assert!(line["decode_tps"].as_f64().expect("decode tps") > 0.0, "{line}");
        let (min, max) = (
            line["decode_tps_min"].as_f64().unwrap(),
            line["decode_tps_max"].as_f64().unwrap(),
        );
        assert!(min <= max, "{line}");
        // Greedy, same prompt, same batch shapes, cache cleared: the same text every run.
        assert_eq!(line["same_text"], true, "{line}");
        assert!(line["ceiling_tps"].is_null(), "no bandwidth was measured: {line}");
    }
    assert!(lines[0]["same_as_no_draft"].is_null());
    // A draft run is compared with the plain one (whether the texts agree depends on
    // rounding across batch shapes, so only that the comparison was made is checked).
    assert!(lines[1]["same_as_no_draft"].is_boolean(), "{}", lines[1]);
    assert_eq!(lines[0]["draft_tokens"], 0);

    // A chat workload: the model's template, a reply that need not repeat the prompt.
    let chat = json_lines(&run_ok(
        data.path(),
        &[
            "bench",
            "generate",
            "--model",
            model,
            "--reps",
            "1",
            "-n",
            "8",
            "-t",
            "1",
            "--ctx",
            "512",
            "--no-bandwidth",
            "--draft",
            "0",
            "--chat",
            "Name three rivers.",
        ],
    ));
    assert_eq!(chat.len(), 1);
    assert_eq!(chat[0]["workload"], "chat");
}

#[test]
fn bench_worker_compares_the_process_boundary() {
    let data = tempfile::tempdir().expect("tempdir");
    let model = chat_model();
    let lines = json_lines(&run_ok(
        data.path(),
        &[
            "bench",
            "worker",
            "--model",
            model.to_str().expect("UTF-8 path"),
            "--reps",
            "1",
            "-n",
            "8",
            "-t",
            "1",
        ],
    ));
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(line["bench"], "worker");
    assert_eq!(line["completion_tokens"], 8, "{line}");
    for key in [
        "in_process_decode_tps",
        "worker_decode_tps",
        "worker_ttft_ms",
        "in_process_ttft_ms",
    ] {
        assert!(line[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {line}");
    }
}

#[test]
fn bench_names_a_missing_model() {
    let data = tempfile::tempdir().expect("tempdir");
    let output = run(
        data.path(),
        &["bench", "generate", "--model", "no-such-model", "--no-bandwidth"],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no-such-model"), "{stderr}");
}

#[test]
fn bench_serve_prints_a_line_per_number_of_clients() {
    let data = tempfile::tempdir().expect("tempdir");
    let model = chat_model();
    let lines = json_lines(&run_ok(
        data.path(),
        &[
            "bench",
            "serve",
            "--model",
            model.to_str().expect("UTF-8 path"),
            "--clients",
            "1,2",
            "--requests",
            "1",
            "-n",
            "12",
            "-t",
            "2",
            "--parallel",
            "2",
            "--long-prompt",
            "--long-prompt-trials",
            "1",
        ],
    ));
    assert_eq!(lines.len(), 4, "{lines:?}");
    // After the rounds, the long-prompt lines: idle, then beside a CPU-bound process.
    for (long, busy) in lines[2..].iter().zip([false, true]) {
        assert_eq!(long["bench"], "serve_long_prompt");
        assert_eq!(long["busy"], busy, "{long}");
        assert_eq!(long["trials"], 1, "{long}");
        assert_eq!(long["errors"], 0, "{long}");
        for key in [
            "question_ttft_ms_p50",
            "question_ttft_ms_max",
            "document_ttft_ms_p50",
            "decode_step_ms_p50",
            "gap_steps_p50",
        ] {
            assert!(long[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {long}");
        }
        // Some of the streams' tokens came while the document was read.
        assert!(long["gaps_during_reading"].as_u64() > Some(0), "{long}");
    }
    for (line, clients) in lines.iter().zip([1, 2]) {
        assert_eq!(line["bench"], "serve");
        assert_eq!(line["workload"], "chat");
        assert_eq!(line["clients"], clients);
        assert_eq!(line["requests"], clients);
        assert_eq!(line["errors"], 0, "{line}");
        let tokens = line["completion_tokens"].as_u64().expect("tokens");
        assert!(tokens > 0 && tokens <= 12 * clients, "{line}");
        for key in ["aggregate_tps", "stream_tps_median", "ttft_ms_p50", "ttft_ms_p99"] {
            assert!(line[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {line}");
        }
        assert!(line["ttft_ms_p50"].as_f64() <= line["ttft_ms_p99"].as_f64());
    }
    // A base model (no chat template) through plain completions, drafting off.
    let base = json_lines(&run_ok(
        data.path(),
        &[
            "bench",
            "serve",
            "--model",
            base_model().to_str().expect("UTF-8 path"),
            "--text",
            "--draft",
            "0",
            "--clients",
            "2",
            "--requests",
            "1",
            "-n",
            "8",
            "-t",
            "2",
            "--parallel",
            "2",
        ],
    ));
    assert_eq!(base.len(), 1, "{base:?}");
    assert_eq!(base[0]["workload"], "text");
    assert_eq!(base[0]["errors"], 0, "{}", base[0]);
    assert!(
        base[0]["completion_tokens"].as_u64().is_some_and(|t| t > 0 && t <= 16),
        "{}",
        base[0]
    );
    // Replies that copy their prompt (drafting's case), beside each other.
    let copy = json_lines(&run_ok(
        data.path(),
        &[
            "bench",
            "serve",
            "--model",
            model.to_str().expect("UTF-8 path"),
            "--copy",
            "--clients",
            "2",
            "--requests",
            "1",
            "-n",
            "16",
            "-t",
            "2",
            "--parallel",
            "2",
        ],
    ));
    assert_eq!(copy.len(), 1, "{copy:?}");
    assert_eq!(copy[0]["workload"], "copy");
    assert_eq!(copy[0]["errors"], 0, "{}", copy[0]);
    assert!(
        copy[0]["completion_tokens"].as_u64().is_some_and(|t| t > 0 && t <= 32),
        "{}",
        copy[0]
    );
    // A server that is not there: every request is an error, named.
    let output = run(
        data.path(),
        &[
            "bench",
            "serve",
            "--url",
            "http://127.0.0.1:9",
            "--clients",
            "1",
            "--requests",
            "1",
        ],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let line = &json_lines(&String::from_utf8_lossy(&output.stdout))[0];
    assert_eq!(line["errors"], 1, "{line}");
    assert!(
        line["first_error"].as_str().is_some_and(|e| e.contains("sending")),
        "{line}"
    );
}
