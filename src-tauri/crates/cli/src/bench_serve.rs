//! `hearth bench serve`: an OpenAI-compatible server under N concurrent clients. Hearth's
//! own (`hearth serve` started here) or any other at `--url`, so the same harness
//! measures a peer. Every request is a different chat question whose answer is prose
//! (nothing a model can copy from its prompt), streamed; one JSON line per N. `--copy`
//! measures the opposite case: each prompt is a passage given twice, which the model
//! goes on copying (where prompt-lookup drafting pays).

mod long_prompt;

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use serde::Serialize;

/// What to measure and against which server.
pub struct ServeBench<'a> {
    /// The server's root (`http://host:port`); its `/v1/chat/completions` is used.
    pub url: String,
    pub token: Option<String>,
    /// The model name sent in requests.
    pub model: String,
    pub clients: &'a [usize],
    /// Requests each client sends, one after another.
    pub requests_per_client: usize,
    pub max_tokens: u32,
    /// Plain completions (`/v1/completions`, the question as the prompt) for base models.
    pub text: bool,
    /// Also time a short question sent while a document of about 1,500 tokens is read.
    pub long_prompt: bool,
    /// How many times each long-prompt measurement is made.
    pub long_prompt_trials: usize,
    /// Each request a passage given twice, as a plain completion: replies that copy.
    pub copy: bool,
}

impl ServeBench<'_> {
    fn form(&self) -> Form {
        match (self.copy, self.text) {
            (true, _) => Form::Copy,
            (false, true) => Form::Text,
            (false, false) => Form::Chat,
        }
    }
}

/// How a request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// A chat question (`/v1/chat/completions`).
    Chat,
    /// The question as a plain completion (`/v1/completions`), for a base model.
    Text,
    /// A repeated passage as a plain completion, sent as it is, to be continued.
    Copy,
}

impl Form {
    /// What the requests ask, for the JSON lines.
    fn workload(self) -> &'static str {
        match self {
            Form::Chat => "chat",
            Form::Text => "text",
            Form::Copy => "copy",
        }
    }
}

#[derive(Debug, Serialize)]
struct ServeLine {
    bench: &'static str,
    /// "chat" (questions answered in prose), "text" (the same as plain completions) or
    /// "copy" (a passage given twice, continued by copying it).
    workload: &'static str,
    url: String,
    model: String,
    clients: usize,
    requests: usize,
    errors: usize,
    /// The first error, as the server or the connection gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
    completion_tokens: u64,
    wall_s: f64,
    /// Completion tokens of all clients over the wall time.
    aggregate_tps: f64,
    /// One stream's tokens after its first, over the time after its first.
    stream_tps_median: f64,
    stream_tps_min: f64,
    ttft_ms_p50: f64,
    ttft_ms_p99: f64,
}

/// One streamed reply as a client saw it.
struct Reply {
    ttft_ms: f64,
    tokens: u64,
    stream_tps: f64,
    /// When each chunk with text arrived.
    times: Vec<Instant>,
}

const TOPICS: [&str; 16] = [
    "the history of lighthouses",
    "how bees make honey",
    "why the sky is blue",
    "the life of a river from source to sea",
    "how bread rises",
    "what makes a good friend",
    "the first voyage around the world",
    "how a violin makes its sound",
    "the water cycle",
    "why cats purr",
    "how a city plans its streets",
    "the invention of paper",
    "what happens in a volcano",
    "how birds find their way south",
    "the rules of chess for a beginner",
    "how glass is made",
];

const ASKS: [&str; 4] = [
    "Write a short essay about {}.",
    "Explain {} to a ten-year-old.",
    "Tell a short story that involves {}.",
    "Describe {} in a few paragraphs.",
];

/// A passage for every (round, client, request), each different, given twice and
/// then started a third time: a model continues it by copying it. Two sentences
/// (about 25 tokens), so that the prompt is question-sized: read whole beside running
/// replies, like the chat questions.
fn repeated_passage(round: usize, client: usize, request: usize) -> String {
    let i = round * 131 + client * 17 + request * 7;
    let passage: String = (0..2)
        .map(|s| {
            format!(
                "Reader {client} of round {round} wrote part {request} about {}. ",
                TOPICS[(i + s) % TOPICS.len()]
            )
        })
        .collect();
    format!("{passage}\n{passage}\nReader {client}")
}

