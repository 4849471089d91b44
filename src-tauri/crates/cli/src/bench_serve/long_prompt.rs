//! `hearth bench serve --long-prompt`: what a document of about 1,500 tokens costs the
//! others while the server reads it. Two measurements, each idle and then again with a
//! CPU-bound process beside the server (a browser, a build: what a laptop runs):
//! - a short question sent while the document is read: its time to first token;
//! - three streams replying while the document is read: the gaps between their tokens
//!   during the reading, in decode steps (their median gap outside it).
//!
//! These are wall-clock figures, so they are printed here and never asserted in tests
//! (the engine's tests check the scheduler's plan instead).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{percentile, question, round2, stream_one, Asked, Reply, ServeBench, TOPICS};

/// One JSON line: the two measurements, idle or busy.
#[derive(Debug, Serialize)]
struct LongPromptLine {
    bench: &'static str,
    url: String,
    model: String,
    /// Whether a CPU-bound process ran beside the server the whole time.
    busy: bool,
    trials: usize,
    errors: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
    /// How long after the document the question is sent.
    question_after_ms: u64,
    question_ttft_ms_p50: f64,
    question_ttft_ms_max: f64,
    document_ttft_ms_p50: f64,
    /// Streams replying while the document is read (in each trial).
    streams: usize,
    /// A decode step: the median gap between a stream's tokens outside the reading.
    decode_step_ms_p50: f64,
    /// Gaps between a stream's tokens while the document was read, in decode steps.
    gaps_during_reading: usize,
    gap_steps_p50: f64,
    gap_steps_p99: f64,
    gap_steps_max: f64,
    /// The longest gap outside the reading, in decode steps: the machine's own hiccups.
    gap_steps_max_outside: f64,
}

const QUESTION_AFTER: Duration = Duration::from_millis(200);
/// Streams beside the document, and their length: long enough to outlast the reading.
const STREAMS: usize = 3;
const STREAM_TOKENS: u32 = 400;

/// About 1,500 tokens of prose to summarise, different in each trial.
pub(super) fn document(trial: usize) -> String {
    let paragraphs: String = (0..80)
        .map(|i| {
            let topic = TOPICS[(i + trial) % TOPICS.len()];
            format!("Paragraph {i}: the notes of trial {trial} say something new about {topic}. ")
        })
        .collect();
    format!("{paragraphs}\nSummarise this in one sentence.")
}

/// A CPU-bound process at normal priority, ended when dropped.
struct CpuHog(Child);

impl CpuHog {
    fn start() -> anyhow::Result<Self> {
        let child = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .spawn()?;
        Ok(Self(child))
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prints the idle line, then the busy one.
pub(super) async fn run(bench: &ServeBench<'_>, http: &reqwest::Client) -> anyhow::Result<()> {
    for busy in [false, true] {
        let _hog = busy.then(CpuHog::start).transpose()?;
        let line = measure(bench, http, busy).await;
        println!("{}", serde_json::to_string(&line)?);
    }
    Ok(())
}

fn asked<'a>(bench: &'a ServeBench<'_>, question: &'a str, max_tokens: u32) -> Asked<'a> {
    Asked {
        model: &bench.model,
        question,
        max_tokens,
        form: bench.form(),
    }
}

/// Sends a request on a task of its own.
fn spawn_one(
    bench: &ServeBench<'_>,
    http: &reqwest::Client,
    text: String,
    max_tokens: u32,
) -> tokio::task::JoinHandle<anyhow::Result<Reply>> {
    let (http, url, token, model, form) = (
        http.clone(),
        bench.url.clone(),
        bench.token.clone(),
        bench.model.clone(),
        bench.form(),
    );
    tokio::spawn(async move {
        let asked = Asked {
            model: &model,
            question: &text,
            max_tokens,
            form,
        };
        stream_one(&http, &url, token.as_deref(), asked).await
    })
}

async fn joined(task: tokio::task::JoinHandle<anyhow::Result<Reply>>) -> anyhow::Result<Reply> {
    task.await.map_err(anyhow::Error::from).and_then(|r| r)
}

