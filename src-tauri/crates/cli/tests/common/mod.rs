//! Helpers for the tests that run the real `hearth` binary: start `hearth serve`,
//! find its worker, watch processes through /proc, make a directory read-only, damage
//! a database.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hearth_core::paths::{models_dir, DEFAULT_CHAT_MODEL};

pub const TOKEN: &str = "test-token-0123456789";
pub const MODEL_ID: &str = "SmolLM2-135M-Instruct-Q4_1";

pub fn hearth() -> &'static str {
    env!("CARGO_BIN_EXE_hearth")
}

pub fn base_model() -> PathBuf {
    let path = models_dir().join(hearth_core::paths::DEFAULT_BASE_MODEL);
    assert!(path.exists(), "{} is missing: run `make models`", path.display());
    path
}

pub fn chat_model() -> PathBuf {
    let path = models_dir().join(DEFAULT_CHAT_MODEL);
    assert!(path.exists(), "{} is missing: run `make models`", path.display());
    path
}

/// A running `hearth serve`, killed (and reaped) when dropped.
pub struct Serve {
    pub child: Child,
    pub url: String,
    pub port: u16,
}

impl Serve {
    /// Starts `hearth serve` on a free port with the default chat model and `extra` arguments.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_model(&chat_model(), extra)
    }

    /// Starts `hearth serve` on a free port with `model` and `extra` arguments.
    pub fn start_model(model: &std::path::Path, extra: &[&str]) -> Self {
        let mut with_token = vec!["--token", TOKEN];
        with_token.extend_from_slice(extra);
        Self::start_without_token(model, &with_token)
    }

    /// Starts `hearth serve` on a free port with `model` and `extra` arguments, which
    /// give the token if there is to be one (`HEARTH_API_TOKEN` is cleared).
    pub fn start_without_token(model: &std::path::Path, extra: &[&str]) -> Self {
        let mut child = Command::new(hearth())
            .args(["serve", "--port", "0", "--threads", "2", "--ctx", "2048", "--model"])
            .arg(model)
            .args(extra)
            .env_remove("HEARTH_API_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start hearth serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        let url = value["listening"].as_str().expect("listening").to_owned();
        let port = url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
        Self { child, url, port }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls /health/ready until it answers `status`, failing after `limit`.
    pub async fn wait_ready_status(&self, status: u16, limit: Duration) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + limit;
        loop {
            let got = client
                .get(format!("{}/health/ready", self.url))
                .send()
                .await
                .map(|r| r.status().as_u16());
            if got.as_ref().ok() == Some(&status) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/health/ready never answered {status} (last: {got:?})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The worker process serving the model (the one child of `hearth serve`).
    pub fn worker_pid(&self) -> u32 {
        let children = children_of(self.pid());
        assert_eq!(children.len(), 1, "expected one worker, found {children:?}");
        children[0]
    }
}

impl Drop for Serve {
    /// Stops it as a service manager would (SIGTERM, then SIGKILL after 10 s), so the
    /// server's own shutdown runs; a test that needs a kill sends one itself. (Not an
    /// assertion: a slow stop only ends in the SIGKILL.)
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_ok() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fields of /proc/PID/stat after the command name: state is [0], ppid [1], utime [11], stime [12].
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// Running (not gone, not a zombie waiting to be reaped).
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f[0] != "Z" && f[0] != "X")
}

pub fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if stat_fields(pid).is_some_and(|f| f[1] == parent.to_string() && f[0] != "Z") {
            children.push(pid);
        }
    }
    children
}

/// CPU time used so far, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    stat_fields(pid).map_or(0, |f| {
        f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0)
    })
}

/// Waits until `pid` has exited, failing after `limit`.
pub async fn wait_gone(pid: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "process {pid} is still alive after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `pid` stops using CPU (less than 2 ticks in 300 ms), failing after `limit`.
pub async fn wait_idle(pid: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let before = cpu_ticks(pid);
        tokio::time::sleep(Duration::from_millis(300)).await;
        if cpu_ticks(pid) - before < 2 {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} is still busy after {limit:?}");
    }
}

pub fn sigkill(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill -9");
}

/// A read-only view of a directory (a read-only bind mount: root ignores permission
/// bits, so a chmod would prove nothing), undone on drop.
pub struct ReadOnlyDir {
    point: PathBuf,
}

impl ReadOnlyDir {
    /// Fails the test (never skips it) where mounting is impossible, and checks that
    /// even root cannot write there.
    pub fn new(point: &std::path::Path) -> Self {
        let p = point.to_str().expect("a UTF-8 path");
        mount(&["--bind", p, p]);
        let dir = Self {
            point: point.to_path_buf(),
        };
        mount(&["-o", "remount,ro,bind", p, p]);
        assert!(
            std::fs::write(point.join("probe"), b"x").is_err(),
            "{} is still writable",
            point.display()
        );
        dir
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.point).status();
    }
}

fn mount(args: &[&str]) {
    let out = Command::new("mount").args(args).output().expect("run mount");
    assert!(
        out.status.success(),
        "`mount {}` failed (a read-only directory needs mount rights: run as root, as `make test` and CI do): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Damages the (empty) `model_evals` table's only page of the database at `db`: a
/// table no chat write touches, so only a check of the whole file notices it.
pub fn damage_model_evals(db: &std::path::Path) {
    let (root, page_size) = {
        // Read-write, so that closing it removes the -wal and -shm it made.
        let conn = rusqlite::Connection::open(db).expect("open");
        let root: u64 = conn
            .query_row(
                "SELECT rootpage FROM sqlite_schema WHERE name = 'model_evals'",
                [],
                |r| r.get(0),
            )
            .expect("model_evals");
        let page_size: u64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .expect("page size");
        (root, page_size)
    };
    let mut bytes = std::fs::read(db).expect("read");
    let at = usize::try_from((root - 1) * page_size).expect("offset");
    assert_eq!(bytes[at], 0x0d, "model_evals' root is not an empty table leaf");
    bytes[at] = 0x55; // no b-tree page has this type
    std::fs::write(db, &bytes).expect("write");
}
