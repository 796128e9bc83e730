//! `onevision inspect`: what a checkpoint is, without loading its weights: architecture,
//! stored dtypes and parameter counts (from the safetensors headers only), files, placeholder
//! token counts for given image sizes and frame counts, processor settings, chat template
//! source and special tokens. `--load` also loads the weights and lists unused tensors.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write as _};
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use onevision_engine::resolve::ResolvedModel;
use onevision_models::config::AspectRatio;
use onevision_models::llava_ov::packing::{anyres_grid, image_token_count, ImageLayout};
use onevision_models::llava_ov::weights::RENAMES;
use onevision_models::LlavaOnevisionConfig;
use onevision_nn::{Activation, ComputeDType};
use onevision_processor::processor::{num_image_tokens, num_video_tokens};
use onevision_processor::{
    ChatTemplate, Normalize, ProcessorConfig, ProcessorConfigs, TextTokenizer,
};
use safetensors::tensor::Metadata;

use crate::checkpoint::{human_bytes, parse_dtype, resolve, weight_files, MODEL_HELP};

/// Appends a line to the report (writing to a String cannot fail). The report is printed in
/// one piece at the end, so a closed stdout (`| head`) is not a panic.
macro_rules! say {
    ($o:expr, $($arg:tt)*) => {{
        let _ = writeln!($o, $($arg)*);
    }};
}

/// Sizes shown when no `--image-size` is given: a tile, 720p and 1080p landscape.
const DEFAULT_SIZES: &[(usize, usize)] = &[(384, 384), (720, 1280), (1080, 1920)];
/// Frame counts shown when no `--video-frames` is given (LLaVA-OneVision is evaluated with 8 to
/// 32; 32 is `generate --frames`' default).
const DEFAULT_FRAMES: &[usize] = &[8, 16, 32];
/// safetensors' own limit on header size (`MAX_HEADER_SIZE`).
const MAX_HEADER: u64 = 100_000_000;

#[derive(Args)]
pub struct InspectArgs {
    /// A checkpoint directory or a Hugging Face repo id (org/name) in the local cache.
    #[arg(
        value_name = "MODEL",
        long_help = MODEL_HELP,
        conflicts_with = "model_flag"
    )]
    model: Option<String>,
    /// The same as MODEL, as a flag (`onevision info --model DIR` keeps working).
    #[arg(long = "model", value_name = "DIR|ORG/NAME")]
    model_flag: Option<String>,
    /// Branch, tag or commit hash of a repo id (default: main). Not for directories.
    #[arg(long, value_name = "REV")]
    revision: Option<String>,
    /// An image size to count placeholder tokens for, as HEIGHTxWIDTH in pixels (e.g.
    /// 1080x1920); repeat for several. Default: 384x384, 720x1280 and 1080x1920.
    #[arg(long = "image-size", value_name = "HxW", value_parser = parse_size)]
    image_sizes: Vec<(usize, usize)>,
    /// A video frame count to count placeholder tokens for; repeat for several. Default: 8, 16
    /// and 32.
    #[arg(long = "video-frames", value_name = "N")]
    video_frames: Vec<usize>,
    /// Also load the weights (memory-mapped, converted to --dtype): report the load time and
    /// the stored tensors the model does not use. Without it only file headers are read.
    #[arg(long)]
    load: bool,
    /// Compute dtype for --load: f32, bf16 or f16.
    #[arg(long, default_value = "f32", value_name = "f32|bf16|f16", value_parser = parse_dtype)]
    dtype: ComputeDType,
}

fn parse_size(s: &str) -> std::result::Result<(usize, usize), String> {
    let bad = || format!("expected HEIGHTxWIDTH in pixels, e.g. 1080x1920, got {s:?}");
    let (h, w) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let h: usize = h.trim().parse().map_err(|_| bad())?;
    let w: usize = w.trim().parse().map_err(|_| bad())?;
    if h == 0 || w == 0 {
        return Err(format!("image sizes must be positive, got {s:?}"));
    }
    Ok((h, w))
}