async fn measure(bench: &ServeBench<'_>, http: &reqwest::Client, busy: bool) -> LongPromptLine {
    let (mut questions, mut documents, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    let (mut steps, mut inside, mut outside) = (Vec::new(), Vec::new(), Vec::new());
    let trials = bench.long_prompt_trials;
    for trial in 0..trials {
        // The question sent while the document is read.
        let doc = spawn_one(bench, http, document(trial), bench.max_tokens);
        tokio::time::sleep(QUESTION_AFTER).await;
        let q = question(trials, trial, 0);
        match stream_one(
            http,
            &bench.url,
            bench.token.as_deref(),
            asked(bench, &q, bench.max_tokens),
        )
        .await
        {
            Ok(reply) => questions.push(reply.ttft_ms),
            Err(e) => errors.push(format!("{e:#}")),
        }
        match joined(doc).await {
            Ok(reply) => documents.push(reply.ttft_ms),
            Err(e) => errors.push(format!("{e:#}")),
        }
        // Streams replying while the document is read.
        let streams: Vec<_> = (0..STREAMS)
            .map(|s| spawn_one(bench, http, question(trials + 1, trial, s), STREAM_TOKENS))
            .collect();
        // Let every stream start replying (its prompt read) before the document comes.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let submitted = Instant::now();
        let answered = match joined(spawn_one(bench, http, document(trials + trial), 8)).await {
            Ok(reply) => submitted + Duration::from_secs_f64(reply.ttft_ms / 1000.0),
            Err(e) => {
                errors.push(format!("{e:#}"));
                continue;
            }
        };
        for stream in streams {
            match joined(stream).await {
                Ok(reply) => {
                    let gaps = Gaps::of(&reply.times, submitted, answered);
                    if let Some(step) = gaps.step_ms() {
                        steps.push(step);
                        inside.extend(gaps.inside.iter().map(|g| g / step));
                        outside.extend(gaps.outside.iter().map(|g| g / step));
                    }
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
    }
    for v in [&mut questions, &mut documents, &mut steps, &mut inside, &mut outside] {
        v.sort_by(f64::total_cmp);
    }
    LongPromptLine {
        bench: "serve_long_prompt",
        url: bench.url.clone(),
        model: bench.model.clone(),
        busy,
        trials,
        errors: errors.len(),
        first_error: errors.into_iter().next(),
        question_after_ms: QUESTION_AFTER.as_millis() as u64,
        question_ttft_ms_p50: round2(percentile(&questions, 0.5)),
        question_ttft_ms_max: round2(questions.last().copied().unwrap_or(0.0)),
        document_ttft_ms_p50: round2(percentile(&documents, 0.5)),
        streams: STREAMS,
        decode_step_ms_p50: round2(percentile(&steps, 0.5)),
        gaps_during_reading: inside.len(),
        gap_steps_p50: round2(percentile(&inside, 0.5)),
        gap_steps_p99: round2(percentile(&inside, 0.99)),
        gap_steps_max: round2(inside.last().copied().unwrap_or(0.0)),
        gap_steps_max_outside: round2(outside.last().copied().unwrap_or(0.0)),
    }
}

/// A stream's gaps between tokens (ms), inside and outside a reading period.
#[derive(Debug, Default, PartialEq)]
struct Gaps {
    inside: Vec<f64>,
    outside: Vec<f64>,
}

impl Gaps {
    fn of(times: &[Instant], from: Instant, to: Instant) -> Self {
        let mut gaps = Self::default();
        for w in times.windows(2) {
            let gap = w[1].duration_since(w[0]).as_secs_f64() * 1000.0;
            if w[1] > from && w[0] < to {
                gaps.inside.push(gap);
            } else {
                gaps.outside.push(gap);
            }
        }
        gaps
    }

    /// The stream's decode step: its median gap outside the reading.
    fn step_ms(&self) -> Option<f64> {
        let mut outside = self.outside.clone();
        outside.sort_by(f64::total_cmp);
        outside.get(outside.len() / 2).copied().filter(|&s| s > 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_trial_has_its_own_document_of_about_1500_tokens() {
        let (a, b) = (document(0), document(1));
        assert_ne!(a, b);
        // About four characters a token in English prose.
        assert!((5_000..9_000).contains(&a.len()), "{} characters", a.len());
    }

    #[test]
    fn gaps_are_split_by_the_reading_and_counted_in_steps() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Tokens every 10 ms, then a 40 ms wait while the document is read (100..150).
        let times = [at(0), at(10), at(20), at(30), at(100), at(140), at(150), at(160)];
        let gaps = Gaps::of(&times, at(95), at(150));
        assert_eq!(gaps.inside, [70.0, 40.0, 10.0]);
        assert_eq!(gaps.outside, [10.0, 10.0, 10.0, 10.0]);
        assert_eq!(gaps.step_ms(), Some(10.0));
        assert_eq!(Gaps::default().step_ms(), None);
    }

    #[test]
    fn the_cpu_hog_runs_until_dropped() {
        let hog = CpuHog::start().expect("sh starts");
        let pid = hog.0.id();
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(hog);
        // Killed and reaped: the process is gone.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
