//! `POST /v1/chat/completions`: body -> [`parse::ChatRequest`] -> media fetched -> a
//! `GenRequest` queued on the engine -> its events as one `chat.completion` or as a stream of
//! `chat.completion.chunk` server-sent events.
//!
//! The engine's event sink feeds an unbounded channel: the worker never waits for a slow
//! client (events per request are bounded by `max_tokens`), and once the receiver is dropped
//! (the client went away, the handler or the stream was dropped) the sink returns `false`
//! and the engine cancels the request.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use onevision_engine::{Event, Finish, GenRequest, Request, Sink, Usage};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::parse::{self, ParseContext, StreamOptions};
use crate::wire::{
    AssistantMessage, ChatChunk, ChatCompletion, Choice, ChunkChoice, Delta, Logprobs,
    TokenLogprob, UsageBody, UsageField,
};
use crate::App;

pub async fn chat_completions(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match run(&app, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn run(app: &Arc<App>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let limits = &app.config.limits;
    let body = body.map_err(|r| ApiError::from_body_rejection(r, limits.max_body_bytes))?;
    // Parsing a large body (tens of MB of base64) takes a while: off the async threads.
    let parsing = app.clone();
    let parsed = tokio::task::spawn_blocking(move || parse_body(&parsing, &body))
        .await
        .map_err(|e| ApiError::internal(format!("the request parser failed: {e}")))??;
    let (images, videos) = app.media.resolve(parsed.media).await?;
    let request = GenRequest {
        request: Request {
            messages: parsed.messages,
            images,
            videos,
        },
        sampling: parsed.sampling,
        stop: parsed.stop,
        logprobs: parsed.logprobs,
    };
    let want_logprobs = request.logprobs.is_some();

    let (tx, mut rx) = unbounded_channel();
    app.engine
        .submit(request, metered_sink(tx, app.metrics.clone(), arrived))?;

    let meta = ResponseMeta {
        id: completion_id(),
        created: unix_now(),
        model: app.config.served_model_name.clone(),
    };
    match parsed.stream {
        None => complete(&mut rx, meta, want_logprobs).await,
        Some(options) => {
            // Commit to a 200 stream only once the engine is generating: bad media, a prompt
            // over the context (checked after `Started`) or a failing vision tower come
            // back as a 4xx/5xx, not as an error inside a 200 stream. The role chunk goes
            // out with the first text instead of at `Started`, which clients cannot tell.
            let mut first = next_event(&mut rx).await?;
            if matches!(first, Event::Started { .. }) {
                first = next_event(&mut rx).await?;
            }
            let mut stream = ChunkStream::new(rx, meta, options, want_logprobs);
            stream.push(first);
            Ok(stream.into_response())
        }
    }
}

/// JSON, then the checks. The content type is not looked at: `curl -d` sends
/// form-encoded, and the body says what it is by parsing or not.
fn parse_body(app: &App, body: &[u8]) -> Result<parse::ChatRequest, ApiError> {
    let json: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not valid JSON ({e}); expected a chat-completions object"
        ))
    })?;
    let cx = ParseContext {
        served_model_name: &app.config.served_model_name,
        context_length: app.engine.info().context_length,
        limits: &app.config.limits,
    };
    parse::chat_request(&json, &cx)
}

/// The sink given to the engine: counts tokens and latencies (on the worker thread, whether
/// or not anyone still listens), then forwards the event.
fn metered_sink(tx: UnboundedSender<Event>, metrics: Arc<Metrics>, arrived: Instant) -> Sink {
    let mut counted = 0usize;
    Box::new(move |event: Event| {
        match &event {
            Event::Started { usage } => metrics.add_prompt_tokens(usage.prompt_tokens),
            Event::Delta { tokens, .. } => {
                counted += tokens.len();
                metrics.add_generation_tokens(tokens.len());
            }
            Event::Done {
                finish,
                usage,
                timings,
                ..
            } => {
                metrics.add_generation_tokens(usage.completion_tokens.saturating_sub(counted));
                metrics.observe_queue(timings.queue_ms / 1e3);
                let elapsed = arrived.elapsed().as_secs_f64();
                if *finish != Finish::Cancelled && usage.completion_tokens > 0 {
                    // The engine times from when it took the request; the queue wait is the
                    // rest of the time since arrival.
                    let after_first = (timings.total_ms - timings.ttft_ms).max(0.0) / 1e3;
                    metrics.observe_ttft((elapsed - after_first).max(0.0));
                    if timings.decode_tokens_per_s > 0.0 {
                        metrics.observe_tpot(1.0 / timings.decode_tokens_per_s);
                    }
                    metrics.observe_e2e(elapsed);
                }
            }
            Event::Failed(_) => {}
        }
        tx.send(event).is_ok()
    })
}

async fn next_event(rx: &mut UnboundedReceiver<Event>) -> Result<Event, ApiError> {
    match rx.recv().await {
        Some(Event::Failed(e)) => Err(e.into()),
        Some(event) => Ok(event),
        None => Err(ApiError::internal(
            "the engine dropped the request without an answer",
        )),
    }
}

struct ResponseMeta {
    id: String,
    created: u64,
    model: String,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `chatcmpl-` + 24 hex digits: a per-process random prefix and a counter, unique within a
/// process and unlikely to repeat across restarts.
fn completion_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    });
    format!(
        "chatcmpl-{prefix:016x}{:08x}",
        COUNTER.fetch_add(1, Ordering::Relaxed) as u32
    )
}

