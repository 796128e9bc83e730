//! `onevision nano`: the pieces of onevision-nano's curriculum that `train`, `world` and `eval`
//! do not cover: a new checkpoint with its own tokenizer (`init`), the language model's
//! text-only pretraining samples (`text`) and the vision tower's sigmoid image-text pretraining
//! (`pretrain-vision`). scripts/train-nano.sh runs them in order; see docs/NANO.md.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use onevision_nano::corpus::{lm_samples, sample_texts, split_families, write_lm_samples};
use onevision_nano::dense_pretrain::{pretrain_dense, DensePretrainConfig};
use onevision_nano::init::{create, NanoDims};
use onevision_nano::tokenizer::DEFAULT_LEARNED_VOCAB;
use onevision_nano::vision_pretrain::{pretrain_vision, VisionPretrainConfig};

#[derive(Args)]
pub struct NanoArgs {
    #[command(subcommand)]
    command: NanoCommand,
}

#[derive(Subcommand)]
enum NanoCommand {
    /// Write a new nano checkpoint (llava-hf layout): a byte-level BPE tokenizer trained over
    /// the world's text, config, processor, chat template and freshly initialised weights.
    Init(InitArgs),
    /// Write the language model's text-only pretraining samples: each train-split scene's
    /// description followed by a question about it and its answer (LLaVA JSON).
    Text(TextArgs),
    /// Pretrain a checkpoint's vision tower alone with SigLIP's sigmoid image-text loss on
    /// its caption samples (mean-pooled tower + linear head against a bag-of-tokens text
    /// tower); writes the checkpoint with only the tower's tensors replaced.
    PretrainVision(PretrainVisionArgs),
    /// Pretrain a checkpoint's vision tower alone with a dense, placed objective: every patch
    /// feature predicts the shape, color, size, glyph, object center (and on the base tile the
    /// 3x3 position) under each of its half-patch sub-cells, on train-split world images drawn
    /// on the fly; writes the checkpoint with only the tower's tensors replaced.
    PretrainDense(PretrainDenseArgs),
    /// Split a samples file by family (its samples' `task` field) into `<stem>-<task>.json`
    /// beside it, for the stages' mixtures.
    Families {
        /// The samples file (e.g. the world's train.json).
        #[arg(long, value_name = "FILE")]
        data: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Size {
    /// The shipped model's shape.
    Default,
    /// A few thousand parameters, for smoke runs.
    Micro,
}

#[derive(Args)]
struct InitArgs {
    /// Output checkpoint directory.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The world's train samples (`onevision world --split train`), whose text the tokenizer
    /// learns; the text samples of `nano text` for the same seed are added.
    #[arg(long, value_name = "FILE")]
    world: PathBuf,
    #[arg(long, value_enum, default_value = "default")]
    size: Size,
    /// Learned vocabulary (the 256 bytes included); the 5 special tokens come on top.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_LEARNED_VOCAB)]
    vocab: usize,
    /// Seed of the initial weights and of the text samples added to the tokenizer's text.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct TextArgs {
    /// Output JSON file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The world seed whose train-split scenes are described.
    #[arg(long, value_name = "S")]
    seed: u64,
    #[arg(long, value_name = "N", default_value_t = 20000)]
    count: usize,
}

#[derive(Args)]
struct PretrainVisionArgs {
    /// The checkpoint whose vision tower is trained.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// LLaVA samples (.json/.jsonl/.yaml); the `caption` family's one-image samples are the
    /// pairs (every one-image sample when no sample has a `task`).
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Relative image paths are joined to it (default: the data file's directory).
    #[arg(long, value_name = "DIR")]
    image_folder: Option<PathBuf>,
    /// The new checkpoint directory.
    #[arg(long, value_name = "DIR")]
    output: PathBuf,
    #[arg(long, value_name = "N", default_value_t = 100)]
    steps: usize,
    /// Pairs per step (the in-batch negatives of the sigmoid loss).
    #[arg(long, value_name = "N", default_value_t = 32)]
    batch_size: usize,
    #[arg(long, value_name = "LR", default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, value_name = "RATIO", default_value_t = 0.1)]
    warmup_ratio: f64,
    #[arg(long, value_name = "WD", default_value_t = 1e-4)]
    weight_decay: f64,
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Width of the shared image-text space.
    #[arg(long, value_name = "E", default_value_t = 128)]
    embed_dim: usize,
    /// A line every 10 steps instead of a progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
struct PretrainDenseArgs {
    /// The checkpoint whose vision tower is trained.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// The new checkpoint directory.
    #[arg(long, value_name = "DIR")]
    output: PathBuf,
    #[arg(long, value_name = "N", default_value_t = 500)]
    steps: usize,
    /// World images per step (each gives all its AnyRes views).
    #[arg(long, value_name = "N", default_value_t = 16)]
    batch_size: usize,
    #[arg(long, value_name = "LR", default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, value_name = "RATIO", default_value_t = 0.05)]
    warmup_ratio: f64,
    #[arg(long, value_name = "WD", default_value_t = 1e-4)]
    weight_decay: f64,
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// The world's image side (as `onevision world --image-size`).
    #[arg(long, value_name = "PX", default_value_t = onevision_world::DEFAULT_IMAGE_SIZE)]
    image_size: u32,
    /// The share of documents (text cards, charts) among the images; the rest are scenes.
    #[arg(long, value_name = "SHARE", default_value_t = 0.4)]
    doc_share: f64,
    /// Measure what the checkpoint's tower already holds: freeze it, train a fresh head only,
    /// write the log but no checkpoint.
    #[arg(long)]
    probe: bool,
}

pub fn run(args: NanoArgs) -> Result<()> {
    match args.command {
        NanoCommand::Init(a) => init(a),
        NanoCommand::Text(a) => {
            write_lm_samples(&a.out, a.seed, a.count)
                .with_context(|| format!("writing {}", a.out.display()))?;
            println!("{} text samples -> {}", a.count, a.out.display());
            Ok(())
        }
        NanoCommand::PretrainVision(a) => {
            let mut cfg = VisionPretrainConfig::new(a.model, a.data, a.output);
            cfg.image_folder = a.image_folder;
            cfg.steps = a.steps;
            cfg.batch_size = a.batch_size;
            cfg.lr = a.lr;
            cfg.warmup_ratio = a.warmup_ratio;
            cfg.weight_decay = a.weight_decay;
            cfg.seed = a.seed;
            cfg.embed_dim = a.embed_dim;
            cfg.progress = !a.no_progress && std::io::stderr().is_terminal();
            let s = pretrain_vision(&cfg).context("pretraining the vision tower")?;
            println!(
                "pretrained the vision tower: {} steps over {} pairs, final loss {:.4}, in-batch \
                 image->text accuracy {:.3}, {:.0} s ({:.1} pairs/s); checkpoint in {}",
                s.steps,
                s.pairs,
                s.final_loss,
                s.final_accuracy,
                s.seconds,
                s.samples_per_s,
                s.output.display()
            );
            Ok(())
        }
        NanoCommand::PretrainDense(a) => {
            let mut cfg = DensePretrainConfig::new(a.model, a.output);
            cfg.steps = a.steps;
            cfg.batch_size = a.batch_size;
            cfg.lr = a.lr;
            cfg.warmup_ratio = a.warmup_ratio;
            cfg.weight_decay = a.weight_decay;
            cfg.seed = a.seed;
            cfg.image_size = a.image_size;
            cfg.doc_share = a.doc_share;
            cfg.probe = a.probe;
            let s = pretrain_dense(&cfg).context("pretraining the vision tower densely")?;
            let acc: Vec<String> = s
                .final_accuracy
                .iter()
                .map(|(h, a)| format!("{h} {a:.3}"))
                .collect();
            let (what, out) = if cfg.probe {
                (
                    "probed the frozen vision tower with a fresh dense head",
                    "log (no checkpoint) in",
                )
            } else {
                ("pretrained the vision tower densely", "checkpoint in")
            };
            println!(
                "{what}: {} steps, final loss {:.4}, accuracy over the last tenth ({}), {:.0} s \
                 ({:.1} images/s); {out} {}",
                s.steps,
                s.losses.last().copied().unwrap_or(f64::NAN),
                acc.join(", "),
                s.seconds,
                s.images_per_s,
                s.output.display()
            );
            Ok(())
        }
        NanoCommand::Families { data } => {
            let fams =
                split_families(&data).with_context(|| format!("splitting {}", data.display()))?;
            let list: Vec<String> = fams.iter().map(|(t, n)| format!("{t} {n}")).collect();
            println!("{} families: {}", fams.len(), list.join(", "));
            Ok(())
        }
    }
}

fn init(a: InitArgs) -> Result<()> {
    let dims = match a.size {
        Size::Default => NanoDims::DEFAULT,
        Size::Micro => NanoDims::MICRO,
    };
    let mut texts = sample_texts(&a.world)?;
    let extra = lm_samples(a.seed, 2000)?;
    for s in &extra {
        for t in s["conversations"].as_array().into_iter().flatten() {
            texts.push(t["value"].as_str().unwrap_or_default().to_owned());
        }
    }
    if texts.len() < 10 {
        bail!(
            "{} holds almost no text; expected the world's train samples",
            a.world.display()
        );
    }
    let tok = create(&a.out, &dims, &texts, a.vocab, a.seed)
        .with_context(|| format!("writing the checkpoint {}", a.out.display()))?;
    println!(
        "nano checkpoint -> {} (vocabulary {}, <image> {}, <video> {}, {:?})",
        a.out.display(),
        tok.vocab_size(),
        tok.image_id,
        tok.video_id,
        dims
    );
    Ok(())
}