pub fn run(args: InspectArgs) -> Result<()> {
    let spec = args.model.as_deref().or(args.model_flag.as_deref());
    if args.video_frames.contains(&0) {
        bail!("--video-frames must be at least 1");
    }
    let model = resolve(spec, args.revision.as_deref())?;
    let dir = &model.dir;
    let cfg = LlavaOnevisionConfig::from_file(&dir.join("config.json"))
        .with_context(|| format!("reading {}", dir.join("config.json").display()))?;

    // Sections that fail are reported in place; the command fails at the end if any did.
    let mut problems: Vec<String> = vec![];
    let mut o = String::new();

    say!(o, "model      {}", model.served_name);
    say!(o, "directory  {}", dir.display());
    print_architecture(&mut o, &cfg);

    say!(o, "weights");
    if let Err(e) = print_weights(&mut o, dir, &cfg) {
        problem(&mut o, &mut problems, "weights", e);
    }

    say!(
        o,
        "image tokens (one image per message: {})",
        layout_name(&cfg)
    );
    let sizes = if args.image_sizes.is_empty() {
        DEFAULT_SIZES
    } else {
        &args.image_sizes
    };
    for &(h, w) in sizes {
        let (count, grid) = match cfg.aspect_ratio {
            AspectRatio::Pad => (image_token_count((h, w), ImageLayout::Single, &cfg), None),
            _ => (
                num_image_tokens(h, w, &cfg),
                Some(anyres_grid((h, w), &cfg)),
            ),
        };
        match grid {
            Some((r, c)) => say!(
                o,
                "  {:>12}  {count:>6} tokens  ({r}x{c} tiles + base)",
                format!("{h}x{w}")
            ),
            None => say!(o, "  {:>12}  {count:>6} tokens", format!("{h}x{w}")),
        }
    }
    say!(
        o,
        "  several images in one message: {} tokens each (one square-padded tile + newline)",
        image_token_count((1, 1), ImageLayout::Single, &cfg)
    );
    say!(o, "video tokens");
    let frames = if args.video_frames.is_empty() {
        DEFAULT_FRAMES
    } else {
        &args.video_frames
    };
    for &n in frames {
        say!(
            o,
            "  {:>12}  {:>6} tokens",
            format!("{n} frames"),
            num_video_tokens(n, &cfg)
        );
    }

    say!(o, "processor");
    if let Err(e) = print_processor(&mut o, dir) {
        problem(&mut o, &mut problems, "processor", e);
    }
    say!(o, "tokenizer");
    if let Err(e) = print_tokens(&mut o, dir, &cfg) {
        problem(&mut o, &mut problems, "tokenizer", e);
    }
    if problems.is_empty() {
        // The cross-checks loading does (placeholder ids, tile size, pinpoints).
        if let Err(e) = onevision_processor::Processor::from_dir(dir, &cfg) {
            say!(o, "consistency");
            problem(&mut o, &mut problems, "consistency", e.into());
        }
    }
    if args.load {
        say!(o, "load ({})", args.dtype);
        if let Err(e) = print_load(&mut o, &model, args.dtype) {
            problem(&mut o, &mut problems, "load", e);
        }
    }
    let _ = std::io::stdout().write_all(o.as_bytes());
    if !problems.is_empty() {
        bail!(
            "{} is not a usable checkpoint: {}",
            model.served_name,
            problems.join("; ")
        );
    }
    Ok(())
}

/// Reports a failed section in place and remembers it.
fn problem(o: &mut String, problems: &mut Vec<String>, section: &str, e: anyhow::Error) {
    let text = crate::error_chain(&e);
    say!(o, "  error: {text}");
    problems.push(format!("{section}: {text}"));
}

/// The config spelling of an activation.
fn act_name(a: Activation) -> &'static str {
    match a {
        Activation::GeluErf => "gelu",
        Activation::GeluTanh => "gelu_pytorch_tanh",
        Activation::Silu => "silu",
    }
}

fn layout_name(cfg: &LlavaOnevisionConfig) -> String {
    match cfg.aspect_ratio {
        AspectRatio::Pad => "padded to one square tile".into(),
        AspectRatio::AnyRes => "AnyRes".into(),
        AspectRatio::AnyResMax(n) => format!("AnyRes, features shrunk to at most {n} tiles"),
    }
}