/// A non-streamed answer: waits for `Done`.
async fn complete(
    rx: &mut UnboundedReceiver<Event>,
    meta: ResponseMeta,
    want_logprobs: bool,
) -> Result<Response, ApiError> {
    let mut logprobs = Vec::new();
    loop {
        match next_event(rx).await? {
            Event::Started { .. } => {}
            Event::Delta { tokens, .. } => {
                if want_logprobs {
                    logprobs.extend(tokens.iter().map(TokenLogprob::from));
                }
            }
            Event::Done {
                finish,
                usage,
                text,
                ..
            } => {
                let body = ChatCompletion {
                    id: meta.id,
                    object: "chat.completion",
                    created: meta.created,
                    model: meta.model,
                    choices: vec![Choice {
                        index: 0,
                        message: AssistantMessage {
                            role: "assistant",
                            content: text,
                        },
                        finish_reason: finish.as_str(),
                        logprobs: want_logprobs.then_some(Logprobs { content: logprobs }),
                    }],
                    usage: usage.into(),
                };
                return Ok(Json(body).into_response());
            }
            Event::Failed(e) => return Err(e.into()),
        }
    }
}

/// The chunks of a streamed answer: a first chunk with the role, one per text delta, a last
/// one with the finish reason, the usage chunk when asked for, then `[DONE]`.
struct ChunkStream {
    rx: UnboundedReceiver<Event>,
    meta: ResponseMeta,
    options: StreamOptions,
    want_logprobs: bool,
    pending: VecDeque<SseEvent>,
    finished: bool,
}

impl ChunkStream {
    fn new(
        rx: UnboundedReceiver<Event>,
        meta: ResponseMeta,
        options: StreamOptions,
        want_logprobs: bool,
    ) -> Self {
        let mut stream = Self {
            rx,
            meta,
            options,
            want_logprobs,
            pending: VecDeque::new(),
            finished: false,
        };
        let role = stream.choice(
            Delta {
                role: Some("assistant"),
                content: Some(String::new()),
            },
            None,
            None,
        );
        let first = stream.chunk(vec![role], None);
        stream.pending.push_back(first);
        stream
    }

    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>) -> SseEvent {
        let usage = match (self.options.include_usage, usage) {
            (false, _) => UsageField::Absent,
            (true, None) => UsageField::Null(()),
            (true, Some(u)) => UsageField::Usage(UsageBody::from(u)),
        };
        let chunk = ChatChunk {
            id: &self.meta.id,
            object: "chat.completion.chunk",
            created: self.meta.created,
            model: &self.meta.model,
            choices,
            usage,
        };
        json_event(&chunk)
    }

    fn choice(
        &self,
        delta: Delta,
        logprobs: Option<Logprobs>,
        finish: Option<Finish>,
    ) -> ChunkChoice {
        ChunkChoice {
            index: 0,
            delta,
            logprobs,
            finish_reason: finish.map(Finish::as_str),
        }
    }

    /// Turns one engine event into the chunks it produces.
    fn push(&mut self, event: Event) {
        match event {
            Event::Started { .. } => {}
            Event::Delta { text, tokens } => {
                if text.is_empty() && (tokens.is_empty() || !self.want_logprobs) {
                    return;
                }
                let logprobs = self.want_logprobs.then(|| Logprobs {
                    content: tokens.iter().map(TokenLogprob::from).collect(),
                });
                let c = self.choice(
                    Delta {
                        role: None,
                        content: Some(text),
                    },
                    logprobs,
                    None,
                );
                let e = self.chunk(vec![c], None);
                self.pending.push_back(e);
            }
            Event::Done { finish, usage, .. } => {
                let c = self.choice(Delta::default(), None, Some(finish));
                let e = self.chunk(vec![c], None);
                self.pending.push_back(e);
                if self.options.include_usage {
                    let e = self.chunk(vec![], Some(usage));
                    self.pending.push_back(e);
                }
                self.finish();
            }
            Event::Failed(e) => self.fail(e.into()),
        }
    }

    /// A failure after the stream started: an error object as an event, then `[DONE]`.
    fn fail(&mut self, error: ApiError) {
        self.pending.push_back(json_event(&error.body()));
        self.finish();
    }

    fn finish(&mut self) {
        self.pending.push_back(SseEvent::default().data("[DONE]"));
        self.finished = true;
    }

    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.finished {
                return None;
            }
            match self.rx.recv().await {
                Some(event) => self.push(event),
                None => self.fail(ApiError::internal(
                    "the engine stopped without finishing the request",
                )),
            }
        }
    }

    fn into_response(self) -> Response {
        let events = futures_util::stream::unfold(self, |mut s| async move {
            s.next().await.map(|e| (Ok::<_, Infallible>(e), s))
        });
        Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response()
    }
}

fn json_event(value: &impl serde::Serialize) -> SseEvent {
    match serde_json::to_string(value) {
        Ok(s) => SseEvent::default().data(s),
        // Our own types always serialize; keep the stream well-formed regardless.
        Err(e) => SseEvent::default().data(format!(
            "{{\"error\":{{\"message\":\"cannot serialize a chunk: {}\",\"type\":\"server_error\",\"param\":null,\"code\":null}}}}",
            e.to_string().replace('"', "'")
        )),
    }
}
