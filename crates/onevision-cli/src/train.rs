//! `onevision train`: the paper's curriculum (`--stage 1|1.5|2-si|2-ov`) or any mix of flags,
//! and `--check-data` to validate a dataset without training. See docs/TRAINING.md.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use onevision_nn::ComputeDType;
use onevision_train::labels::{LabelMask, Template};
use onevision_train::optim::Group;
use onevision_train::settings::{Images, Length, Stage, TrainConfig};

use crate::checkpoint::parse_dtype;

#[derive(Args)]
pub struct TrainArgs {
    /// The checkpoint to start from (a directory: safetensors, config.json, tokenizer,
    /// template and processor files). Each stage's output is the next stage's --model. Not
    /// needed with --resume.
    #[arg(long, value_name = "DIR", required_unless_present = "resume")]
    model: Option<PathBuf>,
    /// Training samples: a LLaVA-NeXT .json list, a .jsonl file (one sample a line) or a
    /// mixture .yaml (`datasets: [{json_path, sampling_strategy}]`).
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Folder that relative image paths are resolved against.
    #[arg(long, value_name = "DIR")]
    image_folder: Option<PathBuf>,
    /// Folder that relative video paths are resolved against.
    #[arg(long, value_name = "DIR")]
    video_folder: Option<PathBuf>,
    /// Where the final checkpoint goes (intermediate ones to OUTPUT/checkpoint-<step>/).
    #[arg(long, value_name = "DIR", required_unless_present = "check_data")]
    output: Option<PathBuf>,
    /// The JSONL log, one line per optimizer step (default OUTPUT/train_log.jsonl).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// A stage preset: 1 (projector only, lr 1e-3, plain template, base tile), 1.5 (all, lr
    /// 1e-5, vision 2e-6, qwen_1_5, anyres_max_4), 2-si / 2-ov (as 1.5 with anyres_max_9).
    /// Without it: all parts, lr 1e-5, vision 2e-6, qwen_1_5, the checkpoint's image rule.
    #[arg(long, value_name = "1|1.5|2-si|2-ov", value_parser = parse_stage)]
    stage: Option<Stage>,
    /// What trains, comma separated: projector, vision, language (LLaVA-NeXT's
    /// mm_mlp_adapter, mm_vision_tower, mm_language_model; image_newline is language).
    #[arg(long, value_name = "PARTS", value_delimiter = ',', value_parser = parse_part)]
    tunable_parts: Option<Vec<Group>>,
    /// Learning rate of the language model (and of the others unless given).
    #[arg(long, value_name = "LR")]
    lr: Option<f64>,
    /// Learning rate of the vision tower.
    #[arg(long, value_name = "LR")]
    vision_lr: Option<f64>,
    /// Learning rate of the projector.
    #[arg(long, value_name = "LR")]
    projector_lr: Option<f64>,
    /// AdamW's decoupled weight decay (not applied to biases and norm weights).
    #[arg(long, default_value_t = 0.0, value_name = "WD")]
    weight_decay: f64,
    /// Linear warmup over ceil(ratio x total steps), then cosine to zero.
    #[arg(long, default_value_t = 0.03, value_name = "RATIO")]
    warmup_ratio: f64,
    /// Conversation template: plain (stage 1 captions) or qwen_1_5.
    #[arg(long, value_name = "plain|qwen_1_5", value_parser = parse_template)]
    template: Option<Template>,
    /// Which tokens are supervised: original (LLaVA-NeXT's rule, with its un-masking of \n,
    /// <|im_start|> and <|im_end|> everywhere, as the released models were trained) or
    /// assistant-only.
    #[arg(long, default_value = "original", value_name = "original|assistant-only", value_parser = parse_mask)]
    label_mask: LabelMask,
    /// How a single image is tiled: base (one 384-px tile, 729 tokens), anyres_max_N, anyres
    /// or pad. Several images in a sample always take the pad path.
    #[arg(long, value_name = "RULE", value_parser = parse_images)]
    image_aspect_ratio: Option<Images>,
    /// Epochs over the data (default 1).
    #[arg(long, value_name = "N", conflicts_with = "max_steps")]
    epochs: Option<usize>,
    /// Optimizer steps, instead of --epochs.
    #[arg(long, value_name = "N")]
    max_steps: Option<usize>,
    /// Samples per micro-batch (right-padded).
    #[arg(long, default_value_t = 1, value_name = "N")]
    batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1, value_name = "N")]
    grad_accum: usize,
    /// Global gradient-norm clipping (torch's clip_grad_norm_); 0 disables it.
    #[arg(long, default_value_t = 1.0, value_name = "NORM")]
    max_grad_norm: f64,
    /// Seed of the data order and of random mixture sampling.
    #[arg(long, default_value_t = 42, value_name = "N")]
    seed: u64,
    /// Keep the file order (no shuffling between epochs).
    #[arg(long)]
    no_shuffle: bool,
    /// Compute dtype (master weights and optimizer state stay f32).
    #[arg(long, default_value = "f32", value_name = "f32|bf16", value_parser = parse_dtype)]
    dtype: ComputeDType,
    /// Recompute each vision and decoder layer in the backward pass (less memory, more time).
    #[arg(long)]
    gradient_checkpointing: bool,
    /// Most tokens per sample, media tokens included; longer samples are truncated (counted
    /// and reported), samples whose media alone are longer are skipped (reported).
    #[arg(long, default_value_t = 32768, value_name = "N")]
    max_length: usize,
    /// Video frames per second sampled for training.
    #[arg(long, default_value_t = 1.0, value_name = "FPS")]
    video_fps: f64,
    /// At most this many frames per video (taken by linspace over all frames when fps gives more).
    #[arg(long, default_value_t = 32, value_name = "N")]
    frames_upbound: usize,
    /// Save OUTPUT/checkpoint-<step>/ every N steps (the final checkpoint always goes to OUTPUT).
    #[arg(long, value_name = "N")]
    save_steps: Option<usize>,
    /// Continue a run from one of its checkpoints (same data and settings).
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Write the first step's batch, loss and raw gradients (transformers' parameter names) to
    /// this safetensors file.
    #[arg(long, value_name = "FILE")]
    dump_grads: Option<PathBuf>,
    /// Skip samples with problems (counted and listed) instead of refusing to start.
    #[arg(long)]
    skip_bad_samples: bool,
    /// Validate the dataset without training: samples per modality, token-length percentiles
    /// and every problem found. Exits with 1 when there is a problem.
    #[arg(long)]
    check_data: bool,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    no_progress: bool,
}

