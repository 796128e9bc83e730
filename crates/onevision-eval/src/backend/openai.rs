//! OpenAI-compatible chat completions over HTTP (onevision serve, vLLM, SGLang): the
//! conversation of [`super`] as one `POST <url>/v1/chat/completions` per document, greedy
//! (`temperature: 0`), media as base64 data URIs, spread over one or more endpoints.
//!
//! The request, as onevision serve's parser (`onevision-server/src/parse/`) accepts it:
//!
//! ```text
//! {"model": NAME, "messages": [
//!    {"role": "system", "content": "You are a helpful assistant."},
//!    {"role": "user", "content": [
//!       {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}, ...   every image
//!       {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,...", "num_frames": 32}},
//!       {"type": "text", "text": TEXT}]}],
//!  "max_tokens": N, "temperature": 0, "top_p": 1, "seed": 0, "stream": false}
//! ```
//!
//! Media:
//! - an image goes as its file's bytes, typed by its magic bytes;
//! - a video file as its bytes, typed by its extension, with `num_frames` [`VIDEO_FRAMES`]
//!   (the server samples them by the same linspace as the in-process path);
//! - a frame folder ([`Visual::Frames`]) cannot be a data URI as it is: its frames are
//!   subsampled here exactly as in-process (`super::frames`), then sent as one lossless
//!   animated PNG (`super::apng`) with `num_frames` = that count, so the server takes every
//!   frame and sees the same pixels. onevision serve (FFmpeg) reads APNG videos; a server that
//!   cannot will fail those documents (counted as failed, with its message).
//!
//! Several endpoints are replicas: each request goes to the live endpoint with the fewest
//! requests in flight (ties in turn). Failures ([`OpenAiOptions`]):
//! - 429, 5xx, a timeout, a dropped connection: retried after an exponential backoff, on
//!   another endpoint when there is one, up to `max_tries` tries; then [`GenError::Doc`];
//! - a connection that cannot be made: retried likewise; an endpoint that failed to connect
//!   `dead_after` times in a row is dead for the rest of the run; with every endpoint dead,
//!   [`GenError::Fatal`] naming them and their last errors;
//! - 400 and the other 4xx: not retried, [`GenError::Doc`] with the server's message;
//!   except 401 (the API key) and 404 (the model name or the route), which no document can
//!   pass, so [`GenError::Fatal`].

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use onevision_processor::video::{load_video, VideoSource};
use onevision_processor::{DecodeLimits, RgbImage};
use serde_json::{json, Value};

use super::frames::load_frames;
use super::{apng, Backend, EvalRequest, GenError, SYSTEM_PROMPT, VIDEO_FRAMES};
use crate::doc::{Prompt, Visual};
use crate::error::Error;

/// The model name when none is given and `GET /v1/models` lists none.
pub const DEFAULT_MODEL: &str = "default";

/// How much of a server's answer an error message quotes.
const QUOTE_CHARS: usize = 300;

/// How requests are sent, retried and given up on.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiOptions {
    /// Requests in flight per endpoint (`--concurrency`).
    pub concurrency_per_endpoint: usize,
    /// The longest one request may take, connection to last byte.
    pub timeout: Duration,
    /// The longest a connection may take to open.
    pub connect_timeout: Duration,
    /// Tries per document for 429, 5xx, timeouts and dropped connections, the first included.
    pub max_tries: usize,
    /// The wait before the first retry; it doubles with each retry, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Failed connection attempts in a row after which an endpoint is dead.
    pub dead_after: usize,
}

impl Default for OpenAiOptions {
    fn default() -> Self {
        Self {
            concurrency_per_endpoint: 1,
            // Long answers on a big model at concurrency > 1 can take minutes.
            timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
            // 0.5, 1 and 2 s between the four tries.
            max_tries: 4,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(4),
            dead_after: 3,
        }
    }
}

/// One replica.
#[derive(Debug, Clone)]
struct Endpoint {
    /// The URL as given, for messages.
    shown: String,
    /// `scheme://host[:port][/prefix]`, without `/v1` and trailing slashes.
    base: String,
}

/// Which endpoints are busy, failing or dead.
#[derive(Debug)]
struct Balance {
    in_flight: Vec<usize>,
    /// Failed connection attempts in a row, per endpoint.
    connect_failures: Vec<usize>,
    dead: Vec<bool>,
    last_error: Vec<Option<String>>,
    /// Where the round-robin among equally busy endpoints goes next.
    next: usize,
}

