//! A GGUF file's header read where it lies, with `Range` requests: the metadata and the
//! tensor table, never the weights, so the fit planner can judge a file before it is
//! downloaded (as GPUStack's gguf-parser does for remote files).

use std::io::{self, BufRead, Read, Seek, SeekFrom};
use std::path::Path;

use futures_util::StreamExt;
use hearth_gguf::{GgufError, GgufInfo};
use reqwest::header::{HeaderMap, HeaderValue, RANGE};
use reqwest::Method;

use crate::client::{network, Hub};
use crate::download::PullTarget;
use crate::error::HubError;

/// The first request asks for this much; each further one doubles what is held.
const FIRST_READ: u64 = 1 << 20;
/// No header of a real model needs more (the parser itself keeps at most 16 MiB).
const MAX_HEADER: u64 = 64 << 20;

/// A remote file's header and what reading it cost.
#[derive(Debug, Clone)]
pub struct RemoteHeader {
    pub info: GgufInfo,
    pub file_size: u64,
    /// Bytes fetched to read it.
    pub bytes_read: u64,
    pub requests: u32,
}

impl Hub {
    /// Reads the header of `target` with as few bytes as it takes.
    pub async fn read_header(&self, target: &PullTarget) -> Result<RemoteHeader, HubError> {
        let meta = self.file_meta(target).await?;
        let what = format!("{} in {}", target.file, target.repo);
        let mut held: Vec<u8> = Vec::new();
        let mut requests = 0;
        let mut want = FIRST_READ.min(meta.size);
        loop {
            let from = held.len() as u64;
            let mut range = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes={from}-{}", want - 1)) {
                range.insert(RANGE, value);
            }
            let response = self
                .send_following(Method::GET, &meta.download_url, range, &target.repo, &what)
                .await?;
            requests += 1;
            let url = response.url().clone();
            // A server that ignores ranges sends the file from its start: skip what is held.
            let mut skip = if response.status() == reqwest::StatusCode::PARTIAL_CONTENT {
                0
            } else {
                from
            };
            let mut stream = response.bytes_stream();
            while (held.len() as u64) < want {
                let Some(chunk) = stream.next().await else { break };
                let chunk = chunk.map_err(|e| network(&url, &e))?;
                let mut bytes = &chunk[..];
                let dropped = skip.min(bytes.len() as u64) as usize;
                skip -= dropped as u64;
                bytes = &bytes[dropped..];
                let room = (want - held.len() as u64) as usize;
                held.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            drop(stream);
            let bytes_read = held.len() as u64;
            match hearth_gguf::read_from(Prefix::new(&held), meta.size, Path::new(&target.file)) {
                Ok(info) => {
                    return Ok(RemoteHeader {
                        info,
                        file_size: meta.size,
                        bytes_read,
                        requests,
                    })
                }
                Err(GgufError::Io { source, .. })
                    if source.kind() == io::ErrorKind::WouldBlock
                        && bytes_read == want
                        && want < meta.size.min(MAX_HEADER) =>
                {
                    want = (want * 2).min(meta.size).min(MAX_HEADER);
                }
                Err(source) => {
                    return Err(HubError::Header {
                        file: target.file.clone(),
                        source,
                    })
                }
            }
        }
    }
}

/// The first bytes of a file: reading past them fails with `WouldBlock` ("fetch more"),
/// which the parser passes on untouched, unlike the end of a file.
struct Prefix<'b> {
    bytes: &'b [u8],
    pos: u64,
}

impl<'b> Prefix<'b> {
    fn new(bytes: &'b [u8]) -> Self {
        Self { bytes, pos: 0 }
    }
}

fn need_more() -> io::Error {
    io::Error::new(io::ErrorKind::WouldBlock, "more of the remote header is needed")
}

impl Read for Prefix<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Prefix<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        match usize::try_from(self.pos) {
            Ok(pos) if pos < self.bytes.len() => Ok(&self.bytes[pos..]),
            _ => Err(need_more()),
        }
    }

    fn consume(&mut self, amount: usize) {
        self.pos += amount as u64;
    }
}

impl Seek for Prefix<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(_) => None,
        };
        self.pos = target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad seek"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reading_past_the_prefix_asks_for_more() {
        let mut p = Prefix::new(b"abcdef");
        let mut buf = [0u8; 4];
        p.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"abcd");
        assert_eq!(p.read_exact(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        p.seek(SeekFrom::Start(100)).unwrap();
        assert_eq!(p.fill_buf().unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert!(p.seek(SeekFrom::End(0)).is_err());
    }
}
