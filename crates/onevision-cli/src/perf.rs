//! `onevision bench`: where the time goes for one request on a checkpoint, stage by stage,
//! medians over several runs after a warm-up. tools/bench_vs_transformers runs it next to
//! transformers on the same files and prints the ratios.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use onevision_engine::{ImageInput, Pipeline, Request, VideoInput};
use onevision_models::generate::argmax;
use onevision_processor::{Message, Part, Role};
use serde::Serialize;

use crate::checkpoint::ModelArgs;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// An image to describe (AnyRes). Without --image or --video, a text-only prompt.
    #[arg(long, value_name = "PATH", conflicts_with = "video")]
    image: Option<PathBuf>,
    /// A video (container, GIF or frame directory).
    #[arg(long, value_name = "PATH")]
    video: Option<PathBuf>,
    /// Frames sampled from the video.
    #[arg(long, default_value_t = 32, value_name = "N")]
    frames: usize,
    /// The user's text.
    #[arg(long, default_value = "Describe this in detail.", value_name = "TEXT")]
    prompt: String,
    /// Tokens generated per run for the decode measurement (end-of-sequence ignored).
    #[arg(long, default_value_t = 32, value_name = "N")]
    decode_tokens: usize,
    /// Timed runs (medians are reported).
    #[arg(long, default_value_t = 3, value_name = "N")]
    runs: usize,
    /// Untimed runs first (page in the weights, warm the allocator).
    #[arg(long, default_value_t = 1, value_name = "N")]
    warmup: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// One run's stage times.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    preprocess_ms: f64,
    encode_ms: f64,
    prefill_ms: f64,
    ttft_ms: f64,
    decode_tokens_per_s: f64,
}