fn parse_stage(s: &str) -> std::result::Result<Stage, String> {
    Stage::parse(s)
        .ok_or_else(|| format!("unknown stage {s:?}; expected one of {}", Stage::ACCEPTED))
}

fn parse_part(s: &str) -> std::result::Result<Group, String> {
    match s.trim() {
        "projector" | "mm_mlp_adapter" => Ok(Group::Projector),
        "vision" | "mm_vision_tower" => Ok(Group::Vision),
        "language" | "mm_language_model" => Ok(Group::Language),
        other => Err(format!(
            "unknown part {other:?}; expected projector, vision or language"
        )),
    }
}

fn parse_template(s: &str) -> std::result::Result<Template, String> {
    s.parse::<Template>().map_err(|e| e.to_string())
}

fn parse_mask(s: &str) -> std::result::Result<LabelMask, String> {
    s.parse::<LabelMask>().map_err(|e| e.to_string())
}

fn parse_images(s: &str) -> std::result::Result<Images, String> {
    Images::parse(s)
        .ok_or_else(|| format!("unknown image rule {s:?}; expected {}", Images::ACCEPTED))
}

impl TrainArgs {
    /// The preset, then the flags.
    fn config(&self) -> Result<TrainConfig> {
        let preset = self.stage.map(Stage::preset);
        let parts = match (&self.tunable_parts, &preset) {
            (Some(p), _) => {
                let mut p = p.clone();
                p.sort_by_key(|g| g.name());
                p.dedup();
                p
            }
            (None, Some(pr)) => pr.parts.clone(),
            (None, None) => vec![Group::Projector, Group::Vision, Group::Language],
        };
        let lr = self.lr.or(preset.as_ref().map(|p| p.lr)).unwrap_or(1e-5);
        let vision_lr = self
            .vision_lr
            .or(match &preset {
                Some(p) => p.vision_lr,
                None if self.lr.is_none() => Some(2e-6),
                None => None,
            })
            .unwrap_or(lr);
        let projector_lr = self.projector_lr.unwrap_or(lr);
        let template = self
            .template
            .or(preset.as_ref().map(|p| p.template))
            .unwrap_or(Template::Qwen15);
        let images = self
            .image_aspect_ratio
            .or(preset.as_ref().map(|p| p.images))
            .unwrap_or(Images::Checkpoint);
        let length = match (self.epochs, self.max_steps) {
            (_, Some(s)) => Length::Steps(s),
            (Some(e), None) => Length::Epochs(e),
            (None, None) => Length::Epochs(1),
        };
        for (what, v) in [
            ("--batch-size", self.batch_size),
            ("--grad-accum", self.grad_accum),
            ("--max-length", self.max_length),
            ("--frames-upbound", self.frames_upbound),
        ] {
            if v == 0 {
                bail!("{what} must be at least 1");
            }
        }
        if matches!(length, Length::Steps(0) | Length::Epochs(0)) {
            bail!("--epochs / --max-steps must be at least 1");
        }
        if self.save_steps == Some(0) {
            bail!("--save-steps must be at least 1");
        }
        if !(self.video_fps.is_finite() && self.video_fps > 0.0) {
            bail!(
                "--video-fps must be a positive number, got {}",
                self.video_fps
            );
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            bail!(
                "--warmup-ratio must be between 0 and 1, got {}",
                self.warmup_ratio
            );
        }
        for (what, v) in [
            ("--lr", lr),
            ("--vision-lr", vision_lr),
            ("--projector-lr", projector_lr),
            ("--weight-decay", self.weight_decay),
            ("--max-grad-norm", self.max_grad_norm),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                bail!("{what} must be a non-negative number, got {v}");
            }
        }
        if self.dtype == ComputeDType::F16 {
            bail!("--dtype f16 is not supported for training (no loss scaling); use f32 or bf16");
        }
        if parts.contains(&Group::Language) && template == Template::Plain && self.stage.is_none() {
            eprintln!(
                "note: training the language model on the plain template (stage 1's captions)"
            );
        }
        let output = self.output.clone().unwrap_or_else(|| PathBuf::from("."));
        let model = match (&self.model, &self.resume) {
            (Some(m), _) => m.clone(),
            (None, Some(r)) => r.clone(),
            (None, None) => bail!("--model is required"),
        };
        Ok(TrainConfig {
            model,
            data: self.data.clone(),
            image_folder: self.image_folder.clone(),
            video_folder: self.video_folder.clone(),
            log: self
                .log
                .clone()
                .unwrap_or_else(|| output.join("train_log.jsonl")),
            output,
            stage: self.stage,
            parts,
            lr,
            vision_lr,
            projector_lr,
            weight_decay: self.weight_decay,
            warmup_ratio: self.warmup_ratio,
            template,
            label_mask: self.label_mask,
            images,
            length,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            max_grad_norm: self.max_grad_norm,
            seed: self.seed,
            shuffle: !self.no_shuffle,
            dtype: self.dtype,
            gradient_checkpointing: self.gradient_checkpointing,
            max_length: self.max_length,
            video_fps: self.video_fps,
            frames_upbound: self.frames_upbound,
            save_steps: self.save_steps,
            resume: self.resume.clone(),
            dump_grads: self.dump_grads.clone(),
            skip_bad_samples: self.skip_bad_samples,
            progress: !self.no_progress && std::io::stderr().is_terminal(),
        })
    }
}

pub fn run(args: TrainArgs) -> Result<ExitCode> {
    let cfg = args.config()?;
    if args.check_data {
        let report = onevision_train::check::check_data(&cfg)
            .with_context(|| format!("checking {}", cfg.data.display()))?;
        print!("{report}");
        return Ok(if report.clean() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let summary = onevision_train::trainer::train(&cfg)?;
    eprintln!(
        "trained {} step(s); final loss {}; checkpoint in {}",
        summary.steps,
        summary
            .losses
            .last()
            .map_or("-".to_string(), |l| format!("{l:.4}")),
        summary.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