/// A model behind one or more OpenAI-compatible endpoints.
pub struct OpenAiBackend {
    endpoints: Vec<Endpoint>,
    agent: ureq::Agent,
    api_key: Option<String>,
    model: String,
    options: OpenAiOptions,
    balance: Mutex<Balance>,
}

/// How one try ended, when it did not give text.
enum Failure {
    /// The connection could not be made.
    Connect(String),
    /// The server was reached; the failure may pass (429, 5xx, a timeout, a dropped connection).
    Transient(String),
    /// This document cannot succeed (400, an answer without text).
    Doc(String),
    /// No document can succeed (401, 404, a URL that is not one).
    Fatal(String),
}

impl OpenAiBackend {
    /// Endpoints `urls` (`http://host:port`, with or without a trailing `/v1`), an API key
    /// sent as `Authorization: Bearer`, the model name to ask for (None: the first id of the
    /// first endpoint's `GET /v1/models`, else [`DEFAULT_MODEL`]), and the default
    /// [`OpenAiOptions`] otherwise.
    pub fn new(
        urls: Vec<String>,
        api_key: Option<String>,
        served_model: Option<String>,
        concurrency_per_endpoint: usize,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let options = OpenAiOptions {
            concurrency_per_endpoint,
            timeout,
            ..OpenAiOptions::default()
        };
        Self::with_options(urls, api_key, served_model, options)
    }

    /// [`OpenAiBackend::new`] with every option. Fails on an empty or malformed URL list,
    /// zero concurrency or tries, or (when the model name must be looked up) endpoints of
    /// which none can be reached or one refuses the API key.
    pub fn with_options(
        urls: Vec<String>,
        api_key: Option<String>,
        served_model: Option<String>,
        options: OpenAiOptions,
    ) -> Result<Self, Error> {
        if urls.is_empty() {
            return Err(Error::Usage(
                "no endpoint given; pass --endpoint URL (e.g. http://127.0.0.1:8000)".into(),
            ));
        }
        if options.concurrency_per_endpoint == 0 {
            return Err(Error::Usage("--concurrency must be at least 1".into()));
        }
        if options.max_tries == 0 || options.dead_after == 0 {
            return Err(Error::Usage(
                "the endpoint options need max_tries and dead_after of at least 1".into(),
            ));
        }
        let endpoints = urls
            .iter()
            .map(|u| endpoint(u))
            .collect::<Result<Vec<_>, _>>()?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(options.connect_timeout)
            .timeout(options.timeout)
            .max_idle_connections_per_host(options.concurrency_per_endpoint)
            .user_agent(concat!("onevision-eval/", env!("CARGO_PKG_VERSION")))
            .build();
        let n = endpoints.len();
        let mut backend = Self {
            endpoints,
            agent,
            api_key,
            model: String::new(),
            options,
            balance: Mutex::new(Balance {
                in_flight: vec![0; n],
                connect_failures: vec![0; n],
                dead: vec![false; n],
                last_error: vec![None; n],
                next: 0,
            }),
        };
        backend.model = match served_model {
            Some(name) => name,
            None => backend.listed_model()?,
        };
        Ok(backend)
    }

    /// The model name requests ask for.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The first id `GET /v1/models` lists on the first endpoint that answers; an endpoint
    /// that answers without a list (an error status, another shape) gives [`DEFAULT_MODEL`].
    fn listed_model(&self) -> Result<String, Error> {
        let mut errors = Vec::new();
        for ep in &self.endpoints {
            let url = format!("{}/v1/models", ep.base);
            let mut req = self.agent.get(&url);
            if let Some(key) = &self.api_key {
                req = req.set("Authorization", &format!("Bearer {key}"));
            }
            match req.call() {
                Ok(resp) => {
                    let body: Option<Value> = resp.into_json().ok();
                    let id = body
                        .as_ref()
                        .and_then(|b| b.pointer("/data/0/id"))
                        .and_then(Value::as_str);
                    return Ok(id.unwrap_or(DEFAULT_MODEL).to_string());
                }
                Err(ureq::Error::Status(401, resp)) => {
                    return Err(Error::Backend(format!(
                        "{} refused the API key (HTTP 401: {}); pass the server's key with \
                         --api-key",
                        ep.shown,
                        error_message(&resp.into_string().unwrap_or_default())
                    )))
                }
                Err(ureq::Error::Status(..)) => return Ok(DEFAULT_MODEL.to_string()),
                Err(ureq::Error::Transport(t)) => errors.push(format!("{}: {t}", ep.shown)),
            }
        }
        Err(Error::Backend(format!(
            "cannot reach any endpoint to list its models ({}); is the server running?",
            errors.join("; ")
        )))
    }

