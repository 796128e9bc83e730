//! The generation loop of one request: processor, vision encoder, prefill, then per step
//! sampler -> stop rules -> streaming detokenizer -> [`Event::Delta`], until a stop, the token
//! limit, or a consumer that stops listening.
//!
//! Per step: the last position's logits (f32) -> [`Sampler::sample`] -> the token ends the
//! answer if it is an end-of-sequence id (unless `ignore_eos`) or a stop id (reported in
//! `Done.token_ids` only: no text, no `Delta`) -> otherwise [`IncrementalDecoder`] turns it
//! into whole characters -> [`StopStrings`] holds back what could start a stop string and cuts
//! at one -> the released text and the tokens whose text it completes go out as a `Delta`
//! -> the token is fed to the decoder for the next step.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use candle_core::{DType, Tensor};
use onevision_models::{Media, MultimodalInput};
use onevision_nn::KvCache;
use onevision_processor::TextTokenizer;

use crate::detok::{IncrementalDecoder, StopStrings, TokenBytes};
use crate::encoder_cache::{EncoderCache, EncoderCacheStats, MediaHasher, MediaKey};
use crate::pipeline::{Pipeline, Request, Timings};
use crate::request::{Event, Finish, GenRequest, SamplingParams, StopRules, TokenInfo, Usage};
use crate::sampler::{Sampler, TokenLogprobs};
use crate::{Error, Result};

/// Runs one request and reports it to `sink`: `Started`, zero or more `Delta`, then exactly one
/// `Done`, or `Failed` at any point. Never panics (a panic inside becomes `Failed`). When the
/// sink returns `false` the request stops at once and ends with `Done { finish: Cancelled }`
/// (whose return value is ignored).
pub fn run_request(pipeline: &Pipeline, req: &GenRequest, sink: &mut dyn FnMut(Event) -> bool) {
    run_with(
        pipeline,
        &req.request,
        &req.sampling,
        &req.stop,
        req.logprobs,
        sink,
    )
}

/// [`run_request`] on borrowed parts, so [`Pipeline::generate`] need not clone its request:
/// one [`Sequence`] alone, its media encoded and its prompt prefilled in one piece each.
pub(crate) fn run_with(
    pipeline: &Pipeline,
    request: &Request,
    sampling: &SamplingParams,
    stop: &StopRules,
    logprobs: Option<usize>,
    sink: &mut dyn FnMut(Event) -> bool,
) {
    let sink = Box::new(sink);
    let now = Instant::now();
    let Some(mut seq) =
        Sequence::start(pipeline, request, sampling, stop, logprobs, sink, None, now)
    else {
        return;
    };
    while !seq.ended() {
        let seqs = std::slice::from_mut(&mut seq);
        guarded(
            seqs,
            |_| true,
            |seqs| {
                if seqs[0].is_encoding() {
                    seqs[0].encode(usize::MAX, None)
                } else if seqs[0].is_prefilling() {
                    seqs[0].prefill(usize::MAX)
                } else {
                    decode_step(pipeline, seqs)
                }
            },
        );
    }
}