/// A different question for every (round, client, request): no two in a run are alike.
fn question(round: usize, client: usize, request: usize) -> String {
    let i = round * 131 + client * 17 + request * 7;
    ASKS[i % ASKS.len()].replace("{}", TOPICS[(i / ASKS.len() + client) % TOPICS.len()])
        + &format!(" (Reader {client}, part {request}.)")
}

pub async fn run(bench: &ServeBench<'_>) -> Result<()> {
    // A new connection for every request: a server that closes a connection after its
    // stream (llama-server does) would otherwise fail the next request sent on it.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(600))
        .build()
        .context("an HTTP client")?;
    for (round, &clients) in bench.clients.iter().enumerate() {
        if clients == 0 {
            bail!("--clients takes numbers of clients from 1 up");
        }
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|client| {
                let http = http.clone();
                let questions: Vec<String> = (0..bench.requests_per_client)
                    .map(|r| {
                        if bench.copy {
                            repeated_passage(round, client, r)
                        } else {
                            question(round, client, r)
                        }
                    })
                    .collect();
                let (url, token, model, max_tokens, form) = (
                    bench.url.clone(),
                    bench.token.clone(),
                    bench.model.clone(),
                    bench.max_tokens,
                    bench.form(),
                );
                tokio::spawn(async move {
                    let mut replies = Vec::new();
                    for q in questions {
                        let asked = Asked {
                            model: &model,
                            question: &q,
                            max_tokens,
                            form,
                        };
                        replies.push(stream_one(&http, &url, token.as_deref(), asked).await);
                    }
                    replies
                })
            })
            .collect();
        let mut replies = Vec::new();
        for task in tasks {
            replies.extend(task.await.context("a client task")?);
        }
        let wall = started.elapsed().as_secs_f64();
        println!("{}", serde_json::to_string(&summarize(bench, clients, replies, wall))?);
    }
    if bench.long_prompt {
        long_prompt::run(bench, &http).await?;
    }
    Ok(())
}

fn summarize(bench: &ServeBench<'_>, clients: usize, replies: Vec<Result<Reply>>, wall: f64) -> ServeLine {
    let requests = replies.len();
    let first_error = replies.iter().find_map(|r| r.as_ref().err().map(|e| format!("{e:#}")));
    let ok: Vec<Reply> = replies.into_iter().filter_map(Result::ok).collect();
    let tokens: u64 = ok.iter().map(|r| r.tokens).sum();
    let mut rates: Vec<f64> = ok.iter().map(|r| r.stream_tps).collect();
    let mut ttfts: Vec<f64> = ok.iter().map(|r| r.ttft_ms).collect();
    rates.sort_by(f64::total_cmp);
    ttfts.sort_by(f64::total_cmp);
    ServeLine {
        bench: "serve",
        workload: bench.form().workload(),
        url: bench.url.clone(),
        model: bench.model.clone(),
        clients,
        requests,
        errors: requests - ok.len(),
        first_error,
        completion_tokens: tokens,
        wall_s: round2(wall),
        aggregate_tps: round2(tokens as f64 / wall.max(f64::MIN_POSITIVE)),
        stream_tps_median: round2(percentile(&rates, 0.5)),
        stream_tps_min: round2(rates.first().copied().unwrap_or(0.0)),
        ttft_ms_p50: round2(percentile(&ttfts, 0.5)),
        ttft_ms_p99: round2(percentile(&ttfts, 0.99)),
    }
}

/// The value below which `q` of the sorted `values` lie (nearest rank).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// One request's content.
struct Asked<'a> {
    model: &'a str,
    question: &'a str,
    max_tokens: u32,
    form: Form,
}

