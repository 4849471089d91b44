//! The engine's one decoder: continuous batching of its sequences (slots) on one
//! llama.cpp context.
//!
//! Decoding a token reads every weight once, whatever the number of sequences in the
//! batch, so serving several replies in one batch costs little more than serving one.
//! With several slots the context holds each sequence's part of the KV cache
//! (`kv_unified` off: a sequence has exactly the configured context, and one long
//! conversation cannot crowd out the others). With one slot the cache starts small and
//! grows with the conversation ([`growth`]); that is the only difference.
//!
//! Each step is planned as data ([`plan::plan_step`]: the next token of every replying
//! sequence, guesses to verify where they pay, prompt chunks sized from measured step
//! costs by [`pace`]) and then carried out ([`execute`]). Requests join between steps
//! and leave as soon as they end; a request goes to the slot [`plan::choose_slot`]
//! picks, so each conversation keeps its prefix reuse under load.

mod draft;
mod execute;
mod growth;
mod pace;
mod plan;
mod slot;
mod steps;

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

use hearth_core::{FinishReason, PromptFormat};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::chat_format::ChatFormat;
use crate::draft::{Drafter, StepCosts};
use crate::engine::{Command, Job};
use crate::prompt::{add_token, keep_prefix};
use crate::reply::Reply;
use crate::sampler::build_sampler;
use crate::trace::TraceRecorder;
use crate::EngineError;
pub(crate) use growth::Growth;
use pace::Pace;
use plan::SlotView;
use slot::{Active, Slot};
pub(crate) use steps::StepLog;
pub use steps::{StepPlan, DOCUMENT_CHUNK_DECODE_STEPS, MIN_PROMPT_CHUNK};

/// The slots a scheduler serves and how.
pub(crate) struct SlotsShape {
    /// The model's name, for logs and errors.
    pub name: String,
    /// How chats become prompts for the model.
    pub format: ChatFormat,
    pub n_parallel: u32,
    /// Sliding-window size for SWA models (0 = none).
    pub n_swa: u32,
    /// Guesses verified per step by a reply (0: no drafting).
    pub max_draft: usize,
    /// Guesses verified at least whenever every replying sequence has one.
    pub min_draft: usize,
}

pub(crate) struct Scheduler<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    name: String,
    /// How chats become prompts for this model.
    format: ChatFormat,
    slots: Vec<Slot>,
    waiting: VecDeque<Job>,
    /// Positions each sequence may use now.
    n_ctx_seq: usize,
    n_batch: usize,
    /// Sliding-window size for SWA models (0 = none).
    n_swa: u32,
    load_ms: f64,
    pace: Pace,
    batch: LlamaBatch<'static>,
    /// Guesses verified per step by a reply (0: no drafting).
    max_draft: usize,
    /// Guesses verified at least whenever every replying sequence has one.
    min_draft: usize,
    /// What a lone reply's step costs by guess length (the drafter's cost model).
    step_costs: StepCosts,
    /// With one slot: how its cache grows toward the configured context.
    growth: Option<Growth>,
    /// Each step as planned (read by `Engine::step_plans`).
    steps: Arc<StepLog>,
    /// Steps taken so far.
    step_index: u64,
    /// Requests taken so far (orders equal prompts and the slots' last use).
    requests: u64,
}

impl<'m> Scheduler<'m> {
    /// A scheduler of `slots.n_parallel` slots on `ctx`; with one slot, `growth` may let
    /// its cache grow.
    pub(crate) fn new(
        model: &'m LlamaModel,
        ctx: LlamaContext<'m>,
        slots: SlotsShape,
        growth: Option<Growth>,
        steps: Arc<StepLog>,
    ) -> Self {
        let SlotsShape {
            name,
            format,
            n_parallel,
            n_swa,
            max_draft,
            min_draft,
        } = slots;
        let n_batch = ctx.n_batch() as usize;
        let n = n_parallel.max(1);
        let n_ctx_seq = (ctx.n_ctx() / n) as usize;
        Self {
            model,
            ctx,
            name,
            format,
            slots: (0..n).map(|i| Slot::new(i32::try_from(i).unwrap_or(0))).collect(),
            waiting: VecDeque::new(),
            n_ctx_seq,
            n_batch,
            n_swa,
            load_ms: 0.0,
            pace: Pace::default(),
            batch: LlamaBatch::new(n_batch, i32::try_from(n).unwrap_or(1)),
            max_draft,
            min_draft,
            step_costs: StepCosts::default(),
            growth: growth.filter(|_| n == 1),
            steps,
            step_index: 0,
            requests: 0,
        }
    }

