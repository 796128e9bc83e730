//! The `onevision` command-line tool.
//!
//! `generate` answers one prompt about images or a video; `chat` holds a conversation on stdin;
//! `inspect` describes a checkpoint without loading it; `fixture-check` runs the committed
//! golden fixtures; `bench-preprocess` times image preprocessing; `serve` runs the
//! OpenAI-compatible server; `train` trains through the paper's stages; `eval` scores a model
//! with lmms-eval's protocol; `world` writes the procedural shape world's samples. Models are
//! checkpoint directories or Hugging Face repo ids found in the local cache (`checkpoint.rs`).

mod bench;
mod bench_serve;
mod chat;
mod checkpoint;
mod default_model;
mod eval;
mod generate;
mod inspect;
mod nano;
mod perf;
mod serve;
mod train;
mod world;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Tensor ops allocate and free large buffers constantly; mimalloc reuses them instead of
/// handing them back to the kernel and faulting them in again (see Cargo.toml).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use candle_core::Device;
use clap::{Parser, Subcommand};
use onevision_models::fixtures::{case_tensors_in, deviation, input, manifest_in};
use onevision_models::generate::{all_logits, greedy};
use onevision_models::LlavaOnevision;
use onevision_nn::cpu::{self, KernelLevel};
use onevision_nn::ComputeDType;

/// LLaVA-OneVision in Rust: SigLIP vision tower + projector + Qwen2, on the published Hugging
/// Face checkpoints, computing what transformers computes.
#[derive(Parser)]
#[command(name = "onevision", version)]
#[command(after_help = "Run `onevision <COMMAND> --help` for the flags of a command.")]
struct Cli {
    /// CPU kernels: the fastest this CPU runs (default), or a lower level to compare or test
    /// with: reference (candle's ops), avx2, avx512. Also read from ONEVISION_CPU_KERNELS; the
    /// flag wins.
    #[arg(long, global = true, value_name = "LEVEL")]
    cpu_kernels: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer one prompt about images or a video (greedy decoding), streamed or as JSON.
    ///
    /// One user message: the images, then the video, then the prompt, as the chat template
    /// orders them. One image takes the AnyRes path; several take one square-padded tile each.
    Generate(generate::GenerateArgs),
    /// Chat with a model, one line per message, on stdin.
    ///
    /// Each line is a user message; the answer streams to stdout as it is generated, and the
    /// conversation is kept (answers included) until /reset. Status lines and errors go to
    /// stderr, so stdout holds only the answers and a script can pipe into it. A bad file or a
    /// failed turn prints an error and the chat goes on without that message.
    #[command(after_long_help = format!("Commands:\n{}", chat::COMMANDS))]
    Chat(chat::ChatArgs),
    /// Describe a checkpoint without loading its weights.
    ///
    /// Architecture, parameters and stored dtypes (from the safetensors headers only), files and
    /// sizes, placeholder token counts for image sizes and videos, processor settings, chat
    /// template source and special tokens. Exits with 1 when a part of the checkpoint is
    /// missing or broken (each problem is shown in its section).
    #[command(visible_alias = "info")]
    Inspect(inspect::InspectArgs),
    /// Train a checkpoint through the paper's curriculum (--stage 1, 1.5, 2-si, 2-ov) on
    /// LLaVA-NeXT-format data, or validate the data with --check-data.
    ///
    /// Loss and gradients equal PyTorch's (transformers' Trainer semantics: AdamW per part,
    /// cosine schedule with warmup, gradient accumulation, clipping). The output loads in
    /// `onevision generate` and in transformers. See docs/TRAINING.md.
    Train(Box<train::TrainArgs>),
    /// Score a model on lmms-eval's benchmarks with the paper's protocol (lmms-eval 0.2.1:
    /// prompts, parsers, metrics), from local copies of the datasets; in-process (--model) or
    /// through an OpenAI-compatible server (--endpoint). Resumable; `eval score` rescores
    /// samples files, `eval list` names the tasks. See docs/EVALUATION.md.
    Eval(Box<eval::EvalArgs>),
    /// Serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/models,
    /// /health, /metrics).
    Serve(serve::ServeArgs),
    /// Time image preprocessing per image; prints JSON.
    ///
    /// Decode + AnyRes tiles + normalize, median of --iters runs after a warm-up.
    /// tools/bench/preprocess.py compares it with transformers' processors.
    BenchPreprocess(bench::BenchPreprocessArgs),
    /// Time one request stage by stage on a checkpoint (preprocess, vision encode, prefill,
    /// first token, decode, peak memory); medians after a warm-up. Table or --json.
    Bench(perf::BenchArgs),
    /// Serving throughput: waves of concurrent text requests through the batching engine and
    /// the one-at-a-time engine (max_running 1) in the same run; generated tokens/s, decode
    /// tokens/s, p50/p99 TTFT and time per output token.
    BenchServe(bench_serve::BenchServeArgs),
    /// Write a split of the procedural shape world (scenes of colored shapes, PNG) as LLaVA
    /// JSON samples: captions, detailed descriptions, color, shape, counting, position and
    /// multiple-choice questions, each with its `task` family. Deterministic per seed; train
    /// and test never share a scene.
    World(world::WorldArgs),
    /// Build onevision-nano from nothing: `nano init` (a new checkpoint with its own
    /// tokenizer), `nano text` (the language model's text pretraining samples),
    /// `nano pretrain-vision` (SigLIP's sigmoid loss). See scripts/train-nano.sh, docs/NANO.md.
    Nano(nano::NanoArgs),
    /// Check the tiny fixture checkpoints against transformers' recorded outputs.
    ///
    /// Runs each fixture checkpoint on its recorded inputs and compares logits and greedy
    /// tokens with what transformers produced (fixtures/models, made by tools/fixtures).
    FixtureCheck {
        /// Directory holding manifest.json and one folder per model.
        #[arg(long, default_value = "fixtures/models", value_name = "DIR")]
        fixtures: PathBuf,
        /// Compute dtype: f32 (reference; greedy tokens must match), bf16 or f16 (reported).
        #[arg(long, default_value = "f32", value_name = "f32|bf16|f16")]
        dtype: String,
        /// Only this model (e.g. tied, gqa).
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
        /// Only this case (e.g. image_shrink).
        #[arg(long, value_name = "NAME")]
        case: Option<String>,
    },
}

