//! Model files whose header parses but holds values llama.cpp aborts on (0 layers, a
//! million experts, a vocabulary entry that is not text...), made by patching copies of
//! the real SmolLM2 file: every command that loads a model refuses them by name, with
//! exit code 1, and `hearth eval` measures in a child process, so that even a crash
//! inside llama.cpp is an error it reports, never a signal that kills it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{chat_model, children_of, hearth};

/// One metadata entry of a GGUF header: its key, value type and value bytes as written.
struct Entry {
    key: String,
    ty: u32,
    value: Vec<u8>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The end of the value of type `ty` starting at `at`.
fn value_end(b: &[u8], at: usize, ty: u32) -> usize {
    match ty {
        0 | 1 | 7 => at + 1,
        2 | 3 => at + 2,
        4..=6 => at + 4,
        10..=12 => at + 8,
        8 => at + 8 + usize::try_from(u64_at(b, at)).unwrap(),
        9 => {
            let elem = u32_at(b, at);
            let n = u64_at(b, at + 4);
            (0..n).fold(at + 12, |end, _| value_end(b, end, elem))
        }
        other => panic!("value type {other}"),
    }
}

/// A real GGUF file split into what a patch changes (the metadata) and what it keeps
/// as is (the tensor descriptions and the tensor data, whose offsets are relative to
/// the data section).
struct Gguf {
    version: u32,
    tensor_count: u64,
    entries: Vec<Entry>,
    tensor_infos: Vec<u8>,
    alignment: usize,
    data_offset: u64,
    source: PathBuf,
}

impl Gguf {
    fn open(path: &Path) -> Self {
        let info = hearth_gguf::read(path).expect("the real model reads");
        let mut header = vec![0; usize::try_from(info.data_offset).unwrap()];
        std::fs::File::open(path).unwrap().read_exact(&mut header).unwrap();
        assert_eq!(&header[..4], b"GGUF");
        let kv_count = u64_at(&header, 16);
        let mut at = 24;
        let mut entries = Vec::new();
        for _ in 0..kv_count {
            let len = usize::try_from(u64_at(&header, at)).unwrap();
            let key = String::from_utf8(header[at + 8..at + 8 + len].to_vec()).unwrap();
            let ty = u32_at(&header, at + 8 + len);
            let start = at + 8 + len + 4;
            let end = value_end(&header, start, ty);
            entries.push(Entry {
                key,
                ty,
                value: header[start..end].to_vec(),
            });
            at = end;
        }
        // The tensor descriptions run to the padding before the data section.
        let mut end = at;
        for _ in 0..info.tensor_count {
            let name = usize::try_from(u64_at(&header, end)).unwrap();
            let dims = u32_at(&header, end + 8 + name) as usize;
            end += 8 + name + 4 + 8 * dims + 4 + 8;
        }
        Self {
            version: u32_at(&header, 4),
            tensor_count: info.tensor_count,
            entries,
            tensor_infos: header[at..end].to_vec(),
            alignment: usize::try_from(info.alignment).unwrap(),
            data_offset: info.data_offset,
            source: path.to_path_buf(),
        }
    }

    /// Sets `key` to a u32 (replacing its value, or adding it).
    fn set_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.entries.retain(|e| e.key != key);
        self.entries.push(Entry {
            key: key.into(),
            ty: 4,
            value: v.to_le_bytes().to_vec(),
        });
        self
    }

    /// The vocabulary's entries.
    fn tokens(&self) -> Vec<Vec<u8>> {
        let e = self.entries.iter().find(|e| e.key == "tokenizer.ggml.tokens").unwrap();
        let n = u64_at(&e.value, 4);
        let mut at = 12;
        (0..n)
            .map(|_| {
                let len = usize::try_from(u64_at(&e.value, at)).unwrap();
                at += 8 + len;
                e.value[at - len..at].to_vec()
            })
            .collect()
    }

    fn set_tokens(&mut self, tokens: &[Vec<u8>]) -> &mut Self {
        let e = self
            .entries
            .iter_mut()
            .find(|e| e.key == "tokenizer.ggml.tokens")
            .unwrap();
        e.value = 8u32.to_le_bytes().to_vec();
        e.value.extend((tokens.len() as u64).to_le_bytes());
        for t in tokens {
            e.value.extend((t.len() as u64).to_le_bytes());
            e.value.extend(t);
        }
        self
    }