fn print_architecture(o: &mut String, c: &LlavaOnevisionConfig) {
    let v = &c.vision;
    say!(
        o,
        "vision     SigLIP: hidden {}, MLP {}, {} heads, {} layers stored, {} run \
         (features of hidden state {}), {}",
        v.hidden_size,
        v.intermediate_size,
        v.num_attention_heads,
        v.num_hidden_layers,
        c.vision_layers_used(),
        c.vision_feature_layer,
        act_name(v.hidden_act)
    );
    say!(
        o,
        "           {} px tiles, {} px patches: {}x{} = {} tokens per tile",
        v.image_size,
        v.patch_size,
        v.grid(),
        v.grid(),
        v.tokens_per_tile()
    );
    say!(
        o,
        "projector  Linear {} -> {}, {}, Linear {} -> {}{}",
        v.hidden_size,
        c.text.hidden_size,
        act_name(c.projector_act),
        c.text.hidden_size,
        c.text.hidden_size,
        if c.projector_bias {
            ", with bias"
        } else {
            ", no bias"
        }
    );
    let t = &c.text;
    say!(
        o,
        "text       Qwen2: hidden {}, MLP {}, {} layers, {} heads / {} kv heads, head dim {}, {}",
        t.hidden_size,
        t.intermediate_size,
        t.num_hidden_layers,
        t.num_attention_heads,
        t.num_key_value_heads,
        t.head_dim,
        act_name(t.hidden_act)
    );
    say!(
        o,
        "           vocab {}, context {} tokens, rope theta {}, rms eps {:e}",
        t.vocab_size,
        t.max_position_embeddings,
        t.rope_theta,
        t.rms_norm_eps
    );
    say!(
        o,
        "lm head    {}",
        if c.tie_word_embeddings {
            "tied to the input embeddings"
        } else {
            "its own weights"
        }
    );
    let pins = &c.grid_pinpoints;
    let range = match (pins.iter().min(), pins.iter().max()) {
        (Some(a), Some(b)) => format!(" ({}x{} .. {}x{})", a.0, a.1, b.0, b.1),
        _ => String::new(),
    };
    say!(
        o,
        "images     {}; {} AnyRes pinpoints{range}; <image> id {}, <video> id {}",
        layout_name(c),
        pins.len(),
        c.image_token_id,
        c.video_token_id
    );
    say!(
        o,
        "dtype      {} (config.json)",
        c.stored_dtype.as_deref().unwrap_or("not stated")
    );
}

/// Reads only the header of a safetensors file: an 8-byte little-endian length, then that
/// much JSON. The tensor data is never read.
fn read_header(path: &Path) -> Result<Metadata> {
    let what = || format!("reading the safetensors header of {}", path.display());
    let mut f = File::open(path).with_context(what)?;
    let file_len = f.metadata().with_context(what)?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n)
        .with_context(|| format!("{}: shorter than a safetensors header", path.display()))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER || n + 8 > file_len {
        bail!(
            "{}: the header claims {n} bytes in a {file_len}-byte file (not a safetensors file, \
             or truncated)",
            path.display()
        );
    }
    let mut buf = vec![0u8; n as usize];
    f.read_exact(&mut buf).with_context(what)?;
    let meta: Metadata = serde_json::from_slice(&buf).with_context(|| {
        format!(
            "{}: the header is not valid safetensors JSON",
            path.display()
        )
    })?;
    let need = 8 + n + meta.data_len() as u64;
    if need > file_len {
        bail!(
            "{}: the header describes {need} bytes but the file has {file_len} (truncated?)",
            path.display()
        );
    }
    Ok(meta)
}

/// The part of the model a stored tensor belongs to, from its canonical name; `None` for
/// buffers the loader skips.
fn component(stored: &str) -> Option<&'static str> {
    let c = RENAMES.canonical(stored)?;
    Some(if c.starts_with("vision.") {
        "vision"
    } else if c.starts_with("projector.") {
        "projector"
    } else if c.starts_with("text.") {
        "text"
    } else if c.starts_with("lm_head.") {
        "lm_head"
    } else if c == "image_newline" {
        "image_newline"
    } else {
        "other"
    })
}

fn human_count(n: u64) -> String {
    let x = n as f64;
    if x >= 1e9 {
        format!("{:.2} B", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.1} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        n.to_string()
    }
}

fn print_weights(o: &mut String, dir: &Path, cfg: &LlavaOnevisionConfig) -> Result<()> {
    let files = weight_files(dir)?;
    let mut params: BTreeMap<&str, u64> = BTreeMap::new();
    let mut dtypes: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    let mut tensors = 0usize;
    let mut skipped = 0usize;
    let total_bytes: u64 = files.iter().map(|(_, n)| n).sum();
    for (path, len) in &files {
        let header = read_header(path)?;
        let infos = header.tensors();
        say!(
            o,
            "  {:<40} {:>10}  {} tensors",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            human_bytes(*len),
            infos.len()
        );
        for (name, info) in infos {
            let Some(part) = component(&name) else {
                skipped += 1;
                continue;
            };
            let n: u64 = info.shape.iter().map(|&d| d as u64).product();
            tensors += 1;
            *params.entry(part).or_default() += n;
            let d = dtypes.entry(format!("{:?}", info.dtype)).or_default();
            d.0 += 1;
            d.1 += n;
        }
    }
    let total: u64 = params.values().sum();
    say!(
        o,
        "  {} file(s), {}; {tensors} tensors, {} parameters{}",
        files.len(),
        human_bytes(total_bytes),
        human_count(total),
        if skipped > 0 {
            format!(" ({skipped} buffers skipped)")
        } else {
            String::new()
        }
    );
    let parts: Vec<String> = [
        "vision",
        "projector",
        "image_newline",
        "text",
        "lm_head",
        "other",
    ]
    .iter()
    .filter_map(|p| params.get(p).map(|n| format!("{p} {}", human_count(*n))))
    .collect();
    say!(o, "  by part: {}", parts.join(", "));
    if cfg.tie_word_embeddings && params.contains_key("lm_head") {
        say!(
            o,
            "  (a stored lm_head is not used: the head is tied to the embeddings)"
        );
    }
    let stored: Vec<String> = dtypes
        .iter()
        .map(|(d, (t, n))| format!("{d} ({t} tensors, {} parameters)", human_count(*n)))
        .collect();
    say!(o, "  stored as {}", stored.join(", "));
    Ok(())
}