/// Runs `step` on `seqs`; an error or a panic ends with `Failed` each of them that `involved`
/// chose before the step and that has not ended (a panic is the engine's fault: callers answer
/// 500, not 400).
pub(crate) fn guarded<'p>(
    seqs: &mut [Sequence<'p>],
    involved: impl Fn(&Sequence<'p>) -> bool,
    step: impl FnOnce(&mut [Sequence<'p>]) -> Result<()>,
) {
    let chosen: Vec<bool> = seqs.iter().map(&involved).collect();
    let outcome = catch_unwind(AssertUnwindSafe(|| step(&mut *seqs)));
    let failure = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(panic) => Error::Internal(format!(
            "the generation loop panicked ({})",
            panic_message(&panic)
        )),
    };
    // One sequence gets the error itself (a request error stays one); in a batch, each gets
    // its text as an engine error.
    let message = failure.to_string();
    let mut failure = Some(failure);
    let n = chosen.iter().filter(|&&c| c).count();
    let hit = seqs
        .iter_mut()
        .zip(chosen)
        .filter(|(s, c)| *c && !s.ended());
    for (seq, _) in hit {
        let e = match (n, failure.take()) {
            (1, Some(e)) => e,
            _ => Error::Internal(format!("a batched step failed: {message}")),
        };
        seq.fail(e);
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// The sink, and whether the final event went out.
struct Events<'s> {
    sink: Box<dyn FnMut(Event) -> bool + 's>,
    ended: bool,
}

impl Events<'_> {
    /// Sends one event; `false` means the consumer is gone. Nothing is sent after the end.
    fn send(&mut self, event: Event) -> bool {
        if self.ended {
            return false;
        }
        if matches!(event, Event::Done { .. } | Event::Failed(_)) {
            self.ended = true;
        }
        // A sink that panics has nothing left to tell: the request ends.
        match catch_unwind(AssertUnwindSafe(|| (self.sink)(event))) {
            Ok(listening) => listening,
            Err(_) => {
                self.ended = true;
                false
            }
        }
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Times of the stages of one request.
struct Clock {
    /// The request's arrival.
    start: Instant,
    /// From the end of its preprocessing to its admission among the running requests.
    queue_ms: f64,
    preprocess_ms: f64,
    encode_ms: f64,
    prefill_start: Option<Instant>,
    first_token: Option<Instant>,
}

impl Clock {
    fn timings(&self, tokens: usize) -> Timings {
        let end = Instant::now();
        let secs = |a: Instant, b: Instant| (b - a).as_secs_f64();
        let (prefill_ms, ttft_ms) = match (self.prefill_start, self.first_token) {
            (Some(p), Some(f)) => (secs(p, f) * 1e3, secs(self.start, f) * 1e3),
            _ => (0.0, 0.0),
        };
        let decode_tokens_per_s = match self.first_token {
            Some(f) if tokens > 1 => (tokens - 1) as f64 / secs(f, end),
            _ => 0.0,
        };
        Timings {
            queue_ms: self.queue_ms,
            preprocess_ms: self.preprocess_ms,
            encode_ms: self.encode_ms,
            prefill_ms,
            ttft_ms,
            decode_tokens_per_s,
            total_ms: secs(self.start, end) * 1e3,
        }
    }
}

/// Where a running request is.
enum Phase {
    /// The vision tower runs over the prompt's media, a few tiles or frames per step: `rows`
    /// holds the packed rows of the media done, `pieces` the projected tiles of the current one
    /// (the next `tiles_done` of its pixels), `keys` each medium's encoder-cache key (empty
    /// without a cache).
    Encode {
        input: MultimodalInput,
        keys: Vec<MediaKey>,
        rows: Vec<Tensor>,
        pieces: Vec<Tensor>,
        tiles_done: usize,
    },
    /// The first `done` positions of the prompt's embeddings are in the cache.
    Prefill {
        done: usize,
    },
    /// Recomputing after a preemption: `generated[next]` goes through the decoder next, without
    /// sampling (its successor was chosen before).
    Replay {
        next: usize,
    },
    /// The last sampled token, to be fed to the decoder next.
    Decode {
        next: u32,
    },
    Ended,
}

/// One request in the engine: its prompt, cache, sampler, stop rules and event sink, stepped by
/// [`Sequence::encode`], [`Sequence::prefill`] and [`decode_step`] until it ends (a `Done` or
/// `Failed` sent).
pub(crate) struct Sequence<'p> {
    pipeline: &'p Pipeline,
    events: Events<'p>,
    clock: Clock,
    usage: Usage,
    prompt_ids: Vec<u32>,
    /// The prompt's embeddings (t, H), once its media are encoded; kept so that a preempted
    /// request is recomputed without the vision tower.
    embeds: Option<Tensor>,
    generated: Vec<u32>,
    stream: TextStream<'p>,
    sampler: Sampler,
    stop: StopRules,
    eos: &'p [u32],
    cache: KvCache,
    phase: Phase,
    /// KV-cache blocks the scheduler granted (its cache's buffers hold exactly that many).
    pub(crate) kv_blocks: usize,
    /// Admission order, for the scheduler: the newest request gives way first.
    pub(crate) ticket: u64,
    /// Preempted in this step: its cache is gone; it waits to be recomputed.
    pub(crate) parked: bool,
}

/// A request processed up to the model: media decoded and preprocessed, template rendered,
/// tokens counted, `Started` sent, the context checked, each medium's encoder-cache key
/// computed. This is the part of a request that needs no model; the engine does it on a thread
/// of its own, so that decoding a video does not hold up the running requests' steps.
pub(crate) struct Prepared {
    clock: Clock,
    usage: Usage,
    prompt_ids: Vec<u32>,
    stop: StopRules,
    input: MultimodalInput,
    keys: Vec<MediaKey>,
    /// When the preprocessing ended (the queue wait runs from here to the admission).
    ready_at: Instant,
}

impl Prepared {
    /// Processes `request` and sends `Started` to `sink`; `None` when the request ended
    /// already: failed (reported), cancelled at `Started`, or asked for no tokens. `arrived`:
    /// when the request arrived. With `hasher`, each medium's encoder-cache key is computed.
    pub(crate) fn new(
        pipeline: &Pipeline,
        request: &Request,
        stop: &StopRules,
        sink: &mut dyn FnMut(Event) -> bool,
        hasher: Option<&MediaHasher>,
        arrived: Instant,
    ) -> Option<Self> {
        let mut events = Events {
            sink: Box::new(sink),
            ended: false,
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            Self::new_inner(pipeline, request, stop, &mut events, hasher, arrived)
        }));
        let failure = match outcome {
            Ok(Ok(prepared)) => return prepared,
            Ok(Err(e)) => e,
            Err(panic) => Error::Internal(format!(
                "the generation loop panicked ({})",
                panic_message(&panic)
            )),
        };
        events.send(Event::Failed(failure));
        None
    }

    fn new_inner(
        pipeline: &Pipeline,
        request: &Request,
        stop: &StopRules,
        events: &mut Events,
        hasher: Option<&MediaHasher>,
        arrived: Instant,
    ) -> Result<Option<Self>> {
        let mut clock = Clock {
            start: arrived,
            queue_ms: 0.0,
            preprocess_ms: 0.0,
            encode_ms: 0.0,
            prefill_start: None,
            first_token: None,
        };
        let t0 = Instant::now();
        let model = &pipeline.model;
        let prompt = pipeline.prepare(request)?;
        let usage = Usage {
            prompt_tokens: prompt.input_ids.len(),
            completion_tokens: 0,
            media_tokens: prompt.media_tokens(),
        };
        let end_now = |events: &mut Events, finish: Finish, clock: &Clock| {
            events.send(Event::Done {
                finish,
                usage,
                timings: clock.timings(0),
                token_ids: vec![],
                text: String::new(),
            });
        };
        if !events.send(Event::Started { usage }) {
            end_now(events, Finish::Cancelled, &clock);
            return Ok(None);
        }
        let context = model.config().text.max_position_embeddings;
        let mut stop = stop.clone();
        if stop.clamp_to_context && usage.prompt_tokens < context {
            stop.max_new_tokens = stop.max_new_tokens.min(context - usage.prompt_tokens);
        }
        if usage.prompt_tokens.saturating_add(stop.max_new_tokens) > context {
            return Err(Error::Request(format!(
                "the prompt has {} tokens and {} new tokens were asked for, over the model's \
                 context of {context} tokens; ask for fewer new tokens, or send fewer images or \
                 video frames",
                usage.prompt_tokens, stop.max_new_tokens
            )));
        }
        let input = pipeline.model_input(&prompt)?;
        // Media keys in `model_input`'s order: the images, then the videos.
        let keys = match hasher {
            Some(h) if !input.media.is_empty() => prompt
                .images
                .iter()
                .map(|i| h.image_key(i))
                .chain(prompt.videos.iter().map(|v| h.video_key(v)))
                .collect(),
            _ => vec![],
        };
        clock.preprocess_ms = ms(t0);
        if stop.max_new_tokens == 0 {
            end_now(events, Finish::Length, &clock);
            return Ok(None);
        }
        Ok(Some(Self {
            clock,
            usage,
            prompt_ids: prompt.input_ids,
            stop,
            input,
            keys,
            ready_at: Instant::now(),
        }))
    }
}

impl<'p> Sequence<'p> {
    /// [`Prepared::new`] then [`Self::new`], on this thread.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        pipeline: &'p Pipeline,
        request: &Request,
        sampling: &SamplingParams,
        stop: &StopRules,
        logprobs: Option<usize>,
        mut sink: Box<dyn FnMut(Event) -> bool + 'p>,
        hasher: Option<&MediaHasher>,
        arrived: Instant,
    ) -> Option<Self> {
        let prepared = Prepared::new(pipeline, request, stop, &mut *sink, hasher, arrived)?;
        Self::new(pipeline, prepared, sampling, logprobs, sink)
    }

    /// The running request of a prepared one (its events go on to `sink`, which `Started` went
    /// to). `None` when it failed (reported).
    pub(crate) fn new(
        pipeline: &'p Pipeline,
        prepared: Prepared,
        sampling: &SamplingParams,
        logprobs: Option<usize>,
        sink: Box<dyn FnMut(Event) -> bool + 'p>,
    ) -> Option<Self> {
        let mut events = Events { sink, ended: false };
        let Prepared {
            mut clock,
            usage,
            prompt_ids,
            stop,
            input,
            keys,
            ready_at,
        } = prepared;
        clock.queue_ms = ms(ready_at);
        let (phase, embeds) = if input.media.is_empty() {
            clock.prefill_start = Some(Instant::now());
            let embeds = catch_unwind(AssertUnwindSafe(|| pipeline.model.embed(&input)));
            match embeds {
                Ok(Ok(e)) => (Phase::Prefill { done: 0 }, Some(e)),
                Ok(Err(e)) => {
                    events.send(Event::Failed(e.into()));
                    return None;
                }
                Err(panic) => {
                    events.send(Event::Failed(Error::Internal(format!(
                        "the generation loop panicked ({})",
                        panic_message(&panic)
                    ))));
                    return None;
                }
            }
        } else {
            let phase = Phase::Encode {
                input,
                keys,
                rows: vec![],
                pieces: vec![],
                tiles_done: 0,
            };
            (phase, None)
        };
        let eos: &[u32] = if stop.ignore_eos { &[] } else { &pipeline.eos };
        Some(Self {
            pipeline,
            events,
            clock,
            usage,
            prompt_ids,
            embeds,
            generated: Vec::with_capacity(stop.max_new_tokens.min(1 << 16)),
            stream: TextStream::new(&pipeline.processor.tokenizer, &stop.stop_strings),
            sampler: Sampler::new(sampling).with_logprobs(logprobs),
            stop,
            eos,
            cache: pipeline.model.new_cache(),
            phase,
            kv_blocks: 0,
            ticket: 0,
            parked: false,
        })
    }

    /// Whether `Done` or `Failed` went out.
    pub(crate) fn ended(&self) -> bool {
        self.events.ended || matches!(self.phase, Phase::Ended)
    }

    /// The prompt's length in positions, media placeholders included.
    pub(crate) fn prompt_len(&self) -> usize {
        self.usage.prompt_tokens
    }

    /// Generated tokens so far.
    pub(crate) fn generated_len(&self) -> usize {
        self.generated.len()
    }

    pub(crate) fn is_encoding(&self) -> bool {
        matches!(self.phase, Phase::Encode { .. })
    }

    pub(crate) fn is_prefilling(&self) -> bool {
        matches!(self.phase, Phase::Prefill { .. })
    }

    /// Feeds the decoder one position per step: generating, or replaying after a preemption.
    pub(crate) fn is_decoding(&self) -> bool {
        matches!(self.phase, Phase::Decode { .. } | Phase::Replay { .. }) && !self.events.ended
    }

    /// Cache positions the sequence holds after its next step (a prefill chunk of at most
    /// `chunk` positions, or one decoded position); 0 while it encodes or has ended.
    pub(crate) fn kv_need(&self, chunk: usize) -> usize {
        match &self.phase {
            Phase::Prefill { done } => {
                let t = self.usage.prompt_tokens;
                done + chunk.max(1).min(t.saturating_sub(*done))
            }
            Phase::Replay { .. } | Phase::Decode { .. } => self.cache.len() + 1,
            Phase::Encode { .. } | Phase::Ended => 0,
        }
    }

    /// The scheduler grants `blocks` KV-cache blocks of `block` positions in all.
    pub(crate) fn grant(&mut self, blocks: usize, block: usize) {
        self.kv_blocks = blocks;
        self.cache.reserve(blocks * block);
    }

    /// Gives the KV cache back: the request is recomputed later (its prompt prefilled again in
    /// the same chunks, its generated tokens replayed one decode step each, so its cache is
    /// the same as before, bit for bit), never dropped. What it sent stays sent.
    pub(crate) fn preempt(&mut self) {
        self.cache.clear();
        self.kv_blocks = 0;
        self.parked = true;
        if matches!(
            self.phase,
            Phase::Prefill { .. } | Phase::Replay { .. } | Phase::Decode { .. }
        ) {
            self.phase = Phase::Prefill { done: 0 };
        }
    }

    /// Runs the vision tower over at most `tiles` more tiles or frames of the prompt's media
    /// (a medium found in `encoder` costs none); after the last medium, splices the prompt's
    /// embeddings and moves on to the prefill. Tiles are independent, so encoding them a few
    /// at a time gives the rows of encoding them at once.
    pub(crate) fn encode(
        &mut self,
        tiles: usize,
        mut encoder: Option<(&mut EncoderCache, &EncoderCacheStats)>,
    ) -> Result<()> {
        let Phase::Encode {
            input,
            keys,
            rows,
            pieces,
            tiles_done,
        } = &mut self.phase
        else {
            return Ok(());
        };
        let model = &self.pipeline.model;
        let t0 = Instant::now();
        let mut budget = tiles.max(1);
        while rows.len() < input.media.len() && budget > 0 {
            let medium = &input.media[rows.len()];
            let key = keys.get(rows.len()).copied();
            if *tiles_done == 0 {
                if let (Some(key), Some((cache, stats))) = (key, encoder.as_mut()) {
                    if let Some(r) = cache.get(key, stats) {
                        rows.push(r);
                        continue;
                    }
                }
            }
            let pixels = match medium {
                Media::Image { pixels, .. } => pixels,
                Media::Video { frames } => frames,
            };
            let p = pixels.dim(0)?;
            let n = budget.min(p - *tiles_done);
            let part = if n == p {
                pixels.clone()
            } else {
                pixels.narrow(0, *tiles_done, n)?
            };
            pieces.push(model.project(&model.vision_features(&part)?)?);
            *tiles_done += n;
            budget -= n;
            if *tiles_done == p {
                let projected = match pieces.len() {
                    1 => pieces.pop().expect("one piece"),
                    _ => Tensor::cat(pieces, 0)?,
                };
                pieces.clear();
                *tiles_done = 0;
                let r = model.pack_media(medium, &projected)?;
                if let (Some(key), Some((cache, _))) = (key, encoder.as_mut()) {
                    cache.put(key, &r);
                }
                rows.push(r);
            }
        }
        self.clock.encode_ms += ms(t0);
        if rows.len() < input.media.len() {
            return Ok(());
        }
        let embeds = model.splice(&input.input_ids, &input.media, std::mem::take(rows))?;
        self.embeds = Some(embeds);
        self.phase = Phase::Prefill { done: 0 };
        self.clock.prefill_start = Some(Instant::now());
        Ok(())
    }

    /// Runs the next `chunk` (at most) prompt positions through the decoder; after the last,
    /// samples the first token (or, recomputing after a preemption, goes on to replay).
    pub(crate) fn prefill(&mut self, chunk: usize) -> Result<()> {
        let Phase::Prefill { done } = &mut self.phase else {
            return Ok(());
        };
        let embeds = self
            .embeds
            .as_ref()
            .ok_or_else(|| Error::Internal("prefill before the prompt was embedded".into()))?;
        let t = embeds.dim(0)?;
        let n = chunk.max(1).min(t - *done);
        let part = if *done == 0 && n == t {
            embeds.clone()
        } else {
            embeds.narrow(0, *done, n)?
        };
        let hidden = self.pipeline.model.forward_embeds(&part, &mut self.cache)?; // (1, n, H)
        *done += n;
        if *done < t {
            return Ok(());
        }
        if let Some(&last) = self.generated.last() {
            // Recomputed: the cache holds every generated token but the last one.
            self.phase = match self.generated.len() {
                1 => Phase::Decode { next: last },
                _ => Phase::Replay { next: 0 },
            };
            return Ok(());
        }
        let last = hidden.narrow(1, n - 1, 1)?; // (1, 1, H)
        let logits = self.pipeline.model.logits(&last)?;
        self.take(logits_row(&logits)?)
    }

    /// Samples from one position's logits and reports the token: the request may end here.
    fn take(&mut self, logits: Vec<f32>) -> Result<()> {
        let (id, lp) = self
            .sampler
            .sample(&logits, &self.prompt_ids, &self.generated);
        self.clock.first_token.get_or_insert_with(Instant::now);
        self.generated.push(id);
        self.usage.completion_tokens = self.generated.len();
        if self.eos.contains(&id) || self.stop.stop_token_ids.contains(&id) {
            return self.finish(Finish::Stop);
        }
        let step = self.stream.push(id, lp)?;
        if let Some((text, tokens)) = step.delta {
            if !self.events.send(Event::Delta { text, tokens }) {
                return self.finish(Finish::Cancelled);
            }
        }
        if step.stopped {
            return self.finish(Finish::Stop);
        }
        if self.generated.len() >= self.stop.max_new_tokens {
            return self.finish(Finish::Length);
        }
        self.phase = Phase::Decode { next: id };
        Ok(())
    }

    /// Releases what the stream held (unless cancelled) and sends `Done`.
    fn finish(&mut self, finish: Finish) -> Result<()> {
        self.phase = Phase::Ended;
        let finish = if finish == Finish::Cancelled {
            finish
        } else {
            let step = self.stream.finish()?;
            // A stop string completed by the text held until the end still ends as a stop.
            let finish = if step.stopped { Finish::Stop } else { finish };
            let sent = match step.delta {
                Some((text, tokens)) => self.events.send(Event::Delta { text, tokens }),
                None => true,
            };
            if sent {
                finish
            } else {
                Finish::Cancelled
            }
        };
        let timings = self.clock.timings(self.generated.len());
        self.events.send(Event::Done {
            finish,
            usage: self.usage,
            timings,
            token_ids: std::mem::take(&mut self.generated),
            text: std::mem::take(&mut self.stream.text),
        });
        self.release();
        Ok(())
    }

    /// Ends the request with `Failed` (nothing when it ended already).
    pub(crate) fn fail(&mut self, e: Error) {
        self.phase = Phase::Ended;
        self.release();
        if !self.events.ended {
            self.events.send(Event::Failed(e));
        }
    }

    /// Frees the cache and the prompt (the scheduler takes back the granted blocks).
    fn release(&mut self) {
        self.cache.clear();
        self.embeds = None;
    }
}

