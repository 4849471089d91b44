//! `hearth pull`, `hearth search` and models other tools keep, run as a user runs them:
//! the real binary against a local server that speaks Hugging Face's protocol (serving
//! the real default models), and an Ollama store laid out as Ollama writes it.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{chat_model, hearth};
use hearth_hub::local_hub::{sha256_file, LocalHub};

const REPO: &str = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF";

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// `hearth ARGS` with the models folder, settings and Hub given, nothing from this machine's own.
fn pull_command(server: &LocalHub, models: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(hearth());
    command
        .args(args)
        .env("HF_ENDPOINT", &server.url)
        .env_remove("HF_TOKEN")
        .env("HEARTH_MODELS_DIR", models)
        .env("HEARTH_SETTINGS", models.join("no-settings.toml"))
        .env("OLLAMA_MODELS", models.join("no-ollama"))
        .stdin(Stdio::null());
    command
}

fn run_ok(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    output
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn the_remote_fit_verdict_matches_the_plan_of_the_downloaded_file() {
    let server = LocalHub::start().unwrap();
    let name = file_name(&chat_model());
    let sha = server.add_file(REPO, &name, &chat_model()).unwrap();
    let models = tempfile::tempdir().unwrap();

    let listed = run_ok(&mut pull_command(&server, models.path(), &["pull", REPO, "--json"]));
    let listed = json_lines(&listed);
    assert_eq!(listed.len(), 1);
    let remote = &listed[0];
    assert_eq!(remote["file"], name.as_str());
    assert_eq!(remote["sha256"], sha.as_str());
    let size = remote["size"].as_u64().unwrap();
    let read = remote["header_bytes_read"].as_u64().unwrap();
    println!("{{\"file\": \"{name}\", \"header_bytes_read\": {read}, \"file_bytes\": {size}}}");
    assert!((read as f64) < 0.05 * size as f64, "read {read} of {size} bytes");
    let human = run_ok(&mut pull_command(&server, models.path(), &["pull", REPO]));
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains("Q4_1") && human.contains(&format!("hearth pull {REPO} Q4_1")),
        "{human}"
    );

    let pulled = run_ok(&mut pull_command(
        &server,
        models.path(),
        &["pull", REPO, "q4_1", "--json"],
    ));
    let pulled = &json_lines(&pulled)[0];
    let path = models.path().join(&name);
    assert_eq!(pulled["path"], path.to_str().unwrap());
    assert_eq!(sha256_file(&path).unwrap(), sha);
    println!("{pulled}");

    let planned = run_ok(&mut pull_command(&server, models.path(), &["plan", &name, "--json"]));
    let local: serde_json::Value = serde_json::from_slice(&planned.stdout).unwrap();
    let remote_plan = &remote["plan"];
    for key in ["verdict", "gpu_layers", "n_layer", "n_ctx", "model", "quantization"] {
        assert_eq!(remote_plan[key], local[key], "{key}: {remote_plan} vs {local}");
    }
    // What the model needs is read from the header alone, so it is the same to the byte.
    assert_eq!(remote_plan["cpu"]["weights_bytes"], local["cpu"]["weights_bytes"]);
    assert_eq!(remote_plan["cpu"]["kv_cache_bytes"], local["cpu"]["kv_cache_bytes"]);
}

#[test]
fn a_killed_download_resumes_after_a_restart() {
    let server = LocalHub::start().unwrap();
    let name = file_name(&chat_model());
    let sha = server.add_file(REPO, &name, &chat_model()).unwrap();
    let size = std::fs::metadata(chat_model()).unwrap().len();
    // About ten seconds for the whole file: time to see 40% arrive and stop there.
    server.throttle(Some(size / 10));
    let models = tempfile::tempdir().unwrap();
    let part = models.path().join(format!("{name}.part"));
    let mut child = pull_command(&server, models.path(), &["pull", REPO, "Q4_1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < size * 4 / 10 {
        assert!(Instant::now() < deadline, "40% never arrived");
        assert!(child.try_wait().unwrap().is_none(), "hearth pull ended before 40%");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept >= size * 4 / 10 && kept < size, "kept {kept} of {size}");
    assert!(!models.path().join(&name).exists(), "no complete-looking file");

    server.throttle(None);
    server.clear_log();
    let output = run_ok(&mut pull_command(&server, models.path(), &["pull", REPO, "Q4_1"]));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("resumed from"), "{said}");
    let gets: Vec<_> = server
        .log()
        .into_iter()
        .filter(|l| l.method == "GET" && l.path.starts_with("/cdn/"))
        .collect();
    assert_eq!(
        gets[0].range.as_deref(),
        Some(format!("bytes={kept}-").as_str()),
        "{gets:?}"
    );
    assert_eq!(gets[0].bytes_sent, size - kept);
    assert_eq!(sha256_file(&models.path().join(&name)).unwrap(), sha);
}

