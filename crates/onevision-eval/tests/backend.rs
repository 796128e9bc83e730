//! The two backends: the OpenAI client against a scripted HTTP server on 127.0.0.1 (the
//! request's shape, retries, timeouts, errors, replicas, dead endpoints), the in-process
//! backend on the tiny fixture checkpoint, and both against `onevision serve`'s router run
//! in-process: the same answer, string for string, for every kind of prompt.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use onevision_eval::backend::local::LocalBackend;
use onevision_eval::backend::openai::{OpenAiBackend, OpenAiOptions};
use onevision_eval::backend::{Backend, EvalRequest, GenError, SYSTEM_PROMPT, VIDEO_FRAMES};
use onevision_eval::doc::{EncodedImage, Prompt, Visual};
use onevision_nn::dtype::ComputeDType;
use serde_json::{json, Value};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn checkpoint() -> PathBuf {
    fixtures().join("models/tied/checkpoint")
}

fn photo(name: &str) -> EncodedImage {
    let path = fixtures().join("images/photos").join(name);
    EncodedImage {
        bytes: std::fs::read(&path).expect("fixture photo"),
        path: Some(name.into()),
    }
}

fn frame_paths() -> Vec<PathBuf> {
    let dir = fixtures().join("video/frames");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("frames dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    paths.sort();
    paths
}

fn prompt(text: &str, visual: Visual) -> Prompt {
    Prompt {
        text: text.into(),
        visual,
    }
}

fn ask<'a>(prompt: &'a Prompt, max_new_tokens: usize) -> EvalRequest<'a> {
    EvalRequest {
        prompt,
        max_new_tokens,
    }
}

// ---------------------------------------------------------------- a scripted HTTP server

/// One request the mock received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    /// Header names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the request body is JSON")
    }
}

/// What the mock answers: after `delay`, `status` with `body`.
struct Reply {
    delay: Duration,
    status: u16,
    body: String,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        delay: Duration::ZERO,
        status,
        body: body.to_string(),
    }
}

fn answer(text: &str) -> Reply {
    reply(
        200,
        json!({"id": "x", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}),
    )
}

type Script = dyn Fn(usize, &Received) -> Reply + Send + Sync;

/// A server on 127.0.0.1:<free port>; `script(n, request)` answers the n-th (0-based) request.
/// Each connection serves one request (`Connection: close`).
struct Mock {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Mock {
    fn start(script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let count = Arc::new(AtomicUsize::new(0));
        let log = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (script, log, count) = (script.clone(), log.clone(), count.clone());
                std::thread::spawn(move || serve_one(stream, &*script, &log, &count));
            }
        });
        Self {
            url: format!("http://{addr}"),
            received,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }

    fn chat_requests(&self) -> usize {
        self.received()
            .iter()
            .filter(|r| r.path == "/v1/chat/completions")
            .count()
    }
}

fn serve_one(
    mut stream: TcpStream,
    script: &Script,
    log: &Mutex<Vec<Received>>,
    count: &AtomicUsize,
) {
    let Some(req) = read_request(&mut stream) else {
        return;
    };
    let n = count.fetch_add(1, Ordering::SeqCst);
    log.lock().expect("log").push(req.clone());
    let r = script(n, &req);
    std::thread::sleep(r.delay);
    let head = format!(
        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        r.body.len()
    );
    // The client may have given up (the timeout test): nothing to do about it.
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(r.body.as_bytes());
    let _ = stream.flush();
}

fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}

/// A URL nothing listens on (a port bound, then released).
fn refused_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr: SocketAddr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}")
}

/// Options that keep the tests fast: millisecond backoffs, a short timeout.
fn fast(concurrency: usize) -> OpenAiOptions {
    OpenAiOptions {
        concurrency_per_endpoint: concurrency,
        timeout: Duration::from_millis(1500),
        connect_timeout: Duration::from_millis(500),
        max_tries: 4,
        first_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        dead_after: 3,
    }
}