/// The logits of a (1, 1, V) or (1, V) tensor as f32.
fn logits_row(logits: &Tensor) -> Result<Vec<f32>> {
    Ok(logits
        .flatten_all()?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?)
}

/// One decode step for every decoding sequence of `seqs` in one batched forward (each weight
/// read once for all of them), then each generating one's token sampled and reported (a
/// replaying one only moves on).
pub(crate) fn decode_step(pipeline: &Pipeline, seqs: &mut [Sequence<'_>]) -> Result<()> {
    let mut batch: Vec<&mut Sequence> = seqs.iter_mut().filter(|s| s.is_decoding()).collect();
    if batch.is_empty() {
        return Ok(());
    }
    let tokens: Vec<u32> = batch
        .iter()
        .map(|s| match s.phase {
            Phase::Decode { next } => next,
            Phase::Replay { next } => s.generated[next],
            _ => unreachable!("filtered to decoding sequences"),
        })
        .collect();
    let mut caches: Vec<&mut KvCache> = batch.iter_mut().map(|s| &mut s.cache).collect();
    let hidden = pipeline.model.forward_decode_batch(&tokens, &mut caches)?; // (n, 1, H)
    let sampled: Vec<u32> = (0..batch.len() as u32)
        .filter(|&i| matches!(batch[i as usize].phase, Phase::Decode { .. }))
        .collect();
    // Only the generating rows need logits (a row's logits do not depend on the others').
    let logits = match sampled.len() {
        0 => None,
        n if n == batch.len() => Some(pipeline.model.logits(&hidden)?),
        n => {
            let rows = Tensor::from_vec(sampled, n, hidden.device())?;
            Some(pipeline.model.logits(&hidden.index_select(&rows, 0)?)?)
        }
    }; // (m, 1, V)
    let mut row = 0;
    for seq in batch.iter_mut() {
        match seq.phase {
            Phase::Replay { next } => {
                seq.phase = if next + 2 >= seq.generated.len() {
                    Phase::Decode {
                        next: seq.generated[seq.generated.len() - 1],
                    }
                } else {
                    Phase::Replay { next: next + 1 }
                };
            }
            _ => {
                let logits = logits.as_ref().expect("a generating row");
                seq.take(logits_row(&logits.narrow(0, row, 1)?)?)?;
                row += 1;
            }
        }
    }
    Ok(())
}

/// What one token (or the end) releases.
struct Step {
    /// Text and tokens for a `Delta`, when there is anything to send.
    delta: Option<(String, Vec<TokenInfo>)>,
    /// A stop string was found.
    stopped: bool,
}

/// A token whose text is known: bytes `start..end` of the decoded stream.
struct Placed {
    info: TokenInfo,
    start: usize,
    end: usize,
}

/// Ids -> text deltas, with each token reported in the delta that releases (the end of) its
/// text. The emitted text is always a prefix of the decoded stream, so offsets in the stream
/// say which tokens it covers.
struct TextStream<'a> {
    tokenizer: &'a TextTokenizer,
    bytes: TokenBytes<'a>,
    detok: IncrementalDecoder,
    stops: StopStrings,
    /// Tokens the decoder holds no text for yet (a partial character, a special token).
    waiting: Vec<TokenInfo>,
    /// Tokens with text, not reported yet, in order.
    placed: Vec<Placed>,
    /// Bytes the decoder has released.
    decoded: usize,
    /// The text emitted so far: the answer.
    text: String,
}