#[test]
fn a_stopped_download_can_be_discarded() {
    let server = LocalHub::start().unwrap();
    let name = file_name(&chat_model());
    server.add_file(REPO, &name, &chat_model()).unwrap();
    let models = tempfile::tempdir().unwrap();
    std::fs::write(models.path().join(format!("{name}.part")), b"partial").unwrap();
    std::fs::write(models.path().join(format!("{name}.part.json")), "{}").unwrap();
    let said = run_ok(&mut pull_command(
        &server,
        models.path(),
        &["pull", REPO, "Q4_1", "--discard"],
    ));
    assert!(String::from_utf8_lossy(&said.stdout).contains("Removed"));
    assert_eq!(std::fs::read_dir(models.path()).unwrap().count(), 0);
}

#[test]
fn downloads_turned_off_reach_nothing() {
    let server = LocalHub::start().unwrap();
    server.add_file(REPO, &file_name(&chat_model()), &chat_model()).unwrap();
    let models = tempfile::tempdir().unwrap();
    for args in [&["pull", REPO, "Q4_1"][..], &["search", "smol"][..]] {
        let output = pull_command(&server, models.path(), args)
            .env("HEARTH_DOWNLOADS", "off")
            .output()
            .unwrap();
        assert!(!output.status.success());
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(said.contains("downloads are turned off"), "{said}");
    }
    assert!(server.log().is_empty(), "{:?}", server.log());
    // And on, the search finds the repository.
    let found = run_ok(&mut pull_command(&server, models.path(), &["search", "smol", "--json"]));
    assert_eq!(json_lines(&found)[0]["id"], REPO);
}

#[test]
fn an_ollama_model_is_listed_by_its_ollama_name_and_runs() {
    let store = tempfile::tempdir().unwrap();
    let blob_sha = sha256_file(&chat_model()).unwrap();
    let blobs = store.path().join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::copy(chat_model(), blobs.join(format!("sha256-{blob_sha}"))).unwrap();
    std::fs::write(blobs.join("sha256-template"), "{{ .Prompt }}").unwrap();
    let manifest_dir = store.path().join("manifests/registry.ollama.ai/library/smollm2");
    std::fs::create_dir_all(&manifest_dir).unwrap();
    let size = std::fs::metadata(chat_model()).unwrap().len();
    std::fs::write(
        manifest_dir.join("135m"),
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:config", "size": 2},
            "layers": [
                {"mediaType": "application/vnd.ollama.image.model", "digest": format!("sha256:{blob_sha}"), "size": size},
                {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:template", "size": 13}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let empty = tempfile::tempdir().unwrap();
    let with_store = |args: &[&str]| {
        let mut command = Command::new(hearth());
        command
            .args(args)
            .env("HEARTH_MODELS_DIR", empty.path())
            .env("HEARTH_DATA_DIR", empty.path())
            .env("OLLAMA_MODELS", store.path())
            .stdin(Stdio::null());
        command
    };
    let listed = json_lines(&run_ok(&mut with_store(&["models", "--json"])));
    let row = listed
        .iter()
        .find(|r| r["name"] == "smollm2:135m")
        .unwrap_or_else(|| panic!("{listed:?}"));
    assert_eq!(row["source"], "ollama");
    assert_eq!(row["architecture"], "llama");
    assert!(row["chat_template"].as_bool().unwrap());
    let table = run_ok(&mut with_store(&["models"]));
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("smollm2:135m") && l.contains("ollama")),
        "{table}"
    );

    let generated = run_ok(&mut with_store(&[
        "generate",
        "--json",
        "--temperature",
        "0",
        "-n",
        "8",
        "-t",
        "1",
        "--ctx",
        "512",
        "--model",
        "smollm2:135m",
        "Name a color.",
    ]));
    let reply: serde_json::Value = serde_json::from_slice(&generated.stdout).unwrap();
    assert!(!reply["text"].as_str().unwrap().trim().is_empty(), "{reply}");
    assert!(reply["metrics"]["completion_tokens"].as_u64().unwrap() > 0, "{reply}");
}

#[test]
fn with_no_model_the_cli_says_how_to_get_one() {
    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(hearth())
        .args(["models"])
        .env("HEARTH_MODELS_DIR", empty.path())
        .env("HEARTH_DATA_DIR", empty.path())
        .env("OLLAMA_MODELS", empty.path().join("none"))
        .env("HOME", empty.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("hearth pull"), "{said}");
    let output = Command::new(hearth())
        .args(["generate", "-n", "4", "hello"])
        .env("HEARTH_MODELS_DIR", empty.path())
        .env("HEARTH_DATA_DIR", empty.path())
        .env("HEARTH_SETTINGS", empty.path().join("none.toml"))
        .env("OLLAMA_MODELS", empty.path().join("none"))
        .env("HOME", empty.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("hearth pull"), "{said}");
}
