//! What a repository holds and which repositories exist: the Hub's tree listing
//! (`/api/models/{repo}/tree/{revision}`) and model search (`/api/models?search=`).

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::client::Hub;
use crate::error::HubError;

/// One file of a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepoFile {
    /// The path inside the repository.
    pub path: String,
    pub size: u64,
    /// The content's SHA-256 (hex) for files kept in LFS, which every model file is.
    pub sha256: Option<String>,
    /// The quantization its name announces (`Q4_K_M`, `F16`), upper case.
    pub quantization: Option<String>,
}

impl RepoFile {
    pub fn is_gguf(&self) -> bool {
        self.path.to_ascii_lowercase().ends_with(".gguf")
    }

    /// A vision projector, not a model to chat with.
    pub fn is_projector(&self) -> bool {
        file_name(&self.path).to_ascii_lowercase().starts_with("mmproj")
    }
}

/// A repository found by a search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoSummary {
    pub id: String,
    #[serde(default)]
    pub downloads: u64,
    #[serde(default)]
    pub likes: u64,
}

#[derive(Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    oid: String,
    #[serde(default)]
    size: Option<u64>,
}

pub(crate) fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The quantization a GGUF file name announces, by the naming llama.cpp's
/// `convert_hf_to_gguf.py` and the big uploaders use: `…-Q4_K_M.gguf`, `….IQ4_XS.gguf`,
/// `…-f16.gguf`, `…-Q4_K_M-00001-of-00003.gguf`.
pub fn quantization_of(path: &str) -> Option<String> {
    let name = file_name(path);
    let stem = name
        .strip_suffix(".gguf")
        .or_else(|| name.strip_suffix(".GGUF"))
        .unwrap_or(name);
    stem.rsplit(['-', '.'])
        .map(str::to_ascii_uppercase)
        .find(|part| is_quant_word(part))
}

fn is_quant_word(word: &str) -> bool {
    const EXACT: [&str; 5] = ["F16", "BF16", "F32", "MXFP4", "FP16"];
    if EXACT.contains(&word) {
        return true;
    }
    let rest = word
        .strip_prefix("IQ")
        .or_else(|| word.strip_prefix("TQ"))
        .or_else(|| word.strip_prefix('Q'));
    rest.is_some_and(|r| {
        r.chars().next().is_some_and(|c| c.is_ascii_digit()) && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The repository names the Hub accepts: `owner/name`, letters, digits, `-`, `_`, `.`.
pub fn check_repo(repo: &str) -> Result<(), HubError> {
    let ok_part = |p: &str| {
        !p.is_empty() && p != "." && p != ".." && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    match repo.split_once('/') {
        Some((owner, name)) if ok_part(owner) && ok_part(name) => Ok(()),
        _ => Err(HubError::NotFound {
            what: format!("{repo:?} (a repository is named owner/name, e.g. bartowski/SmolLM2-135M-Instruct-GGUF)"),
            endpoint: "the Hub".into(),
        }),
    }
}

impl Hub {
    /// Every file of `repo` at `revision` (a branch, tag or commit), following the
    /// listing's pages.
    pub async fn list_files(&self, repo: &str, revision: &str) -> Result<Vec<RepoFile>, HubError> {
        check_repo(repo)?;
        let mut url = self.url(&format!("api/models/{repo}/tree/{revision}"))?;
        url.query_pairs_mut().append_pair("recursive", "true");
        let mut files = Vec::new();
        let mut next = Some(url);
        while let Some(page) = next.take() {
            let response = self
                .send_following(
                    Method::GET,
                    &page,
                    HeaderMap::new(),
                    repo,
                    &format!("repository {repo} at {revision}"),
                )
                .await?;
            next = next_page(&page, response.headers());
            let entries: Vec<TreeEntry> = response.json().await.map_err(|e| HubError::BadResponse {
                url: page.to_string(),
                detail: format!("the tree listing is not the Hub's JSON: {e}"),
            })?;
            files.extend(entries.into_iter().filter(|e| e.kind == "file").map(|e| {
                let sha256 = e
                    .lfs
                    .as_ref()
                    .map(|l| l.oid.trim_start_matches("sha256:").to_ascii_lowercase());
                let size = e.lfs.as_ref().and_then(|l| l.size).unwrap_or(e.size);
                RepoFile {
                    quantization: quantization_of(&e.path),
                    path: e.path,
                    size,
                    sha256,
                }
            }));
        }
        Ok(files)
    }

    /// Model repositories matching `query` that hold GGUF files, most downloaded first.
    pub async fn search(&self, query: &str, limit: u32) -> Result<Vec<RepoSummary>, HubError> {
        let mut url = self.url("api/models")?;
        url.query_pairs_mut()
            .append_pair("search", query)
            .append_pair("filter", "gguf")
            .append_pair("sort", "downloads")
            .append_pair("direction", "-1")
            .append_pair("limit", &limit.to_string());
        let response = self
            .send_following(Method::GET, &url, HeaderMap::new(), query, "the model search")
            .await?;
        response.json().await.map_err(|e| HubError::BadResponse {
            url: url.to_string(),
            detail: format!("the search answer is not the Hub's JSON: {e}"),
        })
    }
}

/// The `Link: <…>; rel="next"` page of a listing, if any.
fn next_page(current: &url::Url, headers: &HeaderMap) -> Option<url::Url> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            let target = target.trim().trim_start_matches('<').trim_end_matches('>');
            current.join(target).ok()
        })?
    })
}

