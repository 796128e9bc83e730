//! Choosing and loading a checkpoint from the command line: the `--model` / `--revision` /
//! `--dtype` flags the commands share, resolution of a directory or a Hugging Face repo id,
//! the weight files and their sizes, and a progress line while loading.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use onevision_engine::resolve::{resolve_model, ResolvedModel};
use onevision_engine::Pipeline;
use onevision_models::llava_ov::weights::RENAMES;
use onevision_nn::{ComputeDType, Quantization, WeightFiles};

/// Help text shared by every `--model` / `MODEL` argument.
pub const MODEL_HELP: &str = "A checkpoint directory (config.json, *.safetensors, tokenizer.json, \
    chat template and processor configs, in the transformers-5 or the Hub layout) or a Hugging \
    Face repo id (org/name, e.g. llava-hf/llava-onevision-qwen2-0.5b-ov-hf) found in the local \
    Hugging Face cache: HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. \
    Fetch a repo with `huggingface-cli download org/name`, or build with `--features \
    hub-download` to have it downloaded when missing (never when HF_HUB_OFFLINE=1). Without \
    --model: onevision-nano, the small model built into the binary (docs/NANO.md), which knows \
    the procedural shape world only.";

/// Which checkpoint to run, and in which dtype.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    #[arg(long, value_name = "DIR|ORG/NAME", long_help = MODEL_HELP)]
    /// A checkpoint directory or a Hugging Face repo id (org/name) in the local cache; without
    /// it, the built-in onevision-nano.
    pub model: Option<String>,
    /// Branch, tag or commit hash of a repo id (default: main). Not for directories.
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,
    /// Compute dtype: f32 (the reference: matches transformers in float32), bf16 or f16 (half
    /// the memory; small numeric differences).
    #[arg(long, default_value = "f32", value_name = "f32|bf16|f16", value_parser = parse_dtype)]
    pub dtype: ComputeDType,
    /// Weight-only quantized decoding: keep a q8_0 or q4_0 copy of the language model's weights
    /// for generating tokens (about 4x / 7x fewer bytes per token than f32). The vision tower
    /// and the prompt (prefill) keep --dtype; answers can differ slightly from unquantized ones.
    #[arg(long, value_name = "q8_0|q4_0", value_parser = parse_quantization)]
    pub quantize: Option<Quantization>,
}

pub fn parse_quantization(s: &str) -> std::result::Result<Quantization, String> {
    s.parse::<Quantization>().map_err(|e| e.to_string())
}

pub fn parse_dtype(s: &str) -> std::result::Result<ComputeDType, String> {
    s.parse::<ComputeDType>().map_err(|e| e.to_string())
}

impl ModelArgs {
    /// Resolves the model and loads it, with a progress line on a terminal.
    pub fn load(&self) -> Result<(ResolvedModel, Pipeline)> {
        let model = resolve(self.model.as_deref(), self.revision.as_deref())?;
        let mut pipeline = load_pipeline(&model, self.dtype)?;
        if let Some(q) = self.quantize {
            let (_, skipped) = pipeline
                .model
                .quantize_decode(q)
                .with_context(|| format!("quantizing the decoder to {q}"))?;
            if skipped > 0 {
                eprintln!(
                    "note: {skipped} weight matrices have an input width that is not a multiple of \
                     32 and stay unquantized"
                );
            }
        }
        Ok((model, pipeline))
    }
}

/// [`resolve_model`] (the built-in onevision-nano when `spec` is `None`), and a check that the directory is a checkpoint at all (a clearer error
/// than the first missing file loading would stumble on).
pub fn resolve(spec: Option<&str>, revision: Option<&str>) -> Result<ResolvedModel> {
    let Some(spec) = spec else {
        if revision.is_some() {
            bail!("--revision needs --model (the built-in model has no revisions)");
        }
        return crate::default_model::resolved();
    };
    let model = resolve_model(spec, revision)?;
    if !model.dir.join("config.json").is_file() {
        bail!(
            "{} has no config.json, so it is not a checkpoint directory; expected config.json, \
             *.safetensors, tokenizer.json, a chat template and processor configs",
            model.dir.display()
        );
    }
    Ok(model)
}

/// The safetensors files a checkpoint directory's weights are read from (the rule of
/// `WeightFiles::open_dir`: index shards, else `model.safetensors`, else every `*.safetensors`),
/// with their sizes in bytes. Only the headers are read.
pub fn weight_files(dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let files = WeightFiles::open_dir(dir, RENAMES)?;
    files
        .files()
        .iter()
        .map(|f| {
            let len = std::fs::metadata(f)
                .with_context(|| format!("reading {}", f.display()))?
                .len();
            Ok((f.clone(), len))
        })
        .collect()
}

/// Bytes in decimal units, as the Hub shows file sizes.
pub fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

/// Loads the model and processor. On a terminal, stderr shows what is being loaded and how
/// long it took (the weights are memory-mapped, so one line for all files is enough); piped
/// stderr stays clean for scripts.
pub fn load_pipeline(model: &ResolvedModel, dtype: ComputeDType) -> Result<Pipeline> {
    let show = std::io::stderr().is_terminal();
    if show {
        // A directory whose weights cannot be listed fails again, with the full error, below.
        let (count, bytes) = weight_files(&model.dir)
            .map(|f| (f.len(), f.iter().map(|(_, n)| n).sum::<u64>()))
            .unwrap_or_default();
        let files = if count == 1 { "file" } else { "files" };
        eprint!(
            "loading {} ({count} {files}, {}, {dtype})... ",
            model.served_name,
            human_bytes(bytes)
        );
        let _ = std::io::stderr().flush();
    }
    let t = Instant::now();
    let loaded = Pipeline::load(&model.dir, dtype, &Device::Cpu);
    if show {
        match &loaded {
            Ok(_) => eprintln!("done in {:.1} s", t.elapsed().as_secs_f64()),
            Err(_) => eprintln!("failed"),
        }
    }
    let (pipeline, _report) = loaded.with_context(|| format!("loading {}", model.dir.display()))?;
    Ok(pipeline)
}
