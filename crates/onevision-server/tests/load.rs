//! A bounded load test on 127.0.0.1: 200 requests (text and image, mixed) at concurrency 8
//! through async-openai, all answered without error; latency percentiles and throughput
//! printed. And the bounded queue: with room for one waiting request, the next is a 429.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestMessageContentPartImage,
    ChatCompletionRequestMessageContentPartText, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent, ChatCompletionRequestUserMessageContentPart,
    CreateChatCompletionRequestArgs, ImageUrl,
};
use common::*;
use serde_json::json;
use tokio::sync::Semaphore;

const REQUESTS: usize = 200;
const CONCURRENCY: usize = 8;
const MAX_TOKENS: u32 = 8;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_mixed_requests_at_concurrency_eight() {
    let mut cfg = config();
    cfg.limits.queue_capacity = 64;
    let server = TestServer::start(cfg).await;
    let client = Arc::new(server.openai("unused"));
    // A small image (64x48 RGB PNG) keeps the image requests on the same order of cost as
    // the text ones; it still takes the whole vision path (AnyRes tiles, tower, packing).
    let image = fixture_data_uri("image/png", "images/formats/rgb.png");

    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let client = client.clone();
        let mut parts = vec![ChatCompletionRequestUserMessageContentPart::Text(
            ChatCompletionRequestMessageContentPartText {
                text: format!("Request {i}: say something."),
                prompt_cache_breakpoint: None,
            },
        )];
        if i % 2 == 1 {
            parts.insert(
                0,
                ChatCompletionRequestUserMessageContentPart::ImageUrl(
                    ChatCompletionRequestMessageContentPartImage {
                        image_url: ImageUrl {
                            url: image.clone(),
                            detail: None,
                        },
                        prompt_cache_breakpoint: None,
                    },
                ),
            );
        }
        let request = CreateChatCompletionRequestArgs::default()
            .model(MODEL)
            .messages(vec![ChatCompletionRequestMessage::User(
                ChatCompletionRequestUserMessage {
                    content: ChatCompletionRequestUserMessageContent::Array(parts),
                    name: None,
                },
            )])
            .max_completion_tokens(MAX_TOKENS)
            .temperature(0.7f32)
            .seed(i as i64)
            .build()
            .expect("request builds");
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let result = client.chat().create(request).await;
            drop(permit);
            (t.elapsed(), result)
        }));
    }
    let mut latencies = Vec::with_capacity(REQUESTS);
    let mut completion_tokens = 0u64;
    let mut errors = Vec::new();
    for task in tasks {
        let (latency, result) = task.await.expect("request task");
        match result {
            Ok(r) => {
                let usage = r.usage.expect("usage");
                assert!(usage.completion_tokens >= 1 && usage.completion_tokens <= MAX_TOKENS);
                completion_tokens += usage.completion_tokens as u64;
                latencies.push(latency);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let wall = start.elapsed();
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    assert_eq!(latencies.len(), REQUESTS);
    latencies.sort();
    eprintln!(
        "load: {REQUESTS} requests (half with an image), concurrency {CONCURRENCY}, max_tokens \
         {MAX_TOKENS}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {:.1} requests/s, {:.1} \
         generated tokens/s ({completion_tokens} tokens in {:.2} s)",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies[REQUESTS - 1].as_secs_f64() * 1e3,
        REQUESTS as f64 / wall.as_secs_f64(),
        completion_tokens as f64 / wall.as_secs_f64(),
        wall.as_secs_f64(),
    );
    assert_eq!(
        server.metric("onevision:generation_tokens_total").await as u64,
        completion_tokens
    );
    server.stop().await.expect("clean stop");
}

/// Queue capacity 1 and one request at a time: one request runs, one waits, the next is
/// refused with 429 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_429() {
    let mut cfg = config();
    cfg.limits.queue_capacity = 1;
    cfg.limits.max_running = 1;
    let server = TestServer::start(cfg).await;
    let long = json!({
        "model": MODEL, "messages": [{"role": "user", "content": "Keep talking."}],
        "max_tokens": 2000, "ignore_eos": true, "temperature": 0, "stream": true
    });
    // The running request: its stream is open once the engine started it.
    let running = server
        .http
        .post(server.url("/v1/chat/completions"))
        .json(&long)
        .send()
        .await
        .expect("first request");
    assert_eq!(running.status(), 200);
    // The waiting one.
    let http = server.http.clone();
    let url = server.url("/v1/chat/completions");
    let waiting_body = long.clone();
    let waiting = tokio::spawn(async move { http.post(url).json(&waiting_body).send().await });
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.metric("onevision:num_requests_waiting").await < 1.0 {
        assert!(Instant::now() < deadline, "the second request never queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let t = Instant::now();
    let (status, body) = server.post(&long).await;
    assert_eq!(status, 429, "{body}");
    let message = assert_error_shape(&body, "queue full");
    assert!(message.contains("retry"), "{message}");
    assert!(t.elapsed() < Duration::from_secs(2), "a 429 is immediate");
    eprintln!("queue full: 429 {message}");

    // Both long requests go away; their generations are cancelled and the engine is free.
    drop(running);
    waiting.abort();
    let _ = waiting.await;
    server.wait_idle(Duration::from_secs(30)).await;
    let (status, body) = server
        .post(&json!({
            "model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("onevision:requests_total{status=\"429\"} 1"),
        "{metrics}"
    );
    server.stop().await.expect("clean stop");
}