fn client(urls: Vec<String>, options: OpenAiOptions) -> OpenAiBackend {
    OpenAiBackend::with_options(urls, None, Some("m".into()), options).expect("backend")
}

fn decode_data_uri(uri: &str) -> (String, Vec<u8>) {
    let rest = uri.strip_prefix("data:").expect("a data URI");
    let (mime, data) = rest.split_once(";base64,").expect("base64 data URI");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("valid base64");
    (mime.to_string(), bytes)
}

// ---------------------------------------------------------------- the request

#[test]
fn request_body_has_the_protocol_shape() {
    let mock = Mock::start(|_, _| answer("B. cat"));
    let backend = OpenAiBackend::with_options(
        vec![format!("{}/v1/", mock.url)],
        Some("sk-test".into()),
        Some("served".into()),
        fast(1),
    )
    .expect("backend");
    let images = vec![photo("rocket.jpg"), photo("text.png")];
    let p = prompt("Which one?\nA. cat\nB. dog", Visual::Images(images.clone()));
    assert_eq!(backend.generate(&ask(&p, 16)), Ok("B. cat".into()));

    let got = mock.received();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(req.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    let body = req.json();
    assert_eq!(body["model"], "served");
    assert_eq!(body["max_tokens"], 16);
    assert_eq!(body["temperature"], 0);
    assert_eq!(body["top_p"], 1);
    assert_eq!(body["seed"], 0);
    assert_eq!(body["stream"], false);
    let messages = body["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[0],
        json!({"role": "system", "content": SYSTEM_PROMPT})
    );
    assert_eq!(messages[1]["role"], "user");
    let parts = messages[1]["content"].as_array().expect("content parts");
    assert_eq!(parts.len(), 3);
    for (part, (img, mime)) in parts
        .iter()
        .zip(images.iter().zip(["image/jpeg", "image/png"]))
    {
        assert_eq!(part["type"], "image_url");
        let (got_mime, bytes) = decode_data_uri(part["image_url"]["url"].as_str().expect("url"));
        assert_eq!(got_mime, mime);
        assert!(
            bytes == img.bytes,
            "the image bytes go as they are, in order"
        );
    }
    assert_eq!(
        parts[2],
        json!({"type": "text", "text": "Which one?\nA. cat\nB. dog"})
    );

    // A video: one video_url part with 32 frames, before the text.
    let video = fixtures().join("video/clip_h264.mp4");
    let p = prompt("What happens?", Visual::Video(video.clone()));
    assert_eq!(backend.generate(&ask(&p, 5)), Ok("B. cat".into()));
    let body = mock.received()[1].json();
    let parts = body["messages"][1]["content"]
        .as_array()
        .expect("parts")
        .clone();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["type"], "video_url");
    assert_eq!(parts[0]["video_url"]["num_frames"], VIDEO_FRAMES);
    let (mime, bytes) = decode_data_uri(parts[0]["video_url"]["url"].as_str().expect("url"));
    assert_eq!(mime, "video/mp4");
    assert!(bytes == std::fs::read(&video).expect("video"));
    assert_eq!(parts[1]["text"], "What happens?");

    // Frames: one lossless APNG of the 32 linspace-sampled frames (10 files: repeats).
    let p = prompt("And here?", Visual::Frames(frame_paths()));
    assert_eq!(backend.generate(&ask(&p, 5)), Ok("B. cat".into()));
    let body = mock.received()[2].json();
    let part = &body["messages"][1]["content"][0];
    assert_eq!(part["video_url"]["num_frames"], 32);
    let (mime, bytes) = decode_data_uri(part["video_url"]["url"].as_str().expect("url"));
    assert_eq!(mime, "video/apng");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");

    // Text only: the text part alone.
    let p = prompt("Hello", Visual::None);
    backend.generate(&ask(&p, 3)).expect("text only");
    let body = mock.received()[3].json();
    assert_eq!(
        body["messages"][1]["content"],
        json!([{"type": "text", "text": "Hello"}])
    );

    assert_eq!(backend.concurrency(), 1);
    let d = backend.describe();
    assert_eq!(d["model"], "openai_compatible");
    assert!(d["model_args"].as_str().expect("args").contains(&mock.url));
}

