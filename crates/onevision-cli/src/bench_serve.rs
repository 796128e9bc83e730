//! `onevision bench-serve`: serving throughput of the engine's continuous batching against the
//! one-request-at-a-time engine, in the same run: waves of `c` text requests of about
//! `--prompt-tokens` tokens, `--max-tokens` generated each (end-of-sequence ignored), sent at
//! once for each concurrency `c`; aggregate generated tokens/s, decode throughput, p50/p99 time
//! to first token and time per output token. Requests go to the engine directly (no HTTP), as
//! the server queues them.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use onevision_engine::{
    BatchConfig, Engine, Event, GenRequest, Request, SamplingParams, StopRules,
};
use onevision_processor::{Message, Part, Role};
use serde::Serialize;

use crate::checkpoint::ModelArgs;

#[derive(Args)]
pub struct BenchServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Concurrencies to measure, each a wave of that many requests sent at once.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,4,8,16",
        value_name = "N,N,..."
    )]
    concurrency: Vec<usize>,
    /// Prompt length to aim at (the prompts are random words; each request's own).
    #[arg(long, default_value_t = 500, value_name = "N")]
    prompt_tokens: usize,
    /// Tokens generated per request.
    #[arg(long, default_value_t = 128, value_name = "N")]
    max_tokens: usize,
    /// The batched engine's --max-running.
    #[arg(long, default_value_t = 8, value_name = "N")]
    max_running: usize,
    /// The batched engine's --max-batched-tokens.
    #[arg(long, default_value_t = 2048, value_name = "N")]
    max_batched_tokens: usize,
    /// Skip the one-at-a-time engine (max_running 1).
    #[arg(long)]
    no_baseline: bool,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Level {
    engine: &'static str,
    max_running: usize,
    concurrency: usize,
    requests: usize,
    prompt_tokens_mean: f64,
    generated_tokens: usize,
    wall_s: f64,
    /// Generated tokens over the wave's wall time (prompt work included).
    generated_tokens_per_s: f64,
    /// Rows decoded by batched decode steps over the steps' time (prompt work excluded).
    decode_tokens_per_s: f64,
    mean_decode_batch: f64,
    ttft_p50_s: f64,
    ttft_p99_s: f64,
    tpot_p50_ms: f64,
    tpot_p99_ms: f64,
}