/// mimalloc's `mi_option_purge_delay` (15 in mimalloc 2 and 3): -1 never returns freed memory
/// to the kernel, so the large tensor buffers of one layer are reused by the next instead of
/// being zeroed again page by page (17 % of CPU time went to the kernel's `clear_page`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // SAFETY: sets a process-wide allocator option before any other thread exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping causes whose text the message already shows
/// (library errors often print their source themselves).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

/// Sets the kernel level from `--cpu-kernels`, else checks `ONEVISION_CPU_KERNELS`, so that a
/// bad or unavailable level stops the command with the reason instead of a warning.
fn choose_kernels(flag: Option<&str>) -> Result<()> {
    match flag {
        Some(name) => {
            let level: KernelLevel = name.parse().context("--cpu-kernels")?;
            cpu::force(level).context("--cpu-kernels")?;
        }
        None => {
            cpu::from_env()?;
        }
    }
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode> {
    choose_kernels(cli.cpu_kernels.as_deref())?;
    match cli.command {
        Command::Generate(args) => generate::run(args).map(|_| ExitCode::SUCCESS),
        Command::Chat(args) => chat::run(args).map(|_| ExitCode::SUCCESS),
        Command::Inspect(args) => inspect::run(args).map(|_| ExitCode::SUCCESS),
        Command::Serve(args) => serve::run(args).map(|_| ExitCode::SUCCESS),
        Command::Train(args) => train::run(*args),
        Command::Eval(args) => eval::run(*args),
        Command::BenchPreprocess(args) => bench::run(args).map(|_| ExitCode::SUCCESS),
        Command::Bench(args) => perf::run(args).map(|_| ExitCode::SUCCESS),
        Command::BenchServe(args) => bench_serve::run(args).map(|_| ExitCode::SUCCESS),
        Command::World(args) => world::run(args).map(|_| ExitCode::SUCCESS),
        Command::Nano(args) => nano::run(args).map(|_| ExitCode::SUCCESS),
        Command::FixtureCheck {
            fixtures,
            dtype,
            model,
            case,
        } => fixture_check(&fixtures, dtype.parse()?, model.as_deref(), case.as_deref()),
    }
}

fn fixture_check(
    dir: &std::path::Path,
    dtype: ComputeDType,
    only_model: Option<&str>,
    only_case: Option<&str>,
) -> Result<ExitCode> {
    let manifest =
        manifest_in(dir).with_context(|| format!("reading fixtures in {}", dir.display()))?;
    let mut names: Vec<&String> = manifest.models.keys().collect();
    names.sort();
    let mut mismatches = 0;
    let mut ran = 0;
    for name in names {
        if only_model.is_some_and(|m| m != name) {
            continue;
        }
        let entry = &manifest.models[name];
        let t = Instant::now();
        let (model, _) =
            LlavaOnevision::load(&dir.join(name).join("checkpoint"), dtype, &Device::Cpu)?;
        println!("model {name} ({dtype}), loaded in {:.2?}", t.elapsed());
        println!(
            "  {:<14} {:>6} {:>12} {:>10} {:>9} {:>9}  greedy (20 tokens) vs transformers",
            "case", "tokens", "max|Δlogit|", "scale", "prefill", "decode"
        );
        for case in &entry.cases {
            if only_case.is_some_and(|c| c != case.name) {
                continue;
            }
            let tensors = case_tensors_in(dir, name, &case.name)?;
            let inp = input(case, &tensors)?;
            let t0 = Instant::now();
            let hidden = model.forward(&inp, &mut model.new_cache())?;
            let logits = all_logits(&model, &hidden)?;
            let prefill = t0.elapsed();
            let d = deviation("logits", &logits, &tensors)?;
            let t1 = Instant::now();
            let g = greedy(&model, &inp, 20, &[entry.eos_token_id], |_| {})?;
            let decode = t1.elapsed();
            let same = g.tokens == case.greedy;
            mismatches += usize::from(!same);
            ran += 1;
            println!(
                "  {:<14} {:>6} {:>12.2e} {:>10.2e} {:>8.0?} {:>8.0?}  {} {:?}",
                case.name,
                inp.input_ids.len(),
                d.sample_max_abs,
                d.scale,
                prefill,
                decode,
                if same { "identical" } else { "DIFFERENT" },
                g.tokens
            );
            if !same {
                println!("  {:<14} transformers: {:?}", "", case.greedy);
            }
        }
    }
    if ran == 0 {
        bail!("no fixture case matched --model/--case");
    }
    println!(
        "{} case(s), {} with greedy tokens different from transformers",
        ran, mismatches
    );
    // Only f32 is held to token identity; half precision is reported.
    Ok(if mismatches > 0 && dtype == ComputeDType::F32 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