impl<'a> TextStream<'a> {
    fn new(tokenizer: &'a TextTokenizer, stop_strings: &[String]) -> Self {
        Self {
            tokenizer,
            bytes: TokenBytes::new(tokenizer),
            detok: IncrementalDecoder::new(),
            stops: StopStrings::new(stop_strings),
            waiting: vec![],
            placed: vec![],
            decoded: 0,
            text: String::new(),
        }
    }

    fn info(&self, id: u32, lp: Option<TokenLogprobs>) -> TokenInfo {
        let (text, bytes) = self.bytes.text_and_bytes(id);
        let (logprob, top) = match lp {
            None => (0.0, vec![]),
            Some(lp) => (
                lp.logprob,
                lp.top
                    .into_iter()
                    .map(|(id, p)| {
                        let (text, bytes) = self.bytes.text_and_bytes(id);
                        (id, text, bytes, p)
                    })
                    .collect(),
            ),
        };
        TokenInfo {
            id,
            text,
            bytes,
            logprob,
            top,
        }
    }

    fn push(&mut self, id: u32, lp: Option<TokenLogprobs>) -> Result<Step> {
        let info = self.info(id, lp);
        self.waiting.push(info);
        let piece = self.detok.push(self.tokenizer, id)?;
        Ok(self.take(&piece))
    }

