//! Hostile and malformed requests: each gets the right status and an OpenAI-shaped error
//! (`{"error": {"message", "type", "param", "code"}}`) with a message that says what was
//! wrong, and the server still answers normal requests afterwards.

mod common;

use common::*;
use serde_json::{json, Value};

fn user(content: Value) -> Value {
    json!({"model": MODEL, "max_tokens": 4, "temperature": 0,
           "messages": [{"role": "user", "content": content}]})
}

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

fn image_part(url: &str) -> Value {
    json!({"type": "image_url", "image_url": {"url": url}})
}

fn video_part(url: &str) -> Value {
    json!({"type": "video_url", "video_url": {"url": url}})
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid PNG signature and IHDR announcing 100000 x 100000 RGB pixels, then IEND: 57 bytes
/// that would decode to 30 GB.
fn bomb_png() -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        png.extend_from_slice(&body);
        png.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    png
}

enum Body {
    Json(Value),
    Raw(Vec<u8>),
}

struct Case {
    name: &'static str,
    /// 0: open server (no key, no local files); 1: guarded server (key, local dir, 2 MiB).
    server: usize,
    body: Body,
    key: Option<&'static str>,
    status: u16,
    /// A piece of the message that shows the error explains itself.
    says: &'static str,
}

const KEY: &str = "sk-test-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_clear_openai_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let allowed = dir.path().join("media");
    std::fs::create_dir(&allowed).expect("mkdir");
    std::fs::copy(
        fixtures().join("images/formats/rgb.png"),
        allowed.join("ok.png"),
    )
    .expect("copy");
    std::fs::write(dir.path().join("secret.png"), b"not for you").expect("write");
    std::os::unix::fs::symlink(dir.path().join("secret.png"), allowed.join("escape.png"))
        .expect("symlink");
    let allowed_url = format!("file://{}", allowed.display());

    let open = TestServer::start(config()).await;
    let mut guarded_config = config();
    guarded_config.api_key = Some(KEY.into());
    guarded_config.allowed_local_media_path = Some(allowed.clone());
    guarded_config.limits.max_body_bytes = 2 << 20;
    let guarded = TestServer::start(guarded_config).await;
    let servers = [&open, &guarded];

    let small_png = fixture_data_uri("image/png", "images/formats/rgb.png");
    let ok = user(json!("Hi"));

    let cases = vec![
        Case {
            name: "malformed JSON",
            server: 0,
            body: Body::Raw(b"{\"model\": \"x\", \"messages\": [".to_vec()),
            key: None,
            status: 400,
            says: "not valid JSON",
        },
        Case {
            name: "body is a list",
            server: 0,
            body: Body::Raw(b"[1, 2]".to_vec()),
            key: None,
            status: 400,
            says: "JSON object",
        },
        Case {
            name: "messages not a list",
            server: 0,
            body: Body::Json(with(ok.clone(), "messages", json!("hello"))),
            key: None,
            status: 400,
            says: "`messages` must be a list",
        },
        Case {
            name: "content a number",
            server: 0,
            body: Body::Json(user(json!(42))),
            key: None,
            status: 400,
            says: "messages[0].content",
        },
        Case {
            name: "negative max_tokens",
            server: 0,
            body: Body::Json(with(ok.clone(), "max_tokens", json!(-5))),
            key: None,
            status: 400,
            says: "max_tokens",
        },
        Case {
            name: "max_tokens over the context",
            server: 0,
            body: Body::Json(with(ok.clone(), "max_tokens", json!(10_000_000))),
            key: None,
            status: 400,
            says: "context",
        },
        Case {
            name: "prompt + max_tokens over the context",
            server: 0,
            body: Body::Json(with(ok.clone(), "max_tokens", json!(32767))),
            key: None,
            status: 400,
            says: "context",
        },
        Case {
            name: "temperature 5",
            server: 0,
            body: Body::Json(with(ok.clone(), "temperature", json!(5))),
            key: None,
            status: 400,
            says: "temperature",
        },
        Case {
            name: "temperature a string",
            server: 0,
            body: Body::Json(with(ok.clone(), "temperature", json!("0.5"))),
            key: None,
            status: 400,
            says: "must be a number",
        },
        Case {
            name: "top_p 0",
            server: 0,
            body: Body::Json(with(ok.clone(), "top_p", json!(0))),
            key: None,
            status: 400,
            says: "top_p",
        },
        Case {
            name: "presence_penalty 3",
            server: 0,
            body: Body::Json(with(ok.clone(), "presence_penalty", json!(3))),
            key: None,
            status: 400,
            says: "presence_penalty",
        },
        Case {
            name: "n = 2",
            server: 0,
            body: Body::Json(with(ok.clone(), "n", json!(2))),
            key: None,
            status: 400,
            says: "one choice",
        },
        Case {
            name: "invalid base64",
            server: 0,
            body: Body::Json(user(json!([image_part(
                "data:image/png;base64,@@@not base64@@@"
            )]))),
            key: None,
            status: 400,
            says: "base64",
        },
        Case {
            name: "data URI that is not an image",
            server: 0,
            body: Body::Json(user(json!([image_part(&data_uri("text/plain", b"hello"))]))),
            key: None,
            status: 400,
            says: "text/plain",
        },
        Case {
            name: "image bytes that are text",
            server: 0,
            body: Body::Json(user(json!([image_part(&data_uri(
                "image/png",
                b"hello, I am not a PNG"
            ))]))),
            key: None,
            status: 400,
            says: "cannot decode image",
        },
        Case {
            name: "truncated PNG",
            server: 0,
            body: Body::Json(user(json!([image_part(&data_uri(
                "image/png",
                &std::fs::read(fixtures().join("images/photos/chelsea.png")).expect("read")[..200]
            ))]))),
            key: None,
            status: 400,
            says: "image",
        },
        Case {
            name: "decompression bomb PNG (100000x100000)",
            server: 0,
            body: Body::Json(user(json!([image_part(&data_uri(
                "image/png",
                &bomb_png()
            ))]))),
            key: None,
            status: 400,
            says: "over the limit",
        },
        Case {
            name: "zero-byte video",
            server: 0,
            body: Body::Json(user(json!([video_part("data:video/mp4;base64,")]))),
            key: None,
            status: 400,
            says: "empty",
        },
        Case {
            name: "text as video",
            server: 0,
            body: Body::Json(user(json!([video_part(&data_uri(
                "video/mp4",
                b"this is not a video, just text"
            ))]))),
            key: None,
            status: 400,
            says: "video",
        },
        Case {
            name: "too many frames",
            server: 0,
            body: Body::Json(user(
                json!([{"type": "video_url", "video_url": {"url": fixture_data_uri("video/mp4", "video/clip_h264.mp4"), "num_frames": 65}}]),
            )),
            key: None,
            status: 400,
            says: "num_frames",
        },
        Case {
            name: "file:///etc/passwd, local files off",
            server: 0,
            body: Body::Json(user(json!([image_part("file:///etc/passwd")]))),
            key: None,
            status: 400,
            says: "--allowed-local-media-path",
        },
        Case {
            name: "file:///etc/passwd, outside the allowed dir",
            server: 1,
            body: Body::Json(user(json!([image_part("file:///etc/passwd")]))),
            key: Some(KEY),
            status: 403,
            says: "outside",
        },
        Case {
            name: "path traversal <allowed>/../secret.png",
            server: 1,
            body: Body::Json(user(json!([image_part(&format!(
                "{allowed_url}/../secret.png"
            ))]))),
            key: Some(KEY),
            status: 403,
            says: "outside",
        },
        Case {
            name: "percent-encoded traversal <allowed>/%2e%2e/secret.png",
            server: 1,
            body: Body::Json(user(json!([image_part(&format!(
                "{allowed_url}/%2e%2e/secret.png"
            ))]))),
            key: Some(KEY),
            status: 403,
            says: "outside",
        },
        Case {
            name: "symlink escape",
            server: 1,
            body: Body::Json(user(json!([image_part(&format!(
                "{allowed_url}/escape.png"
            ))]))),
            key: Some(KEY),
            status: 403,
            says: "outside",
        },
        Case {
            name: "missing file inside the allowed dir",
            server: 1,
            body: Body::Json(user(json!([image_part(&format!(
                "{allowed_url}/missing.png"
            ))]))),
            key: Some(KEY),
            status: 400,
            says: "cannot read",
        },
        Case {
            name: "remote URL, remote media off",
            server: 0,
            body: Body::Json(user(json!([image_part("http://127.0.0.1:9/cat.png")]))),
            key: None,
            status: 400,
            says: "--allow-remote-media",
        },
        Case {
            name: "unsupported URL scheme",
            server: 0,
            body: Body::Json(user(json!([image_part("ftp://example.com/a.png")]))),
            key: None,
            status: 400,
            says: "data: URI",
        },
        Case {
            name: "unknown model",
            server: 0,
            body: Body::Json(with(ok.clone(), "model", json!("gpt-4o"))),
            key: None,
            status: 404,
            says: "gpt-4o",
        },
        Case {
            name: "17 images",
            server: 0,
            body: Body::Json(user(Value::Array(
                (0..17).map(|_| image_part(&small_png)).collect(),
            ))),
            key: None,
            status: 400,
            says: "at most 16",
        },
        Case {
            name: "3 videos",
            server: 0,
            body: Body::Json(user(Value::Array(
                (0..3)
                    .map(|_| video_part("data:video/mp4;base64,AAAA"))
                    .collect(),
            ))),
            key: None,
            status: 400,
            says: "at most 2",
        },
        Case {
            name: "image in a system message",
            server: 0,
            body: Body::Json(
                json!({"model": MODEL, "messages": [{"role": "system", "content": [image_part(&small_png)]}, {"role": "user", "content": "Hi"}]}),
            ),
            key: None,
            status: 400,
            says: "only user messages",
        },
        Case {
            name: "bad API key",
            server: 1,
            body: Body::Json(ok.clone()),
            key: Some("sk-wrong"),
            status: 401,
            says: "incorrect API key",
        },
        Case {
            name: "missing API key",
            server: 1,
            body: Body::Json(ok.clone()),
            key: None,
            status: 401,
            says: "missing API key",
        },
        Case {
            name: "oversize body (2.1 MB > 2 MiB)",
            server: 1,
            body: Body::Json(user(json!([image_part(&data_uri(
                "image/png",
                &vec![7u8; 1_600_000]
            ))]))),
            key: Some(KEY),
            status: 413,
            says: "over the limit",
        },
        Case {
            name: "empty messages",
            server: 0,
            body: Body::Json(with(ok.clone(), "messages", json!([]))),
            key: None,
            status: 400,
            says: "empty",
        },
        Case {
            name: "unknown role",
            server: 0,
            body: Body::Json(with(
                ok.clone(),
                "messages",
                json!([{"role": "wizard", "content": "hi"}]),
            )),
            key: None,
            status: 400,
            says: "wizard",
        },
        Case {
            name: "tool role",
            server: 0,
            body: Body::Json(with(
                ok.clone(),
                "messages",
                json!([{"role": "tool", "content": "42"}]),
            )),
            key: None,
            status: 400,
            says: "tool",
        },
        Case {
            name: "stop list of 5",
            server: 0,
            body: Body::Json(with(ok.clone(), "stop", json!(["a", "b", "c", "d", "e"]))),
            key: None,
            status: 400,
            says: "at most 4",
        },
        Case {
            name: "top_logprobs 21",
            server: 0,
            body: Body::Json(with(
                with(ok.clone(), "logprobs", json!(true)),
                "top_logprobs",
                json!(21),
            )),
            key: None,
            status: 400,
            says: "top_logprobs",
        },
        Case {
            name: "tools",
            server: 0,
            body: Body::Json(with(
                ok.clone(),
                "tools",
                json!([{"type": "function", "function": {"name": "f"}}]),
            )),
            key: None,
            status: 400,
            says: "tool calling",
        },
        Case {
            name: "stream_options without stream",
            server: 0,
            body: Body::Json(with(
                ok.clone(),
                "stream_options",
                json!({"include_usage": true}),
            )),
            key: None,
            status: 400,
            says: "stream",
        },
        Case {
            name: "part without type",
            server: 0,
            body: Body::Json(user(json!([{"text": "hi"}]))),
            key: None,
            status: 400,
            says: "type",
        },
        Case {
            name: "text part without text",
            server: 0,
            body: Body::Json(user(json!([{"type": "text"}]))),
            key: None,
            status: 400,
            says: "text",
        },
    ];
    assert!(cases.len() >= 25);

    for case in &cases {
        let server = servers[case.server];
        let body = match &case.body {
            Body::Json(v) => v.to_string().into_bytes(),
            Body::Raw(b) => b.clone(),
        };
        let (status, response) = server.post_raw(body, case.key).await;
        assert_eq!(status, case.status, "{}: {response}", case.name);
        let message = assert_error_shape(&response, case.name);
        assert!(
            message.contains(case.says),
            "{}: the message should mention `{}`: {message}",
            case.name,
            case.says
        );
        eprintln!("{:>3} {:<55} {message}", status, case.name);
    }

    // Not the chat body: wrong method, unknown route, a streamed request that fails before
    // it starts (a 4xx, not a broken stream).
    let get = open
        .http
        .get(open.url("/v1/chat/completions"))
        .send()
        .await
        .expect("GET");
    assert_eq!(get.status(), 405);
    assert_error_shape(&get.json().await.expect("json"), "GET on the POST route");
    let missing = open
        .http
        .get(open.url("/v1/nothing"))
        .send()
        .await
        .expect("GET");
    assert_eq!(missing.status(), 404);
    assert_error_shape(&missing.json().await.expect("json"), "unknown route");
    let (status, response) = open
        .post(&with(
            user(json!([image_part(&data_uri("image/png", b"junk"))])),
            "stream",
            json!(true),
        ))
        .await;
    assert_eq!(status, 400, "{response}");
    assert_error_shape(&response, "streamed bad image");
    let (status, response) = open
        .post(&with(
            with(ok.clone(), "max_tokens", json!(32767)),
            "stream",
            json!(true),
        ))
        .await;
    assert_eq!(status, 400, "{response}");
    assert_error_shape(&response, "streamed prompt over the context");
    let models = guarded
        .http
        .get(guarded.url("/v1/models"))
        .send()
        .await
        .expect("GET");
    assert_eq!(models.status(), 401, "the /v1 routes need the key");
    let health = guarded
        .http
        .get(guarded.url("/health"))
        .send()
        .await
        .expect("GET");
    assert_eq!(health.status(), 200, "health needs no key");

    // Still serving.
    let (status, response) = open.post(&ok).await;
    assert_eq!(status, 200, "{response}");
    let (status, response) = guarded
        .post_raw(
            user(json!([image_part(&format!("{allowed_url}/ok.png")), {"type": "text", "text": "What is it?"}]))
                .to_string(),
            Some(KEY),
        )
        .await;
    assert_eq!(
        status, 200,
        "a file inside the allowed dir is served: {response}"
    );
    let metrics = reqwest::get(open.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("onevision:requests_total{status=\"400\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("onevision:num_requests_waiting 0"),
        "{metrics}"
    );

    open.stop().await.expect("stop");
    guarded.stop().await.expect("stop");
}

