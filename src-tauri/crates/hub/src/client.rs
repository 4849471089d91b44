//! The connection to a Hub: its address (`HF_ENDPOINT` for mirrors), the user's token
//! (`HF_TOKEN`, for gated repositories) and whether downloading is allowed at all.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{Response, StatusCode};
use url::Url;

use crate::error::HubError;

/// Hugging Face's own address, used unless `HF_ENDPOINT` names a mirror.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The user's access token. Never printed: its `Debug` says only that it is set.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

/// Where models come from and whether they may.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub endpoint: Url,
    pub token: Option<Token>,
    /// False when the user turned downloading off: every request is refused before it
    /// leaves the machine.
    pub enabled: bool,
}

impl HubConfig {
    /// `HF_ENDPOINT` (else Hugging Face) and `HF_TOKEN` (else `HUGGING_FACE_HUB_TOKEN`),
    /// as Hugging Face's own tools read them.
    pub fn from_env(enabled: bool) -> Result<Self, HubError> {
        let raw = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let endpoint = Url::parse(raw.trim().trim_end_matches('/')).map_err(|e| HubError::BadResponse {
            url: raw.clone(),
            detail: format!("HF_ENDPOINT is not a URL ({e}): set it to e.g. https://hf-mirror.com"),
        })?;
        let token = ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"]
            .iter()
            .find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()))
            .map(|v| Token::new(v.trim()));
        Ok(Self {
            endpoint,
            token,
            enabled,
        })
    }
}

/// A client for one Hub. Redirects are followed by hand: the first answer of a file
/// carries the metadata (`X-Linked-Etag`, `X-Linked-Size`) and the token must not travel
/// to the storage host the Hub redirects to.
#[derive(Debug, Clone)]
pub struct Hub {
    pub(crate) config: HubConfig,
    pub(crate) http: reqwest::Client,
}

/// Redirect hops followed before giving up.
const MAX_REDIRECTS: usize = 5;

impl Hub {
    pub fn new(config: HubConfig) -> Result<Self, HubError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(15))
            // A stalled transfer fails (and is resumed) instead of hanging for ever.
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HubError::Network {
                url: config.endpoint.to_string(),
                detail: e.to_string(),
            })?;
        Ok(Self { config, http })
    }

    pub fn endpoint(&self) -> &Url {
        &self.config.endpoint
    }

    /// `{endpoint}/{path}` (the endpoint may itself have a path, as mirrors do).
    pub(crate) fn url(&self, path: &str) -> Result<Url, HubError> {
        let base = self.config.endpoint.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/{}", path.trim_start_matches('/'))).map_err(|e| HubError::BadResponse {
            url: base.to_owned(),
            detail: e.to_string(),
        })
    }

    pub(crate) fn refuse_if_disabled(&self) -> Result<(), HubError> {
        if self.config.enabled {
            Ok(())
        } else {
            Err(HubError::Disabled {
                endpoint: self.config.endpoint.to_string(),
            })
        }
    }

    /// The token, only for the Hub's own host.
    fn auth_for(&self, url: &Url) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(Token(token)) = &self.config.token {
            if url.host_str() == self.config.endpoint.host_str() && url.port() == self.config.endpoint.port() {
                if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {token}")) {
                    value.set_sensitive(true);
                    headers.insert(AUTHORIZATION, value);
                }
            }
        }
        headers
    }

    /// One request, no redirects followed.
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        url: &Url,
        extra: HeaderMap,
    ) -> Result<Response, HubError> {
        self.refuse_if_disabled()?;
        let mut headers = self.auth_for(url);
        headers.extend(extra);
        self.http
            .request(method, url.clone())
            .headers(headers)
            .send()
            .await
            .map_err(|e| network(url, &e))
    }

    /// A request that follows redirects (each hop without the token unless it stays on
    /// the Hub) and fails on an error status, worded for `repo`.
    pub(crate) async fn send_following(
        &self,
        method: reqwest::Method,
        url: &Url,
        extra: HeaderMap,
        repo: &str,
        what: &str,
    ) -> Result<Response, HubError> {
        let mut current = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let response = self.send(method.clone(), &current, extra.clone()).await?;
            if response.status().is_redirection() {
                current = redirect_target(&current, &response)?;
                continue;
            }
            return self.check_status(response, repo, what).await;
        }
        Err(HubError::BadResponse {
            url: url.to_string(),
            detail: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// The response when its status is a success; otherwise the error a person can act on.
    pub(crate) async fn check_status(&self, response: Response, repo: &str, what: &str) -> Result<Response, HubError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let endpoint = self.config.endpoint.to_string();
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => HubError::Unauthorized {
                repo: repo.to_owned(),
                endpoint,
                status: status.as_u16(),
            },
            StatusCode::NOT_FOUND => HubError::NotFound {
                what: what.to_owned(),
                endpoint,
            },
            _ => {
                let url = response.url().to_string();
                let body = response.text().await.unwrap_or_default();
                HubError::Status {
                    url,
                    status: status.as_u16(),
                    detail: hub_error_message(&body),
                }
            }
        })
    }
}

/// Where a redirect points, relative locations resolved against the request.
pub(crate) fn redirect_target(from: &Url, response: &Response) -> Result<Url, HubError> {
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| HubError::BadResponse {
            url: from.to_string(),
            detail: format!("a {} without a Location header", response.status()),
        })?;
    from.join(location).map_err(|e| HubError::BadResponse {
        url: from.to_string(),
        detail: format!("a redirect to {location:?}: {e}"),
    })
}

pub(crate) fn network(url: &Url, e: &reqwest::Error) -> HubError {
    // The URL without its query: signed storage URLs carry credentials there.
    let mut shown = url.clone();
    shown.set_query(None);
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        detail = format!("{detail}: {cause}");
        source = cause.source();
    }
    HubError::Network {
        url: shown.to_string(),
        detail,
    }
}

/// The Hub's JSON errors are `{"error": "..."}`; anything else is shown as it came, cut short.
fn hub_error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_token_never_shows() {
        let config = HubConfig {
            endpoint: Url::parse(DEFAULT_ENDPOINT).unwrap(),
            token: Some(Token::new("hf_secret")),
            enabled: true,
        };
        assert!(!format!("{config:?}").contains("hf_secret"));
    }

    #[test]
    fn the_token_goes_only_to_the_hub() {
        let hub = Hub::new(HubConfig {
            endpoint: Url::parse("http://127.0.0.1:9/").unwrap(),
            token: Some(Token::new("hf_secret")),
            enabled: true,
        })
        .unwrap();
        assert!(hub
            .auth_for(&Url::parse("http://127.0.0.1:9/x").unwrap())
            .contains_key(AUTHORIZATION));
        assert!(hub.auth_for(&Url::parse("http://127.0.0.1:10/x").unwrap()).is_empty());
        assert!(hub.auth_for(&Url::parse("https://cdn-lfs.hf.co/x").unwrap()).is_empty());
    }

    #[test]
    fn urls_keep_a_mirror_path() {
        let hub = Hub::new(HubConfig {
            endpoint: Url::parse("https://mirror.example/hf/").unwrap(),
            token: None,
            enabled: true,
        })
        .unwrap();
        assert_eq!(
            hub.url("/api/models/a/b").unwrap().as_str(),
            "https://mirror.example/hf/api/models/a/b"
        );
    }

    #[test]
    fn hub_errors_read_their_message() {
        assert_eq!(
            hub_error_message(r#"{"error":"Repository not found"}"#),
            "Repository not found"
        );
        assert_eq!(hub_error_message("plain"), "plain");
    }
}
