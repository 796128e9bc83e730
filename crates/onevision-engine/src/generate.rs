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

use candle_core::DType;
use onevision_processor::TextTokenizer;

use crate::detok::{IncrementalDecoder, StopStrings, TokenBytes};
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

/// [`run_request`] on borrowed parts, so [`Pipeline::generate`] need not clone its request.
pub(crate) fn run_with(
    pipeline: &Pipeline,
    request: &Request,
    sampling: &SamplingParams,
    stop: &StopRules,
    logprobs: Option<usize>,
    sink: &mut dyn FnMut(Event) -> bool,
) {
    let mut events = Events { sink, ended: false };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        run(pipeline, request, sampling, stop, logprobs, &mut events)
    }));
    let failure = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            // The engine's fault, not the request's: callers answer 500, not 400.
            Error::Internal(format!("the generation loop panicked ({what})"))
        }
    };
    if !events.ended {
        // A sink that panics on `Failed` has nothing left to tell.
        let _ = catch_unwind(AssertUnwindSafe(|| events.send(Event::Failed(failure))));
    }
}

/// The sink, and whether the final event went out.
struct Events<'s> {
    sink: &'s mut dyn FnMut(Event) -> bool,
    ended: bool,
}

impl Events<'_> {
    /// Sends one event; `false` means the consumer is gone.
    fn send(&mut self, event: Event) -> bool {
        if matches!(event, Event::Done { .. } | Event::Failed(_)) {
            self.ended = true;
        }
        (self.sink)(event)
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Times of the stages of one request.
struct Clock {
    start: Instant,
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
            preprocess_ms: self.preprocess_ms,
            encode_ms: self.encode_ms,
            prefill_ms,
            ttft_ms,
            decode_tokens_per_s,
            total_ms: secs(self.start, end) * 1e3,
        }
    }
}

/// Ends the request with `Done`; `text` is the answer so far.
fn done(
    events: &mut Events,
    finish: Finish,
    usage: Usage,
    clock: &Clock,
    generated: Vec<u32>,
    text: String,
) {
    let timings = clock.timings(generated.len());
    events.send(Event::Done {
        finish,
        usage,
        timings,
        token_ids: generated,
        text,
    });
}

fn run(
    pipeline: &Pipeline,
    request: &Request,
    sampling: &SamplingParams,
    stop: &StopRules,
    logprobs: Option<usize>,
    events: &mut Events,
) -> Result<()> {
    let mut clock = Clock {
        start: Instant::now(),
        preprocess_ms: 0.0,
        encode_ms: 0.0,
        prefill_start: None,
        first_token: None,
    };
    let model = &pipeline.model;
    let prompt = pipeline.prepare(request)?;
    let mut usage = Usage {
        prompt_tokens: prompt.input_ids.len(),
        completion_tokens: 0,
        media_tokens: prompt.media_tokens(),
    };
    let mut stream = TextStream::new(&pipeline.processor.tokenizer, &stop.stop_strings);
    let mut generated: Vec<u32> = Vec::with_capacity(stop.max_new_tokens.min(1 << 16));
    if !events.send(Event::Started { usage }) {
        done(
            events,
            Finish::Cancelled,
            usage,
            &clock,
            generated,
            String::new(),
        );
        return Ok(());
    }

    let context = model.config().text.max_position_embeddings;
    let mut stop = std::borrow::Cow::Borrowed(stop);
    if stop.clamp_to_context && usage.prompt_tokens < context {
        let room = context - usage.prompt_tokens;
        if stop.max_new_tokens > room {
            stop.to_mut().max_new_tokens = room;
        }
    }
    let stop = stop.as_ref();
    if usage.prompt_tokens.saturating_add(stop.max_new_tokens) > context {
        return Err(Error::Request(format!(
            "the prompt has {} tokens and {} new tokens were asked for, over the model's \
             context of {context} tokens; ask for fewer new tokens, or send fewer images or \
             video frames",
            usage.prompt_tokens, stop.max_new_tokens
        )));
    }
    let input = pipeline.model_input(&prompt)?;
    clock.preprocess_ms = ms(clock.start);

    let t_encode = Instant::now();
    let embeds = model.embed(&input)?;
    if !input.media.is_empty() {
        clock.encode_ms = ms(t_encode);
    }

    clock.prefill_start = Some(Instant::now());
    if stop.max_new_tokens == 0 {
        done(
            events,
            Finish::Length,
            usage,
            &clock,
            generated,
            String::new(),
        );
        return Ok(());
    }
    let eos: &[u32] = if stop.ignore_eos { &[] } else { &pipeline.eos };
    let mut sampler = Sampler::new(sampling).with_logprobs(logprobs);
    let mut cache = model.new_cache();
    let hidden = model.forward_embeds(&embeds, &mut cache)?; // (1, t, H)
    let mut last = hidden.narrow(1, hidden.dim(1)? - 1, 1)?; // (1, 1, H)
    let finish = loop {
        let logits = model
            .logits(&last)?
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?; // (V,)
        let (id, lp) = sampler.sample(&logits, &prompt.input_ids, &generated);
        clock.first_token.get_or_insert_with(Instant::now);
        generated.push(id);
        usage.completion_tokens = generated.len();
        if eos.contains(&id) || stop.stop_token_ids.contains(&id) {
            break Finish::Stop;
        }
        let step = stream.push(id, lp)?;
        if let Some((text, tokens)) = step.delta {
            if !events.send(Event::Delta { text, tokens }) {
                break Finish::Cancelled;
            }
        }
        if step.stopped {
            break Finish::Stop;
        }
        if generated.len() >= stop.max_new_tokens {
            break Finish::Length;
        }
        last = model.forward_tokens(&[id], &mut cache)?;
    };
    let finish = if finish == Finish::Cancelled {
        finish
    } else {
        let step = stream.finish()?;
        // A stop string completed by the text held until the end still ends as a stop.
        let finish = if step.stopped { Finish::Stop } else { finish };
        let sent = match step.delta {
            Some((text, tokens)) => events.send(Event::Delta { text, tokens }),
            None => true,
        };
        if sent {
            finish
        } else {
            Finish::Cancelled
        }
    };
    done(events, finish, usage, &clock, generated, stream.text);
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