/// With `allow_remote_media`, http URLs are fetched (here from a media server on 127.0.0.1),
/// and a failed or oversized download is a 400 that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_media_are_fetched_only_when_allowed() {
    use axum::routing::get;
    let png = std::fs::read(fixtures().join("images/formats/rgb.png")).expect("read");
    let media = axum::Router::new()
        .route("/ok.png", get(move || async move { png.clone() }))
        .route("/big.png", get(|| async { vec![0u8; 3 << 20] }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let media_addr = listener.local_addr().expect("addr");
    let media_server = tokio::spawn(async move { axum::serve(listener, media).await });

    let mut cfg = config();
    cfg.allow_remote_media = true;
    cfg.limits.max_body_bytes = 2 << 20;
    let server = TestServer::start(cfg).await;
    let url = |path: &str| format!("http://{media_addr}{path}");

    let (status, body) = server
        .post(&user(
            json!([image_part(&url("/ok.png")), {"type": "text", "text": "What is it?"}]),
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 100,
        "{body}"
    );

    let failures = [
        (url("/missing.png"), "HTTP 404"),
        (url("/big.png"), "over what is left"),
        ("http://127.0.0.1:9/refused.png".to_string(), "cannot fetch"),
    ];
    for (u, says) in failures {
        let (status, body) = server.post(&user(json!([image_part(&u)]))).await;
        assert_eq!(status, 400, "{u}: {body}");
        let message = assert_error_shape(&body, &u);
        assert!(message.contains(says), "{u}: {message}");
        eprintln!("400 {u}: {message}");
    }
    server.stop().await.expect("stop");
    media_server.abort();
}
