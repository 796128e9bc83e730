//! A bounded load test on 127.0.0.1: 300 mixed requests (text, an image, an image pair, a
//! video; greedy and sampled; some streamed) at concurrency 16 against an engine batching 8 at
//! once, all answered without error and none lost; latency percentiles and throughput
//! printed. And the bounded queue: with room for one waiting request, the next is a 429, and
//! the readiness check says the server is busy.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::sync::Semaphore;

const REQUESTS: usize = 300;
const CONCURRENCY: usize = 16;
const MAX_TOKENS: u64 = 8;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_mixed_requests_at_concurrency_sixteen() {
    let mut cfg = config();
    cfg.limits.queue_capacity = 64;
    cfg.limits.max_running = 8;
    let server = Arc::new(TestServer::start(cfg).await);
    // Small media keep each request on the order of a text one's cost; each still takes its
    // whole path (AnyRes tiles, the pad path for a pair, video frames and pooling).
    let image = fixture_data_uri("image/png", "images/formats/rgb.png");
    let video = fixture_data_uri("video/mp4", "video/clip_h264.mp4");

    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let text = json!({"type": "text", "text": format!("Request {i}: say something.")});
        let img = json!({"type": "image_url", "image_url": {"url": image}});
        let content = match i % 4 {
            0 => vec![text],
            1 => vec![img, text],
            2 => vec![img.clone(), img, text],
            _ => vec![
                json!({"type": "video_url", "video_url": {"url": video, "num_frames": 4}}),
                text,
            ],
        };
        let mut body = json!({
            "model": MODEL,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": MAX_TOKENS,
            "seed": i,
            "temperature": if i % 3 == 0 { 0.0 } else { 0.7 },
        });
        let streamed = i % 5 == 0;
        if streamed {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let result = if streamed {
                let (status, v) = server.post_raw(body.to_string(), None).await;
                let text = v.as_str().unwrap_or_default();
                // The last data event before [DONE] carries the usage.
                let events = sse_data(text);
                let usage = events
                    .iter()
                    .rev()
                    .filter_map(|e| serde_json::from_str::<serde_json::Value>(e).ok())
                    .find_map(|v| v["usage"]["completion_tokens"].as_u64());
                match (status, usage, events.last().map(String::as_str)) {
                    (200, Some(n), Some("[DONE]")) => Ok(n),
                    _ => Err(format!("stream {status}: {v}")),
                }
            } else {
                let (status, v) = server.post(&body).await;
                match (status, v["usage"]["completion_tokens"].as_u64()) {
                    (200, Some(n)) => Ok(n),
                    _ => Err(format!("{status}: {v}")),
                }
            };
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
            Ok(n) => {
                assert!((1..=MAX_TOKENS).contains(&n), "{n} tokens");
                completion_tokens += n;
                latencies.push(latency);
            }
            Err(e) => errors.push(e),
        }
    }
    let wall = start.elapsed();
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    assert_eq!(latencies.len(), REQUESTS, "requests lost");
    latencies.sort();
    eprintln!(
        "load: {REQUESTS} mixed requests (text, image, image pair, video), concurrency \
         {CONCURRENCY}, max_tokens {MAX_TOKENS}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {:.1} \
         requests/s, {:.1} generated tokens/s ({completion_tokens} tokens in {:.2} s)",
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
    let answered = server
        .metric("onevision:requests_total{status=\"200\"}")
        .await;
    assert_eq!(answered as usize, REQUESTS);
    // The 150 image requests share one image (and the 75 pairs two copies of it): the encoder
    // cache served all but the first.
    assert!(server.metric("onevision:mm_cache_hits_total").await > 100.0);
    Arc::try_unwrap(server)
        .ok()
        .expect("every task ended")
        .stop()
        .await
        .expect("clean stop");
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
    // The readiness check is a request too: the server is not ready for more.
    let (status, reason) = server.get("/ready").await;
    assert_eq!(status, 503);
    assert!(
        reason["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("busy"),
        "{reason}"
    );
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
    let (status, v) = server.get("/ready").await;
    assert_eq!(status, 200);
    assert_eq!(v["status"], "ready", "{v}");
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