/// The `p` quantile of `v` (nearest rank).
fn quantile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Random words (a fixed xorshift sequence per request), about one token each plus spaces.
fn prompt(seed: u64, words: usize) -> String {
    const WORDS: &[&str] = &[
        "river", "mountain", "quiet", "engine", "yellow", "window", "garden", "silver", "market",
        "thunder", "paper", "forest", "cloud", "harbor", "lantern", "pepper", "stone", "violet",
        "bridge", "winter", "candle", "desert", "ocean", "tiger", "pencil", "orange", "meadow",
        "copper", "island", "shadow", "rocket", "velvet",
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = String::from("Continue this list of words:");
    for _ in 0..words {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(' ');
        out.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
    }
    out
}

fn request(seed: u64, words: usize, max_tokens: usize) -> GenRequest {
    GenRequest {
        request: Request {
            messages: vec![Message::new(
                Role::User,
                vec![Part::Text(prompt(seed, words))],
            )],
            images: vec![],
            videos: vec![],
        },
        sampling: SamplingParams::default(),
        stop: StopRules {
            max_new_tokens: max_tokens,
            ignore_eos: true,
            ..Default::default()
        },
        logprobs: None,
    }
}

/// One wave of `c` requests at once on `engine`.
fn wave(engine: &Engine, c: usize, words: usize, max_tokens: usize, seed: u64) -> Result<Level> {
    let stats = engine.stats();
    let (rows0, nanos0, steps0) = (
        stats.decode_rows.load(Ordering::Relaxed),
        stats.decode_nanos.load(Ordering::Relaxed),
        stats.decode_steps.load(Ordering::Relaxed),
    );
    let start = Instant::now();
    let mut rxs = Vec::with_capacity(c);
    for i in 0..c {
        let (tx, rx) = mpsc::channel();
        engine
            .submit(
                request(seed + i as u64, words, max_tokens),
                Box::new(move |e| tx.send((Instant::now(), e)).is_ok()),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        rxs.push(rx);
    }
    let (mut ttft, mut tpot, mut prompt_tokens, mut generated) = (vec![], vec![], 0usize, 0usize);
    for rx in rxs {
        let mut first = None;
        loop {
            let (at, e) = rx
                .recv_timeout(Duration::from_secs(3600))
                .context("a request did not end within an hour")?;
            match e {
                Event::Delta { .. } => {
                    first.get_or_insert(at);
                }
                Event::Done {
                    usage, token_ids, ..
                } => {
                    let first = first.unwrap_or(at);
                    ttft.push((first - start).as_secs_f64());
                    if token_ids.len() > 1 {
                        tpot.push((at - first).as_secs_f64() * 1e3 / (token_ids.len() - 1) as f64);
                    }
                    prompt_tokens += usage.prompt_tokens;
                    generated += token_ids.len();
                    break;
                }
                Event::Failed(e) => bail!("a request failed: {e}"),
                Event::Started { .. } => {}
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let rows = stats.decode_rows.load(Ordering::Relaxed) - rows0;
    let nanos = stats.decode_nanos.load(Ordering::Relaxed) - nanos0;
    let steps = stats.decode_steps.load(Ordering::Relaxed) - steps0;
    if tpot.is_empty() {
        tpot.push(0.0);
    }
    Ok(Level {
        engine: "",
        max_running: 0,
        concurrency: c,
        requests: c,
        prompt_tokens_mean: prompt_tokens as f64 / c as f64,
        generated_tokens: generated,
        wall_s: wall,
        generated_tokens_per_s: generated as f64 / wall,
        decode_tokens_per_s: rows as f64 / (nanos as f64 / 1e9).max(1e-9),
        mean_decode_batch: rows as f64 / steps.max(1) as f64,
        ttft_p50_s: quantile(&mut ttft, 0.5),
        ttft_p99_s: quantile(&mut ttft, 0.99),
        tpot_p50_ms: quantile(&mut tpot, 0.5),
        tpot_p99_ms: quantile(&mut tpot, 0.99),
    })
}

/// The number of words whose prompt (template included) comes closest to `tokens` tokens
/// with this checkpoint's tokenizer.
fn words_for(pipeline: &onevision_engine::Pipeline, tokens: usize) -> Result<usize> {
    let count = |w: usize| -> Result<usize> {
        Ok(pipeline.prepare(&request(7, w, 1).request)?.input_ids.len())
    };
    let (mut lo, mut hi) = (1usize, tokens.max(2));
    while lo < hi {
        let mid = (lo + hi) / 2;
        if count(mid)? < tokens {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

pub fn run(args: BenchServeArgs) -> Result<()> {
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        bail!("--concurrency needs positive numbers, e.g. 1,4,8,16");
    }
    let mut words = 0;
    let mut engines = vec![("batched", args.max_running.max(1))];
    if !args.no_baseline {
        engines.push(("one at a time", 1));
    }
    let mut levels = vec![];
    for (name, max_running) in engines {
        let (_, pipeline) = args.model.load()?;
        if words == 0 {
            words = words_for(&pipeline, args.prompt_tokens)?;
        }
        let thread = Engine::start_with(
            pipeline,
            BatchConfig {
                queue_capacity: 1 << 16,
                max_running,
                max_batched_tokens: args.max_batched_tokens.max(16),
                encoder_cache_bytes: 0,
                kv_cache_bytes: None,
            },
        );
        let engine = thread.engine();
        // Warm-up: page the weights in, size the allocator's pools.
        wave(&engine, 1, 16, 2, 1 << 40)?;
        for &c in &args.concurrency {
            let mut level = wave(&engine, c, words, args.max_tokens, 1000 * c as u64)?;
            level.engine = name;
            level.max_running = max_running;
            if !args.json {
                eprintln!(
                    "{name}, concurrency {c}: {:.1} generated tok/s in {:.1} s",
                    level.generated_tokens_per_s, level.wall_s
                );
            }
            levels.push(level);
        }
        drop(engine);
        thread.shutdown();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&levels)?);
        return Ok(());
    }
    println!(
        "| engine | concurrency | prompt tokens | generated tok/s | decode tok/s (mean batch) | \
         TTFT p50 / p99 (s) | TPOT p50 / p99 (ms) | vs concurrency 1 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for l in &levels {
        let base = levels
            .iter()
            .find(|b| b.engine == l.engine && b.concurrency == 1)
            .map_or(f64::NAN, |b| {
                l.generated_tokens_per_s / b.generated_tokens_per_s
            });
        println!(
            "| {} (max_running {}) | {} | {:.0} | {:.2} | {:.2} ({:.1}) | {:.2} / {:.2} | {:.0} / {:.0} | {:.2}x |",
            l.engine,
            l.max_running,
            l.concurrency,
            l.prompt_tokens_mean,
            l.generated_tokens_per_s,
            l.decode_tokens_per_s,
            l.mean_decode_batch,
            l.ttft_p50_s,
            l.ttft_p99_s,
            l.tpot_p50_ms,
            l.tpot_p99_ms,
            base
        );
    }
    Ok(())
}