    /// The chat-completions body of a document (the media read and encoded).
    fn body(&self, request: &EvalRequest) -> Result<String, GenError> {
        let body = json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": content(request.prompt)?},
            ],
            "max_tokens": request.max_new_tokens,
            "temperature": 0,
            "top_p": 1,
            "seed": 0,
            "stream": false,
        });
        Ok(body.to_string())
    }

    /// Takes the least busy live endpoint (ties in turn), not `avoid` when another is live.
    /// None when every endpoint is dead.
    fn acquire(&self, avoid: Option<usize>) -> Option<usize> {
        let mut b = self.lock();
        let n = self.endpoints.len();
        let live = |i: usize| !b.dead[i];
        let others = (0..n).any(|i| live(i) && Some(i) != avoid);
        let chosen = (0..n)
            .map(|k| (b.next + k) % n)
            .filter(|&i| live(i) && (!others || Some(i) != avoid))
            .min_by_key(|&i| b.in_flight[i])?;
        b.in_flight[chosen] += 1;
        b.next = (chosen + 1) % n;
        Some(chosen)
    }

    /// The end of a try on endpoint `i`: not in flight any more, and what it says about the
    /// endpoint. Returns true when every endpoint is now dead.
    fn release(&self, i: usize, outcome: Option<&Failure>) -> bool {
        let mut b = self.lock();
        b.in_flight[i] = b.in_flight[i].saturating_sub(1);
        match outcome {
            Some(Failure::Connect(msg)) => {
                b.connect_failures[i] += 1;
                b.last_error[i] = Some(msg.clone());
                if b.connect_failures[i] >= self.options.dead_after {
                    b.dead[i] = true;
                }
            }
            // The server answered (or at least accepted the connection).
            _ => b.connect_failures[i] = 0,
        }
        b.dead.iter().all(|&d| d)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Balance> {
        // The state stays consistent at every unlock; a panic elsewhere does not spoil it.
        self.balance.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every endpoint is dead: which, and why.
    fn all_dead(&self) -> GenError {
        let b = self.lock();
        let list: Vec<String> = self
            .endpoints
            .iter()
            .zip(&b.last_error)
            .map(|(ep, e)| match e {
                Some(e) => format!("{} ({e})", ep.shown),
                None => ep.shown.clone(),
            })
            .collect();
        GenError::Fatal(format!(
            "no endpoint can be reached: {}; is the server running?",
            list.join(", ")
        ))
    }

    fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(30));
        self.options
            .first_backoff
            .saturating_mul(factor)
            .min(self.options.max_backoff)
    }

    /// One try on endpoint `i`.
    fn post(&self, i: usize, body: &str) -> Result<String, Failure> {
        let ep = &self.endpoints[i];
        let url = format!("{}/v1/chat/completions", ep.base);
        let mut req = self
            .agent
            .post(&url)
            .set("Content-Type", "application/json");
        if let Some(key) = &self.api_key {
            req = req.set("Authorization", &format!("Bearer {key}"));
        }
        let resp = match req.send_bytes(body.as_bytes()) {
            Ok(resp) => resp,
            Err(ureq::Error::Status(_, resp)) => resp,
            Err(ureq::Error::Transport(t)) => return Err(transport_failure(&ep.shown, &t)),
        };
        let status = resp.status();
        let text = match resp.into_string() {
            Ok(t) => t,
            Err(e) => {
                let what = if is_timeout(&e) {
                    format!("no complete answer within {:?}", self.options.timeout)
                } else {
                    format!("reading the answer failed: {e}")
                };
                return Err(Failure::Transient(format!("{}: {what}", ep.shown)));
            }
        };
        match status {
            200..=299 => answer_text(&text).map_err(|e| Failure::Doc(format!("{}: {e}", ep.shown))),
            429 | 500..=599 => Err(Failure::Transient(format!(
                "{} answered HTTP {status}: {}",
                ep.shown,
                error_message(&text)
            ))),
            401 => Err(Failure::Fatal(format!(
                "{} refused the API key (HTTP 401: {}); pass the server's key with --api-key",
                ep.shown,
                error_message(&text)
            ))),
            404 => Err(Failure::Fatal(format!(
                "{} answered HTTP 404 for model `{}` at {url}: {}; check --endpoint and \
                 --served-model (GET /v1/models lists the names)",
                ep.shown,
                self.model,
                error_message(&text)
            ))),
            _ => Err(Failure::Doc(format!(
                "{} answered HTTP {status}: {}",
                ep.shown,
                error_message(&text)
            ))),
        }
    }
}