    pub(crate) fn set_load_ms(&mut self, load_ms: f64) {
        self.load_ms = load_ms;
    }

    /// The positions a prompt may use: the configured context of a sequence.
    pub(crate) fn n_ctx_limit(&self) -> u32 {
        match &self.growth {
            Some(growth) => growth.ceiling,
            None => u32::try_from(self.n_ctx_seq).unwrap_or(u32::MAX),
        }
    }

    /// Decodes a short prompt and then one token on every sequence, and clears them, so
    /// the first real request does not pay for page faults, weight repacking and the
    /// allocation of either graph (prompt batches and single-token steps differ).
    pub(crate) fn warm_up(&mut self) -> Result<(), EngineError> {
        let vocab = self.model.vocab();
        let mut tokens = vec![vocab.bos()];
        if vocab.eos().0 >= 0 {
            tokens.push(vocab.eos());
        }
        let warm = |e: EngineError| EngineError::DecodeFailed(format!("warm-up: {e}"));
        for step in [&tokens[..], &tokens[..1]] {
            let start = if step.len() == 1 { tokens.len() } else { 0 };
            self.batch.clear();
            for slot in &self.slots {
                for (i, &token) in step.iter().enumerate() {
                    add_token(&mut self.batch, token, start + i, slot.seq, i + 1 == step.len()).map_err(warm)?;
                }
            }
            self.ctx
                .decode(&mut self.batch)
                .map_err(|e| EngineError::DecodeFailed(format!("warm-up: {e}")))?;
        }
        self.ctx.clear_kv_cache();
        Ok(())
    }