#[test]
fn the_model_name_defaults_to_the_first_listed() {
    let mock = Mock::start(|_, r| match r.path.as_str() {
        "/v1/models" => reply(
            200,
            json!({"object": "list", "data": [{"id": "llava-ov", "object": "model"}, {"id": "other"}]}),
        ),
        _ => answer("ok"),
    });
    let backend =
        OpenAiBackend::with_options(vec![mock.url.clone()], None, None, fast(1)).expect("backend");
    assert_eq!(backend.model(), "llava-ov");
    let p = prompt("Hi", Visual::None);
    backend.generate(&ask(&p, 2)).expect("answer");
    assert_eq!(mock.received()[1].json()["model"], "llava-ov");

    // A server that lists nothing: "default".
    let bare = Mock::start(|_, r| match r.path.as_str() {
        "/v1/models" => reply(404, json!({"detail": "Not Found"})),
        _ => answer("ok"),
    });
    let backend =
        OpenAiBackend::with_options(vec![bare.url.clone()], None, None, fast(1)).expect("backend");
    assert_eq!(backend.model(), "default");

    // Nothing to ask: an error that names the URL.
    let url = refused_url();
    let err = OpenAiBackend::with_options(vec![url.clone()], None, None, fast(1))
        .err()
        .expect("unreachable");
    let msg = err.to_string();
    assert!(
        msg.contains(&url) && msg.contains("is the server running?"),
        "{msg}"
    );
}

#[test]
fn answers_null_and_missing_content() {
    let mock = Mock::start(|n, _| match n {
        0 => reply(
            200,
            json!({"choices": [{"message": {"role": "assistant", "content": null}}]}),
        ),
        _ => reply(200, json!({"object": "error", "oops": "no choices here"})),
    });
    let backend = client(vec![mock.url.clone()], fast(1));
    let p = prompt("Hi", Visual::None);
    assert_eq!(backend.generate(&ask(&p, 2)), Ok(String::new()));
    match backend.generate(&ask(&p, 2)) {
        Err(GenError::Doc(msg)) => {
            assert!(msg.contains("choices[0].message.content"), "{msg}");
            assert!(
                msg.contains("no choices here"),
                "names what the server sent: {msg}"
            );
        }
        other => panic!("expected a Doc error, got {other:?}"),
    }
    assert_eq!(mock.chat_requests(), 2, "a malformed answer is not retried");
}

// ---------------------------------------------------------------- failures

#[test]
fn a_500_then_200_is_retried() {
    let mock = Mock::start(|n, _| match n {
        0 => reply(500, json!({"error": {"message": "engine hiccup"}})),
        _ => answer("fine"),
    });
    let backend = client(vec![mock.url.clone()], fast(1));
    let p = prompt("Hi", Visual::None);
    assert_eq!(backend.generate(&ask(&p, 2)), Ok("fine".into()));
    assert_eq!(mock.chat_requests(), 2);
}

#[test]
fn a_429_is_retried() {
    let mock = Mock::start(|n, _| match n {
        0 | 1 => reply(429, json!({"error": {"message": "queue full"}})),
        _ => answer("fine"),
    });
    let backend = client(vec![mock.url.clone()], fast(1));
    let p = prompt("Hi", Visual::None);
    assert_eq!(backend.generate(&ask(&p, 2)), Ok("fine".into()));
    assert_eq!(mock.chat_requests(), 3);
}