impl Backend for OpenAiBackend {
    fn generate(&self, request: &EvalRequest) -> Result<String, GenError> {
        let body = self.body(request)?;
        // Connection failures are bounded by the endpoints dying; the cap only stops a request
        // that keeps failing to connect while other requests keep the endpoints alive.
        let cap = self.options.max_tries + self.endpoints.len() * self.options.dead_after;
        let mut transient = 0;
        let mut avoid = None;
        let mut last = String::new();
        let mut tries = 0;
        for attempt in 0..cap {
            if attempt > 0 {
                std::thread::sleep(self.backoff(attempt as u32 - 1));
            }
            let Some(i) = self.acquire(avoid) else {
                return Err(self.all_dead());
            };
            tries += 1;
            let outcome = self.post(i, &body);
            let all_dead = self.release(i, outcome.as_ref().err());
            match outcome {
                Ok(text) => return Ok(text),
                Err(Failure::Doc(msg)) => return Err(GenError::Doc(msg)),
                Err(Failure::Fatal(msg)) => return Err(GenError::Fatal(msg)),
                Err(Failure::Connect(msg)) => {
                    if all_dead {
                        return Err(self.all_dead());
                    }
                    last = msg;
                }
                Err(Failure::Transient(msg)) => {
                    transient += 1;
                    last = msg;
                    if transient >= self.options.max_tries {
                        break;
                    }
                }
            }
            avoid = Some(i);
        }
        Err(GenError::Doc(format!(
            "the request failed after {tries} tries; the last: {last}"
        )))
    }

    fn concurrency(&self) -> usize {
        self.options.concurrency_per_endpoint * self.endpoints.len()
    }

    fn describe(&self) -> Value {
        let urls: Vec<&str> = self.endpoints.iter().map(|e| e.base.as_str()).collect();
        json!({
            "model": "openai_compatible",
            "model_args": format!("model_version={},base_url={}", self.model, urls.join("|")),
        })
    }
}

/// A URL as given -> an endpoint. `host:port` means `http://host:port`.
fn endpoint(url: &str) -> Result<Endpoint, Error> {
    let given = url.trim();
    let with_scheme = if given.contains("://") {
        given.to_string()
    } else {
        format!("http://{given}")
    };
    let (scheme, rest) = with_scheme.split_once("://").unwrap_or(("", ""));
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(Error::Usage(format!(
            "--endpoint {given}: expected an http:// or https:// URL such as http://127.0.0.1:8000"
        )));
    }
    let mut path = rest.trim_end_matches('/');
    if let Some(p) = path.strip_suffix("/v1") {
        path = p.trim_end_matches('/');
    }
    if path.is_empty() || path.starts_with('/') {
        return Err(Error::Usage(format!(
            "--endpoint {given}: the URL has no host; expected e.g. http://127.0.0.1:8000"
        )));
    }
    Ok(Endpoint {
        shown: given.to_string(),
        base: format!("{scheme}://{path}"),
    })
}

/// The user message's content parts: every image, or the video, then the text.
fn content(prompt: &Prompt) -> Result<Vec<Value>, GenError> {
    let mut parts = Vec::new();
    match &prompt.visual {
        Visual::None => {}
        Visual::Images(images) => {
            for img in images {
                parts.push(json!({
                    "type": "image_url",
                    "image_url": {"url": data_uri(image_mime(&img.bytes), &img.bytes)},
                }));
            }
        }
        Visual::Video(path) if path.is_dir() => {
            // A frame folder: every frame up to VIDEO_FRAMES (as the in-process backend's
            // processor takes them), sent as one animated PNG.
            let frames = load_video(
                VideoSource::Path(path),
                VIDEO_FRAMES,
                &DecodeLimits::default(),
            )
            .map_err(|e| GenError::Doc(e.to_string()))?
            .frames;
            parts.push(apng_part(&frames)?);
        }
        Visual::Video(path) => {
            let bytes = read_video(path)?;
            parts.push(json!({
                "type": "video_url",
                "video_url": {"url": data_uri(&video_mime(path), &bytes), "num_frames": VIDEO_FRAMES},
            }));
        }
        Visual::Frames(paths) => {
            let frames = load_frames(paths, VIDEO_FRAMES, &DecodeLimits::default())?;
            parts.push(apng_part(&frames)?);
        }
    }
    parts.push(json!({"type": "text", "text": prompt.text}));
    Ok(parts)
}