    /// Writes the patched header, padded to the alignment, then the source's tensor data.
    fn write(&self, path: &Path) {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(self.tensor_count.to_le_bytes());
        out.extend((self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            out.extend((e.key.len() as u64).to_le_bytes());
            out.extend(e.key.as_bytes());
            out.extend(e.ty.to_le_bytes());
            out.extend(&e.value);
        }
        out.extend(&self.tensor_infos);
        out.resize(out.len().div_ceil(self.alignment) * self.alignment, 0);
        let mut f = std::fs::File::create(path).unwrap();
        f.write_all(&out).unwrap();
        let mut data = std::fs::File::open(&self.source).unwrap();
        data.seek(SeekFrom::Start(self.data_offset)).unwrap();
        std::io::copy(&mut data, &mut f).unwrap();
    }
}

/// A bad copy of the real SmolLM2: its name, the key it breaks, and how.
struct Patch {
    name: &'static str,
    key: &'static str,
    apply: fn(&mut Gguf),
}

fn patches() -> Vec<Patch> {
    vec![
        Patch {
            name: "no-layers",
            key: "llama.block_count",
            apply: |g| {
                g.set_u32("llama.block_count", 0);
            },
        },
        Patch {
            name: "100k-layers",
            key: "llama.block_count",
            apply: |g| {
                g.set_u32("llama.block_count", 100_000);
            },
        },
        Patch {
            name: "million-experts",
            key: "llama.expert_count",
            apply: |g| {
                g.set_u32("llama.expert_count", 1_000_000)
                    .set_u32("llama.expert_used_count", 2);
            },
        },
        Patch {
            name: "endless-context",
            key: "llama.context_length",
            apply: |g| {
                g.set_u32("llama.context_length", u32::MAX);
            },
        },
        Patch {
            name: "binary-token",
            key: "tokenizer.ggml.tokens",
            apply: |g| {
                let mut tokens = g.tokens();
                tokens[1000] = b"\xff\xfe".to_vec();
                g.set_tokens(&tokens);
            },
        },
    ]
}

/// Writes the patched copy of the real SmolLM2 into `dir`.
fn bad_copy(dir: &Path, patch: &Patch) -> PathBuf {
    let mut g = Gguf::open(&chat_model());
    (patch.apply)(&mut g);
    let path = dir.join(format!("{}.gguf", patch.name));
    g.write(&path);
    path
}

/// Unpatched, a copy is the original byte for byte: what the commands refuse in a
/// patched one is the patch.
#[test]
fn copies_differ_only_by_their_patch() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.gguf");
    Gguf::open(&chat_model()).write(&copy);
    assert!(std::fs::read(&copy).unwrap() == std::fs::read(chat_model()).unwrap());
    // And the patches read back as written.
    let info = hearth_gguf::read(&copy).unwrap();
    assert_eq!(info.block_count, Some(30));
    let mut g = Gguf::open(&chat_model());
    let mut tokens = g.tokens();
    assert_eq!(tokens.len(), 49152);
    tokens[7] = b"hearth".to_vec();
    g.set_tokens(&tokens).set_u32("llama.block_count", 29);
    g.write(&copy);
    let info = hearth_gguf::read(&copy).unwrap();
    assert_eq!((info.block_count, info.vocab_size), (Some(29), Some(49152)));
}

/// Runs `hearth ARGS` on a patched copy for each patch, and checks each is refused.
fn each_patch(what: &str, run: impl Fn(&Path, &Path) -> Output) {
    let dir = tempfile::tempdir().unwrap();
    for patch in patches() {
        let model = bad_copy(dir.path(), &patch);
        let out = run(&model, dir.path());
        refused(&format!("{what} {}", patch.name), &out, &model, patch.key);
        std::fs::remove_file(&model).unwrap();
    }
}

fn run(args: &[&str], model: &Path, data: &Path) -> Output {
    Command::new(hearth())
        .args(args)
        .arg(model)
        .env("HEARTH_DATA_DIR", data)
        .stdin(Stdio::null())
        .output()
        .expect("run hearth")
}