    /// Text the decoder released: place the waiting tokens on it, pass it through the stop
    /// strings, and report the tokens whose text is now out.
    fn take(&mut self, piece: &str) -> Step {
        if piece.is_empty() {
            return Step {
                delta: None,
                stopped: false,
            };
        }
        let start = self.decoded;
        self.decoded += piece.len();
        for info in self.waiting.drain(..) {
            self.placed.push(Placed {
                info,
                start,
                end: start + piece.len(),
            });
        }
        let scan = self.stops.push(piece);
        self.text.push_str(&scan.emit);
        let out = self.text.len();
        let tokens: Vec<TokenInfo> = if scan.stopped {
            // Tokens that add to the answer; those inside the stop string are not reported.
            self.placed
                .drain(..)
                .filter(|p| p.start < out)
                .map(|p| p.info)
                .collect()
        } else {
            let n = self.placed.iter().take_while(|p| p.end <= out).count();
            self.placed.drain(..n).map(|p| p.info).collect()
        };
        Step {
            delta: (!scan.emit.is_empty() || !tokens.is_empty()).then_some((scan.emit, tokens)),
            stopped: scan.stopped,
        }
    }

    /// The end of generation: release what the decoder and the stop strings held, and report
    /// every token left (after a stop, only those before it).
    fn finish(&mut self) -> Result<Step> {
        let rest = self.detok.finish(self.tokenizer)?;
        let step = self.take(&rest);
        if step.stopped || self.stops.stopped() {
            return Ok(step);
        }
        let (mut text, mut tokens) = step.delta.unwrap_or_default();
        let held = self.stops.finish();
        self.text.push_str(&held);
        text.push_str(&held);
        tokens.extend(self.placed.drain(..).map(|p| p.info));
        tokens.append(&mut self.waiting);
        Ok(Step {
            delta: (!text.is_empty() || !tokens.is_empty()).then_some((text, tokens)),
            stopped: false,
        })
    }
}