#[test]
fn always_500_fails_the_document_after_the_tries() {
    let mock = Mock::start(|_, _| reply(503, json!({"error": {"message": "overloaded"}})));
    let backend = client(vec![mock.url.clone()], fast(1));
    let p = prompt("Hi", Visual::None);
    match backend.generate(&ask(&p, 2)) {
        Err(GenError::Doc(msg)) => {
            assert!(msg.contains("4 tries") && msg.contains("503"), "{msg}");
            assert!(msg.contains("overloaded"), "{msg}");
        }
        other => panic!("expected a Doc error, got {other:?}"),
    }
    assert_eq!(mock.chat_requests(), 4);
    // The endpoint answered, so it is not dead: the next document is tried again.
    assert!(matches!(
        backend.generate(&ask(&p, 2)),
        Err(GenError::Doc(_))
    ));
    assert_eq!(mock.chat_requests(), 8);
}

#[test]
fn a_400_is_not_retried_and_keeps_the_message() {
    let mock = Mock::start(|_, _| {
        reply(
            400,
            json!({"error": {"message": "cannot decode image messages[1].content[0].image_url: bad bytes",
                             "type": "invalid_request_error", "param": "messages[1].content[0].image_url", "code": null}}),
        )
    });
    let backend = client(vec![mock.url.clone()], fast(1));
    let p = prompt(
        "Hi",
        Visual::Images(vec![EncodedImage {
            bytes: b"not an image".to_vec(),
            path: None,
        }]),
    );
    match backend.generate(&ask(&p, 2)) {
        Err(GenError::Doc(msg)) => {
            assert!(msg.contains("400"), "{msg}");
            assert!(
                msg.contains("cannot decode image messages[1].content[0].image_url: bad bytes"),
                "{msg}"
            );
        }
        other => panic!("expected a Doc error, got {other:?}"),
    }
    assert_eq!(mock.chat_requests(), 1);
    let body = mock.received()[0].json();
    let (mime, _) = decode_data_uri(
        body["messages"][1]["content"][0]["image_url"]["url"]
            .as_str()
            .expect("url"),
    );
    assert_eq!(mime, "application/octet-stream", "unknown magic bytes");
}

#[test]
fn a_401_stops_the_run() {
    let mock = Mock::start(|_, _| reply(401, json!({"error": {"message": "invalid API key"}})));
    let backend = client(vec![mock.url.clone()], fast(1));
    let p = prompt("Hi", Visual::None);
    match backend.generate(&ask(&p, 2)) {
        Err(GenError::Fatal(msg)) => {
            assert!(
                msg.contains("invalid API key") && msg.contains("--api-key"),
                "{msg}"
            )
        }
        other => panic!("expected a Fatal error, got {other:?}"),
    }
    assert_eq!(mock.chat_requests(), 1);
}

#[test]
fn a_slow_answer_times_out_and_is_retried() {
    let mock = Mock::start(|n, _| {
        let mut r = answer(if n == 0 { "late" } else { "on time" });
        if n == 0 {
            r.delay = Duration::from_millis(1500);
        }
        r
    });
    let options = OpenAiOptions {
        timeout: Duration::from_millis(300),
        ..fast(1)
    };
    let backend = client(vec![mock.url.clone()], options);
    let p = prompt("Hi", Visual::None);
    assert_eq!(backend.generate(&ask(&p, 2)), Ok("on time".into()));
    assert_eq!(mock.chat_requests(), 2);
}

#[test]
fn nothing_listening_anywhere_is_fatal() {
    let urls = vec![refused_url(), refused_url()];
    let backend = client(urls.clone(), fast(2));
    let p = prompt("Hi", Visual::None);
    match backend.generate(&ask(&p, 2)) {
        Err(GenError::Fatal(msg)) => {
            for u in &urls {
                assert!(msg.contains(u.as_str()), "names {u}: {msg}");
            }
            assert!(msg.contains("is the server running?"), "{msg}");
        }
        other => panic!("expected a Fatal error, got {other:?}"),
    }
    // Dead stays dead: the next document fails at once.
    assert!(matches!(
        backend.generate(&ask(&p, 2)),
        Err(GenError::Fatal(_))
    ));
    assert_eq!(backend.concurrency(), 4);
}

