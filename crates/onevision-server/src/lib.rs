//! An OpenAI-compatible HTTP server for LLaVA-OneVision: `POST /v1/chat/completions` (text,
//! images and videos; streamed or not), `GET /v1/models`, `GET /health` (liveness), `GET
//! /ready` (readiness: a one-token generation), `GET /metrics` (Prometheus, vLLM's names).
//!
//! The model runs on the engine's worker thread (`onevision_engine::Engine`); this crate only
//! parses and checks requests (`parse`), fetches media (`media`), queues requests on the
//! engine, and turns its events into OpenAI responses (`chat`, `wire`). OpenAI wire types
//! live only here.
//!
//! ```text
//! body -> parse::chat_request (400/404) -> MediaPolicy::resolve (400/403) -> Engine::submit (429)
//!      -> events -> chat.completion | SSE chat.completion.chunk ... [DONE]
//! ```
//!
//! Running it (what `onevision serve` does):
//!
//! ```text
//! let (pipeline, _report) = Pipeline::load(&dir, dtype, &device)?;
//! let config = ServeConfig::new("llava-onevision-qwen2-0.5b-ov");
//! let engine = onevision_server::start_engine(pipeline, &config.limits);
//! onevision_server::serve(engine.engine(), config, onevision_server::shutdown_signal()).await?;
//! engine.shutdown(); // serve returned: nothing is in flight any more
//! ```

pub mod chat;
pub mod error;
pub mod media;
pub mod metrics;
pub mod parse;
pub mod routes;
pub mod wire;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use onevision_engine::{BatchConfig, Engine, EngineThread, Pipeline};
use onevision_processor::DecodeLimits;
use tokio::net::TcpListener;

pub use error::ApiError;

/// The chat-completions route.
pub const CHAT_PATH: &str = "/v1/chat/completions";

/// What the server accepts; every limit is a clear 4xx when exceeded.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// The largest request body (413 above it); also the most bytes that the media of one
    /// request (data URIs, downloads, local files) may have together (400 above it).
    pub max_body_bytes: usize,
    pub max_images_per_request: usize,
    pub max_videos_per_request: usize,
    /// The most frames one video may be sampled to (`video_url.num_frames`; the default of
    /// 32 frames is capped by it).
    pub max_video_frames: usize,
    /// The most pixels of one image or video frame, checked from the file header before
    /// decoding. Applied by [`start_engine`] (the engine's pipeline decodes).
    pub max_image_pixels: u64,
    /// Requests that may wait for the engine (429 beyond). Applied by [`start_engine`].
    pub queue_capacity: usize,
    /// Requests the engine runs at once, batched (see `onevision_engine::BatchConfig`).
    pub max_running: usize,
    /// Prompt positions per prefill chunk.
    pub max_batched_tokens: usize,
    /// MiB of recent media's encoder output kept for reuse (0: none).
    pub encoder_cache_mb: usize,
    /// MiB of KV cache the running requests may hold together (None: no limit); past it the
    /// newest running request is preempted and recomputed later.
    pub kv_cache_mb: Option<usize>,
    /// `max_tokens` when a request does not give one (capped by the context length).
    pub max_tokens_default: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 << 20,
            max_images_per_request: 16,
            max_videos_per_request: 2,
            max_video_frames: 64,
            max_image_pixels: DecodeLimits::DEFAULT_MAX_PIXELS,
            queue_capacity: 32,
            max_running: BatchConfig::default().max_running,
            max_batched_tokens: BatchConfig::default().max_batched_tokens,
            encoder_cache_mb: BatchConfig::default().encoder_cache_bytes >> 20,
            kv_cache_mb: None,
            max_tokens_default: 512,
        }
    }
}

/// How the server runs.
#[derive(Clone, PartialEq)]
pub struct ServeConfig {
    pub host: String,
    pub port: u16,
    /// When set, `/v1/*` requires `Authorization: Bearer <key>` (401 otherwise).
    pub api_key: Option<String>,
    /// The `model` name requests must use (404 otherwise) and `/v1/models` lists.
    pub served_model_name: String,
    /// Fetch http(s) image and video URLs (off: 400 that says how to turn it on).
    pub allow_remote_media: bool,
    /// Read `file://` media, only from inside this directory (None: 400).
    pub allowed_local_media_path: Option<PathBuf>,
    pub limits: Limits,
    /// One line per request on stderr.
    pub log_requests: bool,
}

