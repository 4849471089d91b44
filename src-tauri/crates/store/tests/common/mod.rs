//! Helpers for the tests that make real bad conditions: a snapshot of a directory's
//! bytes, and mounts (read-only, tiny) that root cannot see through.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every file in `dir` with its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// A mount that is undone on drop (also when the test panics).
pub struct Mount {
    point: PathBuf,
}

impl Mount {
    fn run(args: &[&str]) -> Result<(), String> {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    pub fn tmpfs(point: &Path, size: &str) -> Result<Mount, String> {
        let p = point.to_str().unwrap();
        Mount::run(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0755"),
            "tmpfs",
            p,
        ])?;
        Ok(Mount {
            point: point.to_path_buf(),
        })
    }

    /// Makes `point` a read-only view of itself.
    pub fn read_only_bind(point: &Path) -> Result<Mount, String> {
        let p = point.to_str().unwrap();
        Mount::run(&["mount", "--bind", p, p])?;
        let mount = Mount {
            point: point.to_path_buf(),
        };
        Mount::run(&["mount", "-o", "remount,ro,bind", p, p])?;
        Ok(mount)
    }

    /// A read-only view of `point`, failing the test (never skipping it) where
    /// mounting is impossible; checks that even root cannot write there.
    pub fn read_only(point: &Path) -> Mount {
        let mount = Mount::read_only_bind(point).unwrap_or_else(|e| cannot_mount("a read-only directory", &e));
        assert!(
            std::fs::write(point.join("probe"), b"x").is_err(),
            "{} is still writable",
            point.display()
        );
        mount
    }

    pub fn resize(&self, size: &str) -> Result<(), String> {
        let p = self.point.to_str().unwrap();
        Mount::run(&["mount", "-o", &format!("remount,size={size}"), p])
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Mount::run(&["umount", self.point.to_str().unwrap()]);
    }
}

pub fn cannot_mount(what: &str, e: &str) -> ! {
    panic!("{what} needs mount rights (run as root, as `make test` and CI do): {e}")
}

/// Damages the (empty) `model_evals` table's only page: a table no chat write
/// touches, so only a check of the whole file notices it before a write.
pub fn damage_model_evals(db: &Path) {
    let (root, page_size) = {
        // Read-write, so that closing it removes the -wal and -shm it made.
        let conn = rusqlite::Connection::open(db).unwrap();
        let root: u64 = conn
            .query_row(
                "SELECT rootpage FROM sqlite_schema WHERE name = 'model_evals'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let page_size: u64 = conn.pragma_query_value(None, "page_size", |r| r.get(0)).unwrap();
        (root, page_size)
    };
    let mut bytes = std::fs::read(db).unwrap();
    let at = usize::try_from((root - 1) * page_size).unwrap();
    assert_eq!(bytes[at], 0x0d, "model_evals' root is not an empty table leaf");
    bytes[at] = 0x55; // no b-tree page has this type
    std::fs::write(db, &bytes).unwrap();
}