/// Runs `n` documents on `threads` threads at once; every answer.
fn run_parallel(
    backend: &OpenAiBackend,
    n: usize,
    threads: usize,
) -> Vec<Result<String, GenError>> {
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let p = prompt(&format!("doc {i}"), Visual::None);
                let r = backend.generate(&ask(&p, 2));
                out.lock().expect("out").push(r);
            });
        }
    });
    out.into_inner().expect("out")
}

#[test]
fn a_dead_replica_leaves_the_work_to_the_live_one() {
    let live = Mock::start(|_, _| {
        let mut r = answer("ok");
        r.delay = Duration::from_millis(10);
        r
    });
    let backend = client(vec![refused_url(), live.url.clone()], fast(2));
    let results = run_parallel(&backend, 12, backend.concurrency());
    assert_eq!(results.len(), 12);
    for r in &results {
        assert_eq!(r, &Ok("ok".to_string()));
    }
    assert_eq!(live.chat_requests(), 12);
}

#[test]
fn live_replicas_share_the_documents() {
    let slow = |_: usize, _: &Received| {
        let mut r = answer("ok");
        r.delay = Duration::from_millis(100);
        r
    };
    let (a, b) = (Mock::start(slow), Mock::start(slow));
    let backend = client(vec![a.url.clone(), b.url.clone()], fast(2));
    assert_eq!(backend.concurrency(), 4);
    let results = run_parallel(&backend, 16, 4);
    assert!(results.iter().all(|r| r == &Ok("ok".to_string())));
    let (na, nb) = (a.chat_requests(), b.chat_requests());
    assert_eq!(na + nb, 16);
    assert!(na >= 6 && nb >= 6, "spread {na} / {nb}");
}

#[test]
fn unreadable_media_fail_before_sending() {
    let mock = Mock::start(|_, _| answer("never"));
    let backend = client(vec![mock.url.clone()], fast(1));
    let p = prompt("Hi", Visual::Video(PathBuf::from("/nonexistent/clip.mp4")));
    assert!(
        matches!(backend.generate(&ask(&p, 2)), Err(GenError::Doc(m)) if m.contains("/nonexistent/clip.mp4"))
    );
    let p = prompt(
        "Hi",
        Visual::Frames(vec![PathBuf::from("/nonexistent/f0.png")]),
    );
    assert!(matches!(backend.generate(&ask(&p, 2)), Err(GenError::Doc(m)) if m.contains("f0.png")));
    assert_eq!(mock.chat_requests(), 0);
}

// ---------------------------------------------------------------- in-process

#[test]
fn local_backend_is_deterministic_and_fails_documents_not_runs() {
    let backend = LocalBackend::load(&checkpoint(), ComputeDType::F32).expect("loads");
    assert_eq!(backend.concurrency(), 1);
    let d = backend.describe();
    assert_eq!(d["model"], "onevision");
    assert_eq!(
        d["model_args"],
        format!("pretrained={},dtype=f32", checkpoint().display())
    );

    let p = prompt(
        "What is in the picture?",
        Visual::Images(vec![photo("chelsea.png")]),
    );
    let first = backend.generate(&ask(&p, 8)).expect("an answer");
    let second = backend.generate(&ask(&p, 8)).expect("an answer");
    assert_eq!(first, second);

    let bad = prompt(
        "What is in the picture?",
        Visual::Images(vec![EncodedImage {
            bytes: b"\x89PNG\r\n\x1a\ntruncated".to_vec(),
            path: Some("broken.png".into()),
        }]),
    );
    match backend.generate(&ask(&bad, 8)) {
        Err(GenError::Doc(msg)) => assert!(msg.contains("broken.png"), "{msg}"),
        other => panic!("expected a Doc error, got {other:?}"),
    }
    // A prompt over the context (32768 tokens) is the document's failure too.
    match backend.generate(&ask(&p, 40_000)) {
        Err(GenError::Doc(msg)) => assert!(msg.contains("context"), "{msg}"),
        other => panic!("expected a Doc error, got {other:?}"),
    }
    // And the backend still works.
    assert_eq!(backend.generate(&ask(&p, 8)).expect("an answer"), first);
}

