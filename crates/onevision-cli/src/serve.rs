//! `onevision serve`: the OpenAI-compatible server (crates/onevision-server) around one model.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use onevision_server::{Limits, ServeConfig};

use crate::checkpoint::ModelArgs;

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on (0.0.0.0 for all interfaces).
    #[arg(long, default_value = "127.0.0.1", value_name = "HOST")]
    host: String,
    /// Port to listen on.
    #[arg(long, default_value_t = 8000, value_name = "PORT")]
    port: u16,
    /// Require `Authorization: Bearer <KEY>` on /v1/* (401 otherwise).
    #[arg(
        long,
        value_name = "KEY",
        env = "ONEVISION_API_KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
    /// The model id clients must send and /v1/models lists (default: the repo id, or the
    /// checkpoint directory's name).
    #[arg(long, value_name = "NAME")]
    served_model_name: Option<String>,
    /// Fetch http(s) image and video URLs given in requests (off by default: only data URIs,
    /// and file:// under --allowed-local-media-path).
    #[arg(long)]
    allow_remote_media: bool,
    /// Allow file:// media URLs, only for files inside this directory (symlinks and `..`
    /// resolved first).
    #[arg(long, value_name = "DIR")]
    allowed_local_media_path: Option<PathBuf>,
    /// Largest request body in bytes (413 above); also the budget for all media of a request.
    #[arg(long, default_value_t = Limits::default().max_body_bytes, value_name = "BYTES")]
    max_body_bytes: usize,
    /// Most images in one request.
    #[arg(long, default_value_t = Limits::default().max_images_per_request, value_name = "N")]
    max_images: usize,
    /// Most videos in one request.
    #[arg(long, default_value_t = Limits::default().max_videos_per_request, value_name = "N")]
    max_videos: usize,
    /// Most frames a video may be sampled to (requests ask with video_url.num_frames;
    /// default 32, capped by this).
    #[arg(long, default_value_t = Limits::default().max_video_frames, value_name = "N")]
    max_frames: usize,
    /// Most pixels per image or video frame, checked from the header before decoding.
    #[arg(long, default_value_t = Limits::default().max_image_pixels, value_name = "N")]
    max_pixels: u64,
    /// Requests that may wait while the model is busy (429 beyond).
    #[arg(long, default_value_t = Limits::default().queue_capacity, value_name = "N")]
    queue_capacity: usize,
    /// Requests run at once: their decode steps share one batched forward pass (each weight
    /// read once per step for all of them).
    #[arg(long, default_value_t = Limits::default().max_running as u64, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=256))]
    max_running: u64,
    /// Prompt positions per prefill chunk: a long prompt is prefilled a chunk at a time, with
    /// the running requests' decode steps in between.
    #[arg(long, default_value_t = Limits::default().max_batched_tokens as u64, value_name = "N",
          value_parser = clap::value_parser!(u64).range(16..=1 << 20))]
    max_batched_tokens: u64,
    /// MiB of recent images' and videos' encoder output kept, so the same medium asked about
    /// again skips the vision tower (0: none).
    #[arg(long, default_value_t = Limits::default().encoder_cache_mb, value_name = "MIB")]
    encoder_cache_mb: usize,
    /// MiB of KV cache the running requests may hold together (default: a quarter of the
    /// memory of the machine, or of the container when its cgroup sets a limit). KV memory is
    /// granted in blocks of 16 positions; when it runs out, the newest running request gives
    /// its cache back and is recomputed later (same output), never dropped. A request that
    /// could not fit even alone is refused with an error saying so.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    kv_cache_mb: Option<u64>,
    /// max_tokens when a request gives none (capped by the context length).
    #[arg(long, default_value_t = Limits::default().max_tokens_default, value_name = "N")]
    default_max_tokens: usize,
    /// Do not print one line per request on stderr.
    #[arg(long)]
    quiet: bool,
}

/// Bytes of memory this process may use: the cgroup's limit (v2 `memory.max`, v1
/// `memory.limit_in_bytes`) when one is set, else the machine's `MemTotal`; None when neither
/// can be read (not Linux).
fn memory_limit() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let total = read("/proc/meminfo").and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|p| read(p).and_then(|v| v.trim().parse::<u64>().ok()));
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

pub fn run(args: ServeArgs) -> Result<()> {
    let kv_cache_mb = match args.kv_cache_mb {
        Some(mb) => mb as usize,
        None => memory_limit().map_or(4096, |b| ((b / 4) >> 20).max(64) as usize),
    };
    let (model, pipeline) = args.model.load()?;
    let config = ServeConfig {
        host: args.host,
        port: args.port,
        api_key: args.api_key,
        served_model_name: args.served_model_name.unwrap_or(model.served_name),
        allow_remote_media: args.allow_remote_media,
        allowed_local_media_path: args.allowed_local_media_path,
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            max_images_per_request: args.max_images,
            max_videos_per_request: args.max_videos,
            max_video_frames: args.max_frames,
            max_image_pixels: args.max_pixels,
            queue_capacity: args.queue_capacity,
            max_running: args.max_running as usize,
            max_batched_tokens: args.max_batched_tokens as usize,
            encoder_cache_mb: args.encoder_cache_mb,
            kv_cache_mb: Some(kv_cache_mb),
            max_tokens_default: args.default_max_tokens,
        },
        log_requests: !args.quiet,
    };
    let engine = onevision_server::start_engine(pipeline, &config.limits);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    eprintln!(
        "serving {:?} on http://{}:{} (OpenAI API at /v1; Ctrl-C to stop); up to {} requests \
         at once, KV-cache budget {kv_cache_mb} MiB",
        config.served_model_name, config.host, config.port, config.limits.max_running
    );
    runtime.block_on(onevision_server::serve(
        engine.engine(),
        config,
        onevision_server::shutdown_signal(),
    ))?;
    eprintln!("in-flight requests finished; shutting down");
    engine.shutdown();
    Ok(())
}