/// Decoded frames as one `video_url` part: an animated PNG, every frame sent.
fn apng_part(frames: &[RgbImage]) -> Result<Value, GenError> {
    let bytes = apng::encode(frames)
        .map_err(|e| GenError::Doc(format!("encoding the frames as one animated PNG: {e}")))?;
    Ok(json!({
        "type": "video_url",
        "video_url": {"url": data_uri("video/apng", &bytes), "num_frames": frames.len()},
    }))
}

fn read_video(path: &Path) -> Result<Vec<u8>, GenError> {
    std::fs::read(path)
        .map_err(|e| GenError::Doc(format!("cannot read video {}: {e}", path.display())))
}

fn data_uri(mime: &str, bytes: &[u8]) -> String {
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The MIME type of an image file, from its first bytes.
pub fn image_mime(bytes: &[u8]) -> &'static str {
    match bytes {
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => "image/png",
        [0xFF, 0xD8, 0xFF, ..] => "image/jpeg",
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => "image/gif",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => "image/webp",
        [b'B', b'M', ..] => "image/bmp",
        [b'I', b'I', 0x2A, 0x00, ..] | [b'M', b'M', 0x00, 0x2A, ..] => "image/tiff",
        _ => "application/octet-stream",
    }
}

/// The MIME type of a video file, from its extension (`video/<ext>` for one not listed,
/// `application/octet-stream` without one).
pub fn video_mime(path: &Path) -> String {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
        return "application/octet-stream".into();
    };
    let ext = ext.to_ascii_lowercase();
    let known = match ext.as_str() {
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "mkv" => "video/x-matroska",
        "mov" => "video/quicktime",
        "avi" => "video/x-msvideo",
        "gif" => "image/gif",
        "mpg" | "mpeg" => "video/mpeg",
        "ts" => "video/mp2t",
        "ogv" => "video/ogg",
        "flv" => "video/x-flv",
        "wmv" => "video/x-ms-wmv",
        "3gp" => "video/3gpp",
        _ if !ext.is_empty() && ext.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            return format!("video/{ext}")
        }
        _ => "application/octet-stream",
    };
    known.into()
}

/// `choices[0].message.content` of a chat completion: the string, "" for null.
fn answer_text(body: &str) -> Result<String, String> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| format!("the answer is not JSON ({e}): {}", quote(body)))?;
    match value.pointer("/choices/0/message/content") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Null) => Ok(String::new()),
        Some(other) => Err(format!(
            "choices[0].message.content should be a string, got {}",
            quote(&other.to_string())
        )),
        None => Err(format!(
            "the answer has no choices[0].message.content: {}",
            quote(body)
        )),
    }
}

/// The message of an error body: OpenAI's `error.message`, a bare `error` string,
/// `message`, FastAPI's `detail`; else the body itself, shortened.
fn error_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        let found = [
            v.pointer("/error/message"),
            v.get("error"),
            v.get("message"),
            v.get("detail"),
        ]
        .into_iter()
        .flatten()
        .find_map(|m| match m {
            Value::String(s) => Some(s.clone()),
            Value::Null | Value::Object(_) => None,
            other => Some(other.to_string()),
        });
        if let Some(m) = found {
            return quote(&m);
        }
    }
    if body.trim().is_empty() {
        "(empty body)".into()
    } else {
        quote(body.trim())
    }
}

/// At most [`QUOTE_CHARS`] characters of `s`.
fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_CHARS) {
        Some((i, _)) => format!("{}... ({} bytes in all)", &s[..i], s.len()),
        None => s.to_string(),
    }
}