    /// Serves commands until the engine is dropped and the last reply has ended.
    pub(crate) fn run(mut self, commands: &Receiver<Command>) {
        let mut open = true;
        loop {
            if !self.busy() {
                if !open {
                    return;
                }
                match commands.recv() {
                    Ok(command) => self.take(command),
                    Err(_) => return,
                }
            }
            // Whatever else arrived joins between steps.
            loop {
                match commands.try_recv() {
                    Ok(command) => self.take(command),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            self.admit();
            if self.slots.iter().any(|s| s.active.is_some()) {
                self.step();
            }
        }
    }

    fn busy(&self) -> bool {
        !self.waiting.is_empty() || self.slots.iter().any(|s| s.active.is_some())
    }

    fn take(&mut self, command: Command) {
        match command {
            Command::Generate(job) => self.waiting.push_back(*job),
            Command::GenerateMany(jobs) => self.waiting.extend(jobs),
            Command::ResetCache => {
                for slot in self.slots.iter_mut().filter(|s| s.active.is_none()) {
                    self.ctx.clear_kv_cache_seq(Some(seq_u32(slot.seq)), None, None).ok();
                    slot.cached.clear();
                }
            }
            Command::CountTokens(prompt, reply) => {
                let counted = self
                    .format
                    .tokenize(self.model, &prompt)
                    .map(|(t, _)| u32::try_from(t.len()).unwrap_or(u32::MAX));
                let _ = reply.send(counted);
            }
            Command::Tokenize(prompt, reply) => {
                let tokens = self.format.tokenize(self.model, &prompt);
                let _ = reply.send(tokens.map(|(t, _)| t.into_iter().map(|t| t.0).collect()));
            }
            Command::Score(tokens, from, out) => self.score(&tokens, from, &out),
        }
    }

    /// Gives waiting requests the idle slots, checking each prompt first.
    fn admit(&mut self) {
        while self.slots.iter().any(|s| s.active.is_none()) {
            let Some(job) = self.waiting.pop_front() else { return };
            let (tokens, format) = match self.format.tokenize(self.model, &job.request.prompt) {
                Ok(written) => written,
                Err(e) => {
                    let _ = job.accepted.send(Err(e));
                    continue;
                }
            };
            // At least one position must stay free for the reply.
            let needed = u32::try_from(tokens.len()).unwrap_or(u32::MAX).saturating_add(1);
            let limit = self.n_ctx_limit();
            if needed > limit {
                let _ = job.accepted.send(Err(EngineError::ContextOverflow { needed, limit }));
                continue;
            }
            let views: Vec<SlotView> = self
                .slots
                .iter()
                .map(|s| SlotView {
                    busy: s.active.is_some(),
                    cached: s.cached.len(),
                    common: s.common_prefix(&tokens),
                    last_used: s.last_used,
                })
                .collect();
            let Some(index) = plan::choose_slot(&views) else { return };
            let mut reused = self.reuse_prefix(index, &tokens);
            // Room for the prompt and the whole reply, so a reply never stops short of
            // max_tokens while the configured context would have allowed more.
            match self.make_room(needed.saturating_add(job.request.params.max_tokens)) {
                Ok(true) => {}
                Ok(false) => reused = 0,
                Err(e) => {
                    let _ = job.accepted.send(Err(e));
                    continue;
                }
            }
            self.start(index, job, (tokens, format), reused);
        }
    }

    /// Starts `job` in slot `index` with its prompt's tokens (and how a chat was written),
    /// whose first `reused` tokens the slot's cache holds.
    fn start(&mut self, index: usize, job: Job, prompt: (Vec<LlamaToken>, Option<PromptFormat>), reused: usize) {
        let (tokens, format) = prompt;
        let Job {
            request,
            requested_at,
            accepted,
            events,
            cancel,
            stream,
            trace,
        } = job;
        let sampler = match build_sampler(&request.params, self.model) {
            Ok(sampler) => sampler,
            Err(e) => {
                let _ = accepted.send(Err(e));
                return;
            }
        };
        if accepted.send(Ok(())).is_err() {
            return;
        }
        let mut reply = Reply::new(events, stream, &request.params, tokens.len(), requested_at);
        reply.set_prompt_format(format);
        reply.start_reading(reused);
        self.requests += 1;
        self.slots[index].active = Some(Active {
            reply,
            sampler,
            cancel,
            trace: trace.map(|(top_k, tx)| (TraceRecorder::new(top_k), tx)),
            next: reused,
            reused,
            arrival: self.requests,
            prompt: tokens,
            pending: None,
            pos: 0,
            drafter: Drafter::new(self.max_draft),
            guess: None,
        });
    }

    /// Keeps the slot's cache of the longest prefix it shares with `tokens`
    /// ([`keep_prefix`]); returns how many prompt tokens are reused.
    fn reuse_prefix(&mut self, index: usize, tokens: &[LlamaToken]) -> usize {
        let slot = &mut self.slots[index];
        keep_prefix(&mut self.ctx, slot.seq, &mut slot.cached, tokens, self.n_swa)
    }

    /// Requests whose caller cancelled (or hung up) leave before the step; returns
    /// their sequences.
    fn end_cancelled(&mut self) -> Vec<i32> {
        let mut cancelled = Vec::new();
        for index in 0..self.slots.len() {
            if self.slots[index]
                .active
                .as_ref()
                .is_some_and(|a| a.cancel.is_cancelled())
            {
                self.end(index, FinishReason::Cancelled, None);
                cancelled.push(self.slots[index].seq);
            }
        }
        cancelled
    }

    fn end(&mut self, index: usize, finish: FinishReason, error: Option<String>) {
        self.requests += 1;
        let slot = &mut self.slots[index];
        slot.last_used = self.requests;
        if let Some(active) = slot.active.take() {
            active.finish(finish, error, self.load_ms, &self.name);
        }
    }

    /// A failed decode leaves the cache in an unknown state: every running reply gets
    /// the error and every sequence starts clean.
    fn fail_all(&mut self, message: &str) {
        for index in 0..self.slots.len() {
            if self.slots[index].active.is_some() {
                self.end(index, FinishReason::Error, Some(message.to_owned()));
            }
            self.slots[index].cached.clear();
        }
        self.ctx.clear_kv_cache();
    }
}

fn seq_u32(seq: i32) -> u32 {
    u32::try_from(seq).unwrap_or(0)
}

fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