#[derive(Serialize)]
struct Report {
    /// The CPU kernel level the run used (`--cpu-kernels`).
    cpu_kernels: String,
    model: String,
    dtype: String,
    /// The decode-time weight quantization (`--quantize`), if any.
    quantize: Option<String>,
    input: String,
    prompt_tokens: usize,
    media_tokens: usize,
    /// Images: tiles (base + grid); videos: frames; text: 0.
    vision_tiles: usize,
    runs: usize,
    preprocess_ms: f64,
    /// Vision tower + projector + packing (+ the text embedding lookup).
    vision_encode_ms: f64,
    vision_encode_ms_per_tile: f64,
    /// The decoder over the whole prompt, to the first token's logits and arg-max.
    prefill_ms: f64,
    prefill_tokens_per_s: f64,
    /// Request start (files on disk) to the first token.
    ttft_ms: f64,
    decode_tokens: usize,
    decode_tokens_per_s: f64,
    /// The process's peak resident memory (VmHWM), weights included.
    peak_rss_mb: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident set size in MiB, from /proc/self/status (0 where unavailable).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn one_run(
    p: &Pipeline,
    request: &Request,
    decode_tokens: usize,
) -> Result<(Run, usize, usize, usize)> {
    let start = Instant::now();
    let prompt = p.prepare(request)?;
    let input = p.model_input(&prompt)?;
    let preprocess_ms = ms(start);
    let tiles = prompt
        .images
        .iter()
        .map(|i| i.pixels.shape[0])
        .sum::<usize>()
        + prompt
            .videos
            .iter()
            .map(|v| v.pixels.shape[0])
            .sum::<usize>();

    let t = Instant::now();
    let embeds = p.model.embed(&input)?;
    let encode_ms = ms(t);

    let t = Instant::now();
    let mut cache = p.model.new_cache();
    let hidden = p.model.forward_embeds(&embeds, &mut cache)?; // (1, t, H)
    let last = hidden.narrow(1, hidden.dim(1)? - 1, 1)?;
    let mut token = argmax(&p.model.logits(&last)?.flatten_all()?)?;
    let prefill_ms = ms(t);
    let ttft_ms = ms(start);

    let t = Instant::now();
    for _ in 1..decode_tokens {
        let h = p.model.forward_tokens(&[token], &mut cache)?;
        token = argmax(&p.model.logits(&h)?.flatten_all()?)?;
    }
    let decode_s = t.elapsed().as_secs_f64();
    let decode_tokens_per_s = if decode_tokens > 1 {
        (decode_tokens - 1) as f64 / decode_s
    } else {
        0.0
    };
    Ok((
        Run {
            preprocess_ms,
            encode_ms,
            prefill_ms,
            ttft_ms,
            decode_tokens_per_s,
        },
        prompt.input_ids.len(),
        prompt.media_tokens(),
        tiles,
    ))
}

pub fn run(args: BenchArgs) -> Result<()> {
    let (model, pipeline) = args.model.load()?;
    let mut parts = vec![];
    let (mut images, mut videos) = (vec![], vec![]);
    let input = if let Some(img) = &args.image {
        parts.push(Part::Image);
        images.push(ImageInput::Path(img.clone()));
        img.display().to_string()
    } else if let Some(v) = &args.video {
        parts.push(Part::Video);
        videos.push(VideoInput::Path {
            path: v.clone(),
            frames: args.frames,
        });
        format!("{} ({} frames)", v.display(), args.frames)
    } else {
        "text only".to_string()
    };
    parts.push(Part::Text(args.prompt.clone()));
    let request = Request {
        messages: vec![Message {
            role: Role::User,
            parts,
        }],
        images,
        videos,
    };
    let decode_tokens = args.decode_tokens.max(1);
    for _ in 0..args.warmup {
        one_run(&pipeline, &request, decode_tokens).context("warm-up run")?;
    }
    let mut runs = vec![];
    let (mut prompt_tokens, mut media_tokens, mut tiles) = (0, 0, 0);
    for _ in 0..args.runs.max(1) {
        let (r, pt, mt, t) = one_run(&pipeline, &request, decode_tokens)?;
        (prompt_tokens, media_tokens, tiles) = (pt, mt, t);
        runs.push(r);
    }
    let med = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let encode = med(|r| r.encode_ms);
    let prefill = med(|r| r.prefill_ms);
    let report = Report {
        model: model.served_name.clone(),
        dtype: args.model.dtype.to_string(),
        quantize: args.model.quantize.map(|q| q.to_string()),
        cpu_kernels: onevision_nn::cpu::level().to_string(),
        input,
        prompt_tokens,
        media_tokens,
        vision_tiles: tiles,
        runs: runs.len(),
        preprocess_ms: med(|r| r.preprocess_ms),
        vision_encode_ms: encode,
        vision_encode_ms_per_tile: if tiles > 0 {
            encode / tiles as f64
        } else {
            0.0
        },
        prefill_ms: prefill,
        prefill_tokens_per_s: prompt_tokens as f64 / (prefill / 1e3),
        ttft_ms: med(|r| r.ttft_ms),
        decode_tokens,
        decode_tokens_per_s: med(|r| r.decode_tokens_per_s),
        peak_rss_mb: peak_rss_mb(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "{} ({}{}, {} kernels), {}: {} prompt tokens ({} media, {} tiles/frames); medians of {} runs after {} warm-up",
        report.model,
        report.dtype,
        report.quantize.as_ref().map(|q| format!(", {q} decode")).unwrap_or_default(),
        report.cpu_kernels,
        report.input,
        report.prompt_tokens,
        report.media_tokens,
        report.vision_tiles,
        report.runs,
        args.warmup
    );
    println!("  preprocess      {:>10.1} ms", report.preprocess_ms);
    println!(
        "  vision encode   {:>10.1} ms  ({:.1} ms per tile)",
        report.vision_encode_ms, report.vision_encode_ms_per_tile
    );
    println!(
        "  prefill         {:>10.1} ms  ({:.0} tokens/s)",
        report.prefill_ms, report.prefill_tokens_per_s
    );
    println!("  first token     {:>10.1} ms", report.ttft_ms);
    println!(
        "  decode          {:>10.2} tokens/s ({} tokens, EOS ignored)",
        report.decode_tokens_per_s, report.decode_tokens
    );
    println!("  peak RSS        {:>10.0} MiB", report.peak_rss_mb);
    Ok(())
}