/// Exit code 1 (no signal), and stderr names the file and the key and says the model
/// is not valid.
fn refused(what: &str, out: &Output, model: &Path, key: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        (out.status.code(), out.status.signal()),
        (Some(1), None),
        "{what}: {}\n{stderr}",
        out.status
    );
    assert!(stderr.contains(key), "{what}: the error does not name {key}:\n{stderr}");
    assert!(
        stderr.contains("is not a valid model") && stderr.contains(&model.display().to_string()),
        "{what}:\n{stderr}"
    );
}

#[test]
fn eval_refuses_invalid_headers_by_name() {
    each_patch("eval", |model, dir| {
        run(&["eval", "--no-record", "--threads", "2"], model, dir)
    });
}

#[test]
fn generate_refuses_invalid_headers_by_name() {
    each_patch("generate", |model, dir| {
        run(&["generate", "-n", "4", "-t", "2", "Hello", "--model"], model, dir)
    });
}

#[test]
fn quantize_refuses_invalid_headers_by_name() {
    each_patch("quantize", |model, dir| {
        let output = dir.join("out-Q8_0.gguf");
        let out = Command::new(hearth())
            .args(["quantize", "--type", "Q8_0", "--allow-requantize", "-o"])
            .arg(&output)
            .arg(model)
            .env("HEARTH_DATA_DIR", dir)
            .stdin(Stdio::null())
            .output()
            .expect("run hearth quantize");
        assert!(!output.exists(), "quantize wrote {}", output.display());
        out
    });
}

/// A text to score longer than a command line may be (Linux: 128 KiB an argument) still
/// reaches the measuring child: the request goes on its stdin, so the answer is the
/// model's fault, not "argument list too long".
#[test]
fn eval_sends_a_long_text_to_its_child() {
    let data = tempfile::tempdir().unwrap();
    let text = data.path().join("long.txt");
    let paragraph = "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.\n\n";
    std::fs::write(&text, paragraph.repeat(2000)).unwrap();
    assert!(std::fs::metadata(&text).unwrap().len() > 200 * 1024);
    let patch = &patches()[0];
    let model = bad_copy(data.path(), patch);
    let out = Command::new(hearth())
        .args(["eval", "--no-record", "--text"])
        .arg(&text)
        .arg(&model)
        .env("HEARTH_DATA_DIR", data.path())
        .stdin(Stdio::null())
        .output()
        .expect("run hearth eval");
    refused("eval --text", &out, &model, patch.key);
}

/// A `hearth eval` that a failed test does not leave running.
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn wait_with_output(&mut self) -> Output {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        self.0.stdout.take().unwrap().read_to_end(&mut stdout).unwrap();
        self.0.stderr.take().unwrap().read_to_end(&mut stderr).unwrap();
        let status = self.0.wait().expect("hearth eval ends");
        Output { status, stdout, stderr }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A crash of the measuring child (llama.cpp's abort is SIGABRT) is an error of
/// `hearth eval`, with exit code 1 and words that say what happened.
#[test]
fn eval_survives_its_child_aborting() {
    let data = tempfile::tempdir().unwrap();
    let mut eval = KillOnDrop(
        Command::new(hearth())
            .args(["eval", "--no-record", "--threads", "2"])
            .arg(chat_model())
            .env("HEARTH_DATA_DIR", data.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hearth eval"),
    );
    // The child, once it runs the measure worker (the whole evaluation takes minutes, so
    // it is still measuring). The limit only bounds a broken run: starting a process
    // takes milliseconds, and the test passes the moment it is seen.
    let deadline = Instant::now() + Duration::from_secs(120);
    let worker = loop {
        let measuring = children_of(eval.0.id()).into_iter().find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == b"measure-worker"))
        });
        if let Some(pid) = measuring {
            break pid;
        }
        if let Ok(Some(status)) = eval.0.try_wait() {
            panic!("hearth eval ended ({status}) without a measure-worker child");
        }
        assert!(Instant::now() < deadline, "no measure-worker child of hearth eval");
        std::thread::sleep(Duration::from_millis(20));
    };
    let pid = nix::unistd::Pid::from_raw(i32::try_from(worker).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGABRT).expect("abort the child");
    let out = eval.wait_with_output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        (out.status.code(), out.status.signal()),
        (Some(1), None),
        "{}\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("the measure worker crashed") && stderr.contains("SIGABRT"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
}