fn transport_failure(shown: &str, t: &ureq::Transport) -> Failure {
    use ureq::ErrorKind as K;
    let msg = format!("{shown}: {t}");
    match t.kind() {
        K::Dns | K::ConnectionFailed | K::ProxyConnect => Failure::Connect(msg),
        K::InvalidUrl | K::UnknownScheme | K::InsecureRequestHttpsOnly | K::InvalidProxyUrl => {
            Failure::Fatal(msg)
        }
        _ => {
            let timed_out = std::error::Error::source(t)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .is_some_and(is_timeout);
            if timed_out {
                Failure::Transient(format!("{shown}: no answer in time ({t})"))
            } else {
                Failure::Transient(msg)
            }
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls() {
        let base = |u: &str| endpoint(u).map(|e| e.base).map_err(|e| e.to_string());
        assert_eq!(
            base("http://127.0.0.1:8000").unwrap(),
            "http://127.0.0.1:8000"
        );
        assert_eq!(
            base("http://127.0.0.1:8000/").unwrap(),
            "http://127.0.0.1:8000"
        );
        assert_eq!(
            base("http://127.0.0.1:8000/v1").unwrap(),
            "http://127.0.0.1:8000"
        );
        assert_eq!(
            base("http://127.0.0.1:8000/v1/").unwrap(),
            "http://127.0.0.1:8000"
        );
        assert_eq!(base("HTTPS://h/api/v1").unwrap(), "https://h/api");
        assert_eq!(base("localhost:9000").unwrap(), "http://localhost:9000");
        assert!(base("ftp://h").unwrap_err().contains("http://"));
        assert!(base("http://").unwrap_err().contains("no host"));
    }

    #[test]
    fn image_types_from_magic_bytes() {
        assert_eq!(image_mime(b"\x89PNG\r\n\x1a\n...."), "image/png");
        assert_eq!(image_mime(b"\xff\xd8\xff\xe0"), "image/jpeg");
        assert_eq!(image_mime(b"GIF89a.."), "image/gif");
        assert_eq!(image_mime(b"GIF87a.."), "image/gif");
        assert_eq!(image_mime(b"RIFF\x10\0\0\0WEBPVP8 "), "image/webp");
        assert_eq!(
            image_mime(b"RIFF\x10\0\0\0AVI LIST"),
            "application/octet-stream"
        );
        assert_eq!(image_mime(b"BM6\0"), "image/bmp");
        assert_eq!(image_mime(b"II*\0...."), "image/tiff");
        assert_eq!(image_mime(b"MM\0*...."), "image/tiff");
        assert_eq!(image_mime(b""), "application/octet-stream");
        assert_eq!(image_mime(b"hello"), "application/octet-stream");
    }

    #[test]
    fn video_types_from_extensions() {
        assert_eq!(video_mime(Path::new("a/b.MP4")), "video/mp4");
        assert_eq!(video_mime(Path::new("clip.webm")), "video/webm");
        assert_eq!(video_mime(Path::new("x.mkv")), "video/x-matroska");
        assert_eq!(video_mime(Path::new("x.gif")), "image/gif");
        assert_eq!(video_mime(Path::new("x.xyz")), "video/xyz");
        assert_eq!(video_mime(Path::new("noext")), "application/octet-stream");
    }

    #[test]
    fn answers_and_error_bodies() {
        let ok = r#"{"choices":[{"message":{"role":"assistant","content":"B"}}]}"#;
        assert_eq!(answer_text(ok).unwrap(), "B");
        let null = r#"{"choices":[{"message":{"role":"assistant","content":null}}]}"#;
        assert_eq!(answer_text(null).unwrap(), "");
        let err = answer_text(r#"{"object":"list"}"#).unwrap_err();
        assert!(
            err.contains("choices[0].message.content") && err.contains("list"),
            "{err}"
        );
        assert!(answer_text("<html>").unwrap_err().contains("not JSON"));
        let long = "x".repeat(5000);
        assert!(answer_text(&long).unwrap_err().len() < 500);

        assert_eq!(
            error_message(r#"{"error":{"message":"bad image","type":"invalid_request_error"}}"#),
            "bad image"
        );
        assert_eq!(error_message(r#"{"error":"overloaded"}"#), "overloaded");
        assert_eq!(error_message(r#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(error_message("Bad Gateway"), "Bad Gateway");
        assert_eq!(error_message(""), "(empty body)");
    }
}