impl ServeConfig {
    /// Serves `served_model_name` on 127.0.0.1:8000 with the default limits, no API key, no
    /// remote or local media.
    pub fn new(served_model_name: impl Into<String>) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8000,
            api_key: None,
            served_model_name: served_model_name.into(),
            allow_remote_media: false,
            allowed_local_media_path: None,
            limits: Limits::default(),
            log_requests: true,
        }
    }
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("served_model_name", &self.served_model_name)
            .field("allow_remote_media", &self.allow_remote_media)
            .field("allowed_local_media_path", &self.allowed_local_media_path)
            .field("limits", &self.limits)
            .field("log_requests", &self.log_requests)
            .finish()
    }
}

/// Starts the engine worker with the server's limits: the pixel limit on the pipeline's
/// decoders, the queue capacity and the batching.
pub fn start_engine(mut pipeline: Pipeline, limits: &Limits) -> EngineThread {
    pipeline.limits = DecodeLimits {
        max_pixels: limits.max_image_pixels,
    };
    Engine::start_with(
        pipeline,
        BatchConfig {
            queue_capacity: limits.queue_capacity,
            max_running: limits.max_running,
            max_batched_tokens: limits.max_batched_tokens,
            encoder_cache_bytes: limits.encoder_cache_mb << 20,
            kv_cache_bytes: limits.kv_cache_mb.map(|mb| mb << 20),
        },
    )
}

/// Shared by the handlers.
pub struct App {
    pub engine: Engine,
    pub config: ServeConfig,
    pub media: media::MediaPolicy,
    pub metrics: Arc<metrics::Metrics>,
    pub started_unix: u64,
    /// Held while a readiness generation runs (one at a time).
    pub readiness: tokio::sync::Mutex<()>,
}

/// rustls needs a process-wide crypto provider for the remote-media client (and for any
/// reqwest client in the same process); `ring` builds without a C toolchain beyond `cc`.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The application: routes, limits, authentication. Fails when the allowed local media
/// directory does not exist, or the remote-media client cannot be built.
pub fn router(engine: Engine, config: ServeConfig) -> std::io::Result<Router> {
    install_tls_provider();
    let media = media::MediaPolicy::new(
        config.allow_remote_media,
        config.allowed_local_media_path.as_deref(),
        config.limits.max_body_bytes,
    )?;
    let body_limit = config.limits.max_body_bytes;
    let app = Arc::new(App {
        engine,
        config,
        media,
        metrics: Arc::new(metrics::Metrics::default()),
        started_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        readiness: tokio::sync::Mutex::new(()),
    });
    let v1 = Router::new()
        .route(CHAT_PATH, post(chat::chat_completions))
        .route("/v1/models", get(routes::list_models))
        .route("/v1/models/{id}", get(routes::get_model))
        .route_layer(from_fn_with_state(app.clone(), routes::require_api_key));
    Ok(Router::new()
        .merge(v1)
        .route("/health", get(routes::health))
        .route("/ready", get(routes::ready))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(from_fn_with_state(app.clone(), routes::count_requests))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(app))
}

/// Binds `config.host:config.port` and serves until `shutdown` completes; then stops
/// accepting connections, refuses new requests on open ones (503), lets the requests in
/// flight finish (streams included), and returns.
pub async fn serve(
    engine: Engine,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = TcpListener::bind((config.host.as_str(), config.port)).await?;
    eprintln!(
        "onevision-server: serving `{}` on http://{} (POST /v1/chat/completions)",
        config.served_model_name,
        listener.local_addr()?
    );
    serve_listener(listener, engine, config, shutdown).await
}

/// [`serve`] on a listener the caller bound (tests bind port 0 and read the address).
pub async fn serve_listener(
    listener: TcpListener,
    engine: Engine,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(engine.clone(), config)?;
    // Small SSE chunks go out at once rather than waiting for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            engine.close();
        })
        .await
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No handler could be installed: never fire rather than fire at once.
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