/// The route and body of a streamed request for `asked`.
fn request_body(asked: &Asked<'_>) -> (&'static str, serde_json::Value) {
    let mut body = serde_json::json!({
        "model": asked.model,
        "max_tokens": asked.max_tokens,
        "temperature": 0.7,
        "seed": 42,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    match asked.form {
        Form::Chat => {
            body["messages"] = serde_json::json!([{"role": "user", "content": asked.question}]);
            ("/v1/chat/completions", body)
        }
        Form::Text => {
            body["prompt"] = serde_json::json!(format!("{}\n\n", asked.question));
            ("/v1/completions", body)
        }
        Form::Copy => {
            body["prompt"] = serde_json::json!(asked.question);
            ("/v1/completions", body)
        }
    }
}

/// The text a streamed chunk carries (a chat delta's content, or a completion's text).
fn chunk_text(event: &serde_json::Value) -> Option<&str> {
    let choice = &event["choices"][0];
    choice["delta"]["content"].as_str().or_else(|| choice["text"].as_str())
}

/// Sends one streamed completion and times its content chunks. The token count is
/// the server's own (`usage`, asked for with `stream_options`), else one per chunk.
async fn stream_one(http: &reqwest::Client, url: &str, token: Option<&str>, asked: Asked<'_>) -> Result<Reply> {
    let (route, body) = request_body(&asked);
    let mut request = http.post(format!("{url}{route}")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let sent = Instant::now();
    let response = request.send().await.context("sending the request")?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!("HTTP {status}: {}", text.chars().take(300).collect::<String>());
    }
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let (mut first, mut last, mut chunks, mut usage) = (None, sent, 0u64, None);
    let mut times = Vec::new();
    while let Some(bytes) = stream.next().await {
        buffer.push_str(&String::from_utf8_lossy(&bytes.context("reading the stream")?));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            let Some(data) = line.trim().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                continue;
            }
            let event: serde_json::Value = serde_json::from_str(data).with_context(|| format!("an event: {data}"))?;
            if let Some(error) = event.get("error") {
                bail!("the stream ended with an error: {error}");
            }
            if let Some(tokens) = event["usage"]["completion_tokens"].as_u64() {
                usage = Some(tokens);
            }
            let has_text = chunk_text(&event).is_some_and(|t| !t.is_empty());
            if has_text {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                times.push(now);
                chunks += 1;
            }
        }
    }
    let first = first.context("the reply had no text")?;
    let tokens = usage.unwrap_or(chunks);
    let decode_secs = last.duration_since(first).as_secs_f64();
    Ok(Reply {
        ttft_ms: first.duration_since(sent).as_secs_f64() * 1000.0,
        tokens,
        stream_tps: if decode_secs > 0.0 {
            tokens.saturating_sub(1) as f64 / decode_secs
        } else {
            0.0
        },
        times,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chats_and_plain_completions_are_asked_and_read_alike() {
        let mut asked = Asked {
            model: "m",
            question: "Why?",
            max_tokens: 8,
            form: Form::Chat,
        };
        let (route, body) = request_body(&asked);
        assert_eq!(route, "/v1/chat/completions");
        assert_eq!(body["messages"][0]["content"], "Why?");
        asked.form = Form::Text;
        let (route, body) = request_body(&asked);
        assert_eq!(route, "/v1/completions");
        assert_eq!(body["prompt"], "Why?\n\n");
        // A passage to copy goes as it is: it must end where the copy goes on.
        asked.form = Form::Copy;
        let (route, body) = request_body(&asked);
        assert_eq!(route, "/v1/completions");
        assert_eq!(body["prompt"], "Why?");
        assert_eq!(body["stream_options"]["include_usage"], true);
        let chat = serde_json::json!({"choices": [{"delta": {"content": "Hi"}}]});
        let text = serde_json::json!({"choices": [{"text": "Hi"}]});
        let usage = serde_json::json!({"choices": [], "usage": {"completion_tokens": 3}});
        assert_eq!(chunk_text(&chat), Some("Hi"));
        assert_eq!(chunk_text(&text), Some("Hi"));
        assert_eq!(chunk_text(&usage), None);
    }

    #[test]
    fn a_copy_prompt_repeats_its_own_passage() {
        let prompt = repeated_passage(1, 2, 0);
        let parts: Vec<&str> = prompt.split('\n').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], parts[1], "{prompt}");
        assert!(parts[0].starts_with(parts[2]), "{prompt}");
        assert!(parts[0].contains("Reader 2 of round 1 wrote part 0"), "{prompt}");
        assert_ne!(prompt, repeated_passage(1, 2, 1));
    }

    #[test]
    fn every_question_of_a_run_is_different() {
        let mut seen = std::collections::HashSet::new();
        for round in 0..4 {
            for client in 0..16 {
                for request in 0..4 {
                    assert!(
                        seen.insert(question(round, client, request)),
                        "{round} {client} {request}"
                    );
                }
            }
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