// ---------------------------------------------------------------- both against onevision serve

/// `onevision serve`'s router on 127.0.0.1:<free port>, on its own runtime, as its tests start it.
struct Served {
    url: String,
    runtime: tokio::runtime::Runtime,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    engine: Option<onevision_engine::EngineThread>,
}

impl Served {
    fn start() -> Self {
        let (pipeline, _) = onevision_engine::Pipeline::load(
            &checkpoint(),
            ComputeDType::F32,
            &candle_core::Device::Cpu,
        )
        .expect("the fixture checkpoint loads");
        let mut config = onevision_server::ServeConfig::new("tiny-onevision");
        config.log_requests = false;
        let engine = onevision_server::start_engine(pipeline, &config.limits);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = runtime.spawn(onevision_server::serve_listener(
            listener,
            engine.engine(),
            config,
            async {
                let _ = rx.await;
            },
        ));
        Self {
            url: format!("http://{addr}"),
            runtime,
            shutdown: Some(tx),
            task: Some(task),
            engine: Some(engine),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = self.runtime.block_on(task);
        }
        if let Some(engine) = self.engine.take() {
            engine.shutdown();
        }
    }
}

#[test]
fn in_process_and_served_answers_are_identical() {
    let served = Served::start();
    let local = LocalBackend::load(&checkpoint(), ComputeDType::F32).expect("loads");
    // The model name comes from the server's GET /v1/models.
    let remote = OpenAiBackend::new(
        vec![format!("{}/v1", served.url)],
        None,
        None,
        1,
        Duration::from_secs(300),
    )
    .expect("backend");
    assert_eq!(remote.model(), "tiny-onevision");

    let cases = [
        (
            "one image",
            prompt(
                "Describe the image.",
                Visual::Images(vec![photo("chelsea.png")]),
            ),
        ),
        (
            "two images",
            prompt(
                "What differs between them?",
                Visual::Images(vec![photo("rocket.jpg"), photo("text.png")]),
            ),
        ),
        (
            "a video",
            prompt(
                "What happens in the video?",
                Visual::Video(fixtures().join("video/clip_h264.mp4")),
            ),
        ),
        (
            "frames",
            prompt("What happens here?", Visual::Frames(frame_paths())),
        ),
        ("text only", prompt("Tell me a story.", Visual::None)),
    ];
    let mut answers = Vec::new();
    for (what, p) in &cases {
        let a = local
            .generate(&ask(p, 24))
            .unwrap_or_else(|e| panic!("{what}: local: {e}"));
        let b = remote
            .generate(&ask(p, 24))
            .unwrap_or_else(|e| panic!("{what}: served: {e}"));
        assert_eq!(a, b, "{what}");
        answers.push(a);
    }
    // The prompts differ, so should (most of) the answers: a check that media reached the model.
    let distinct: std::collections::BTreeSet<&String> = answers.iter().collect();
    assert!(distinct.len() >= 3, "answers: {answers:?}");

    // An undecodable image: a document error on both sides.
    let bad = prompt(
        "Hi",
        Visual::Images(vec![EncodedImage {
            bytes: b"GIF89a broken".to_vec(),
            path: None,
        }]),
    );
    assert!(matches!(
        local.generate(&ask(&bad, 4)),
        Err(GenError::Doc(_))
    ));
    assert!(matches!(remote.generate(&ask(&bad, 4)), Err(GenError::Doc(m)) if m.contains("400")));
}
