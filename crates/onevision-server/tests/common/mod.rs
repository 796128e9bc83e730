//! Shared by the server tests: the tiny fixture checkpoint behind a real server on
//! 127.0.0.1 (port 0), raw HTTP helpers, and an SSE reader.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use candle_core::Device;
use onevision_engine::{EngineThread, Pipeline};
use onevision_nn::dtype::ComputeDType;
use onevision_server::{serve_listener, start_engine, ServeConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const MODEL: &str = "tiny-onevision";

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

pub fn checkpoint() -> PathBuf {
    fixtures().join("models/tied/checkpoint")
}

pub fn load_pipeline() -> Pipeline {
    Pipeline::load(&checkpoint(), ComputeDType::F32, &Device::Cpu)
        .expect("the fixture checkpoint loads")
        .0
}

pub fn data_uri(mime: &str, bytes: &[u8]) -> String {
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

pub fn fixture_data_uri(mime: &str, rel: &str) -> String {
    let bytes = std::fs::read(fixtures().join(rel)).expect("fixture readable");
    data_uri(mime, &bytes)
}

/// A test configuration: the fixture model name, quiet.
pub fn config() -> ServeConfig {
    let mut c = ServeConfig::new(MODEL);
    c.log_requests = false;
    c
}

/// A server on 127.0.0.1:<free port>, its engine, and its shutdown trigger.
pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    engine: Option<EngineThread>,
}

impl TestServer {
    pub async fn start(config: ServeConfig) -> Self {
        onevision_server::install_tls_provider();
        let pipeline = tokio::task::spawn_blocking(load_pipeline)
            .await
            .expect("loading thread");
        let engine = start_engine(pipeline, &config.limits);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_listener(listener, engine.engine(), config, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("http client"),
            shutdown: Some(tx),
            task: Some(task),
            engine: Some(engine),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An async-openai client for this server.
    pub fn openai(&self, key: &str) -> async_openai::Client<async_openai::config::OpenAIConfig> {
        async_openai::Client::with_config(
            async_openai::config::OpenAIConfig::new()
                .with_api_base(self.url("/v1"))
                .with_api_key(key),
        )
    }

    /// POSTs raw bytes to the chat route; returns the status and the body as JSON (or the
    /// raw text as a JSON string when it is not JSON).
    pub async fn post_raw(
        &self,
        body: impl Into<reqwest::Body>,
        key: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .http
            .post(self.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body read");
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, json)
    }

    /// `GET path`: the status and the body as JSON (a string when it is not JSON).
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .get(self.url(path))
            .send()
            .await
            .expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body read");
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, json)
    }

    pub async fn post(&self, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.post_raw(body.to_string(), None).await
    }

    /// The value of an unlabelled metric in `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"))
    }

    /// Waits until the engine runs nothing and holds nothing in its queue.
    pub async fn wait_idle(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let busy = self.metric("onevision:num_requests_running").await
                + self.metric("onevision:num_requests_waiting").await;
            if busy == 0.0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the engine is still busy after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Triggers the shutdown and waits for `serve` to return, then joins the engine.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let result = match self.task.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("serve returns after shutdown")
                .expect("serve task"),
            None => Ok(()),
        };
        if let Some(engine) = self.engine.take() {
            tokio::task::spawn_blocking(move || engine.shutdown())
                .await
                .expect("engine joins");
        }
        result
    }

    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub fn take_task(&mut self) -> JoinHandle<std::io::Result<()>> {
        self.task.take().expect("serve task still held")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // After a failed assertion: stop the server, and join the engine off this thread
        // (joining waits for the router's engine handle, which the runtime drops later).
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(engine) = self.engine.take() {
            std::thread::spawn(move || drop(engine));
        }
    }
}

/// The `data:` payloads of an SSE body, `[DONE]` included.
pub fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.trim_start().to_string())
        .collect()
}

/// Asserts the OpenAI error shape and returns the message.
pub fn assert_error_shape(body: &serde_json::Value, what: &str) -> String {
    let err = body
        .get("error")
        .unwrap_or_else(|| panic!("{what}: no `error` object in {body}"));
    let message = err["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no error.message in {body}"));
    assert!(!message.is_empty(), "{what}: empty message");
    assert!(err["type"].is_string(), "{what}: no error.type in {body}");
    assert!(
        err.get("param").is_some(),
        "{what}: no error.param in {body}"
    );
    assert!(err.get("code").is_some(), "{what}: no error.code in {body}");
    message.to_string()
}