fn describe_normalize(n: &Normalize) -> String {
    match n {
        Normalize::Separate { rescale, mean_std } => {
            let r = match rescale {
                Some(r) => format!("x * {r}"),
                None => "x (no rescale)".into(),
            };
            match mean_std {
                Some((m, s)) => format!("({r} - mean {m:?}) / std {s:?}"),
                None => format!("{r}, no normalization"),
            }
        }
        Normalize::Fused { mean, std } => {
            format!("(x - {mean:?}) / {std:?} on 0..255 samples (rescale folded in)")
        }
    }
}

fn describe_processor(c: &ProcessorConfig) -> String {
    format!(
        "{}x{}, {}, pad fill {:?}",
        c.size.0,
        c.size.1,
        describe_normalize(&c.normalize),
        c.pad_fill
    )
}

fn print_processor(o: &mut String, dir: &Path) -> Result<()> {
    // The order ProcessorConfigs::from_dir and ChatTemplate::from_dir look in.
    let v5 = dir.join("processor_config.json");
    let layout = if v5.is_file() {
        "transformers 5 (processor_config.json)".to_string()
    } else if dir.join("video_preprocessor_config.json").is_file() {
        "Hub (preprocessor_config.json + video_preprocessor_config.json)".to_string()
    } else {
        "Hub (preprocessor_config.json; no video_preprocessor_config.json: videos use the image \
         settings)"
            .to_string()
    };
    say!(o, "  layout   {layout}");
    let configs = ProcessorConfigs::from_dir(dir)?;
    say!(o, "  image    {}", describe_processor(&configs.image));
    say!(
        o,
        "           {} AnyRes pinpoints",
        configs.image.grid_pinpoints.len()
    );
    say!(o, "  video    {}", describe_processor(&configs.video));
    let template = if dir.join("chat_template.jinja").is_file() {
        "chat_template.jinja"
    } else if dir.join("chat_template.json").is_file() {
        "chat_template.json"
    } else {
        "tokenizer_config.json \"chat_template\""
    };
    ChatTemplate::from_dir(dir)?;
    say!(o, "  template {template}");
    Ok(())
}

fn print_tokens(o: &mut String, dir: &Path, cfg: &LlavaOnevisionConfig) -> Result<()> {
    let tok = TextTokenizer::from_dir(dir)?;
    say!(o, "  vocab    {} tokens (tokenizer.json)", tok.vocab_size());
    let s = tok.special();
    let show = |id: Option<u32>| match id {
        Some(id) => format!("{} {id}", tok.id_token(id).unwrap_or_default()),
        None => "none".into(),
    };
    say!(
        o,
        "  special  image {}, video {}, eos {}, pad {}, bos {}",
        show(s.image),
        show(s.video),
        show(s.eos),
        show(s.pad),
        show(s.bos)
    );
    let gen = dir.join("generation_config.json");
    let gen_eos = if gen.is_file() {
        let text =
            std::fs::read_to_string(&gen).with_context(|| format!("reading {}", gen.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", gen.display()))?;
        v.get("eos_token_id")
            .map(|e| format!(", generation_config.json eos_token_id {e}"))
            .unwrap_or_default()
    } else {
        String::new()
    };
    say!(
        o,
        "  stop     config.json eos ids {:?}{gen_eos}",
        cfg.eos_token_ids
    );
    Ok(())
}

fn print_load(o: &mut String, model: &ResolvedModel, dtype: ComputeDType) -> Result<()> {
    let t = Instant::now();
    let (_, report) =
        onevision_engine::Pipeline::load(&model.dir, dtype, &candle_core::Device::Cpu)
            .with_context(|| format!("loading {}", model.dir.display()))?;
    say!(
        o,
        "  loaded in {:.2} s; {} stored tensors unused",
        t.elapsed().as_secs_f64(),
        report.unused.len()
    );
    for n in &report.unused {
        say!(o, "    {n}");
    }
    Ok(())
}