/// The model file of `files` that `wanted` names: a path, a file name, or a quantization
/// (`Q4_K_M`, any case). Projectors are never picked by quantization.
pub fn select_file<'f>(repo: &str, files: &'f [RepoFile], wanted: &str) -> Result<&'f RepoFile, HubError> {
    let ggufs: Vec<&RepoFile> = files.iter().filter(|f| f.is_gguf()).collect();
    if let Some(exact) = ggufs.iter().find(|f| f.path == wanted || file_name(&f.path) == wanted) {
        return Ok(exact);
    }
    let upper = wanted.to_ascii_uppercase();
    let by_quant: Vec<&RepoFile> = ggufs
        .iter()
        .copied()
        .filter(|f| !f.is_projector() && f.quantization.as_deref() == Some(upper.as_str()))
        .collect();
    let matches = if by_quant.is_empty() {
        ggufs
            .iter()
            .copied()
            .filter(|f| f.path.to_ascii_uppercase().contains(&upper))
            .collect()
    } else {
        by_quant
    };
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(HubError::NoMatch {
            repo: repo.to_owned(),
            wanted: wanted.to_owned(),
            candidates: ggufs.iter().map(|f| f.path.clone()).collect(),
        }),
        many => Err(HubError::Ambiguous {
            repo: repo.to_owned(),
            wanted: wanted.to_owned(),
            candidates: many.iter().map(|f| f.path.clone()).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn quantizations_are_read_from_names() {
        let cases = [
            ("SmolLM2-135M-Instruct-Q4_K_M.gguf", Some("Q4_K_M")),
            ("smollm2-135m-instruct-q8_0.gguf", Some("Q8_0")),
            ("Llama-3.2-1B.IQ4_XS.gguf", Some("IQ4_XS")),
            ("sub/dir/model-f16.gguf", Some("F16")),
            ("Qwen3-8B-Q4_K_M-00001-of-00003.gguf", Some("Q4_K_M")),
            ("gpt-oss-20b-MXFP4.gguf", Some("MXFP4")),
            ("Qwen3-8B.gguf", None),
            ("README.md", None),
        ];
        for (name, want) in cases {
            assert_eq!(quantization_of(name).as_deref(), want, "{name}");
        }
    }

    fn file(path: &str) -> RepoFile {
        RepoFile {
            path: path.into(),
            size: 1,
            sha256: None,
            quantization: quantization_of(path),
        }
    }

    #[test]
    fn a_file_is_picked_by_path_name_or_quantization() {
        let files = [
            file("README.md"),
            file("m-Q4_K_M.gguf"),
            file("m-Q4_K_S.gguf"),
            file("m-Q8_0.gguf"),
            file("mmproj-m-Q8_0.gguf"),
        ];
        assert_eq!(select_file("o/r", &files, "q4_k_m").unwrap().path, "m-Q4_K_M.gguf");
        assert_eq!(select_file("o/r", &files, "Q8_0").unwrap().path, "m-Q8_0.gguf");
        assert_eq!(
            select_file("o/r", &files, "m-Q4_K_S.gguf").unwrap().path,
            "m-Q4_K_S.gguf"
        );
        let err = select_file("o/r", &files, "Q4_K").unwrap_err().to_string();
        assert!(err.contains("m-Q4_K_M.gguf, m-Q4_K_S.gguf"), "{err}");
        let err = select_file("o/r", &files, "Q2_K").unwrap_err().to_string();
        assert!(
            err.contains("no GGUF file matching") && err.contains("m-Q8_0.gguf"),
            "{err}"
        );
    }

    #[test]
    fn repository_names_are_checked() {
        assert!(check_repo("bartowski/SmolLM2-135M-Instruct-GGUF").is_ok());
        for bad in ["noslash", "a/", "/b", "a/b/c", "../x", "a/..", "a b/c"] {
            assert!(check_repo(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_next_page_is_read_from_link() {
        let current = url::Url::parse("http://h/api/models/a/b/tree/main").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::LINK,
            "<http://h/api/models/a/b/tree/main?cursor=xyz>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_page(&current, &headers).unwrap().as_str(),
            "http://h/api/models/a/b/tree/main?cursor=xyz"
        );
        assert!(next_page(&current, &HeaderMap::new()).is_none());
    }
}
