//! Guessing what a non-GGUF file is, so the error can say "this is an HTML
//! page" or "this is a safetensors file" instead of just "bad magic": the
//! usual causes (a login page saved as the model, a Git LFS pointer, the
//! wrong file format) each have a different fix.

/// Bytes looked at from the start of the file.
pub(crate) const SNIFF_LEN: usize = 512;

/// A verb phrase describing `head` (the first bytes of a file).
pub(crate) fn describe(head: &[u8]) -> String {
    let starts = |p: &[u8]| head.starts_with(p);
    let lower: Vec<u8> = head
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take(64)
        .map(u8::to_ascii_lowercase)
        .collect();
    let text_starts = |p: &str| lower.starts_with(p.as_bytes());

    if starts(b"ggml") || starts(b"ggjt") || starts(b"ggmf") || starts(b"lmgg") || starts(b"tjgg") || starts(b"fmgg") {
        return "is an old GGML/GGJT model from before GGUF (2023); download a .gguf version of the model".into();
    }
    if starts(b"PK\x03\x04") {
        return "is a ZIP archive (maybe a PyTorch checkpoint or a zipped download); unzip it or download the .gguf file itself".into();
    }
    if starts(&[0x1f, 0x8b]) {
        return "is gzip-compressed; decompress it first".into();
    }
    if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return "is xz-compressed; decompress it first".into();
    }
    if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return "is zstd-compressed; decompress it first".into();
    }
    if starts(b"7z\xbc\xaf\x27\x1c") {
        return "is a 7-Zip archive; extract it first".into();
    }
    if head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
        return "is a Python pickle (a PyTorch checkpoint), which llama.cpp cannot run".into();
    }
    if head.len() >= 10 && head[8] == b'{' && head[9] == b'"' {
        return "is a safetensors file, which llama.cpp cannot run; download a GGUF conversion".into();
    }
    if text_starts("version https://git-lfs") {
        return "is a Git LFS pointer, not the model itself; download the real file (git lfs pull)".into();
    }
    if text_starts("<!doctype html") || text_starts("<html") || text_starts("<?xml") {
        return "is a web page (the download saved an error or login page)".into();
    }
    if text_starts("{") || text_starts("[") {
        return "starts with JSON text (maybe an error message or a config file)".into();
    }
    let printable = head
        .iter()
        .filter(|b| b.is_ascii_graphic() || b.is_ascii_whitespace() || **b >= 0x80)
        .count();
    if !head.is_empty() && printable * 10 >= head.len() * 9 && std::str::from_utf8(head).is_ok() {
        return "starts with text".into();
    }
    if head.len() < 4 {
        return format!("is only {} byte(s) long, too short to be a model", head.len());
    }
    let hex: Vec<String> = head.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("starts with the bytes {}, an unknown format", hex.join(" "))
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn recognises_common_mistakes() {
        assert!(describe(b"<!DOCTYPE html><html>").contains("web page"));
        assert!(describe(b"hello world\n").contains("text"));
        assert!(describe(b"version https://git-lfs.github.com/spec/v1\n").contains("LFS"));
        assert!(describe(b"PK\x03\x04rest").contains("ZIP"));
        assert!(describe(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":1}").contains("safetensors"));
        assert!(describe(b"tjgg\x03\x00\x00\x00").contains("GGML"));
        assert!(describe(&[0, 1, 2, 3, 250, 251]).contains("00 01 02 03"));
        assert!(describe(&[0xff]).contains("too short"));
    }
}
