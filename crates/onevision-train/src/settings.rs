//! The paper's stages as presets, and the resolved settings of a run.
//!
//! | stage | trains | lr | template | single images |
//! |---|---|---|---|---|
//! | `1` | projector | 1e-3 | `plain` | the base tile alone (729 tokens) |
//! | `1.5` | everything, vision at 2e-6 | 1e-5 | `qwen_1_5` | anyres_max_4 |
//! | `2-si`, `2-ov` | everything, vision at 2e-6 | 1e-5 | `qwen_1_5` | anyres_max_9 |
//!
//! (shared/spec/llava-onevision.md §5.1: `pretrain_siglip.sh`, `finetune_si.sh`,
//! `finetune_ov.sh`.) Every value can be overridden by its own flag.

use std::path::PathBuf;

use onevision_models::AspectRatio;
use onevision_nn::ComputeDType;

use crate::example::ImageStrategy;
use crate::labels::{LabelMask, Template};
use crate::optim::Group;

/// A stage of the curriculum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    One,
    OneHalf,
    TwoSi,
    TwoOv,
}

impl Stage {
    pub const ACCEPTED: &'static str = "1, 1.5, 2-si, 2-ov";

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "1" => Some(Self::One),
            "1.5" => Some(Self::OneHalf),
            "2-si" => Some(Self::TwoSi),
            "2-ov" => Some(Self::TwoOv),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::One => "1",
            Self::OneHalf => "1.5",
            Self::TwoSi => "2-si",
            Self::TwoOv => "2-ov",
        }
    }

    /// The preset's trained parts, base lr, vision lr, template and image strategy.
    pub fn preset(self) -> Preset {
        match self {
            Self::One => Preset {
                parts: vec![Group::Projector],
                lr: 1e-3,
                vision_lr: None,
                template: Template::Plain,
                images: Images::Base,
            },
            Self::OneHalf => Preset {
                parts: vec![Group::Projector, Group::Vision, Group::Language],
                lr: 1e-5,
                vision_lr: Some(2e-6),
                template: Template::Qwen15,
                images: Images::AnyRes(AspectRatio::AnyResMax(4)),
            },
            Self::TwoSi | Self::TwoOv => Preset {
                parts: vec![Group::Projector, Group::Vision, Group::Language],
                lr: 1e-5,
                vision_lr: Some(2e-6),
                template: Template::Qwen15,
                images: Images::AnyRes(AspectRatio::AnyResMax(9)),
            },
        }
    }
}

/// How single images are tiled: the base tile alone, or AnyRes with a packing rule (the
/// stage's, or the checkpoint's own `vision_aspect_ratio`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Images {
    Base,
    AnyRes(AspectRatio),
    Checkpoint,
}

impl Images {
    pub const ACCEPTED: &'static str = "base, anyres, anyres_max_N, pad";

    pub fn parse(s: &str) -> Option<Self> {
        if s == "base" {
            return Some(Self::Base);
        }
        AspectRatio::from_name(s).ok().map(Self::AnyRes)
    }

    pub fn name(self) -> String {
        match self {
            Self::Base => "base".into(),
            Self::AnyRes(a) => a.name(),
            Self::Checkpoint => "the checkpoint's vision_aspect_ratio".into(),
        }
    }

    pub fn strategy(self) -> ImageStrategy {
        match self {
            Self::Base => ImageStrategy::Base,
            Self::AnyRes(_) | Self::Checkpoint => ImageStrategy::AnyRes,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Preset {
    pub parts: Vec<Group>,
    pub lr: f64,
    pub vision_lr: Option<f64>,
    pub template: Template,
    pub images: Images,
}

/// How long to train.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Length {
    Epochs(usize),
    Steps(usize),
}

/// Every setting of a run, resolved (presets applied, then the flags).
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub model: PathBuf,
    pub data: PathBuf,
    pub image_folder: Option<PathBuf>,
    pub video_folder: Option<PathBuf>,
    pub output: PathBuf,
    pub log: PathBuf,
    pub stage: Option<Stage>,
    pub parts: Vec<Group>,
    pub lr: f64,
    pub vision_lr: f64,
    pub projector_lr: f64,
    pub weight_decay: f64,
    pub warmup_ratio: f64,
    pub template: Template,
    pub label_mask: LabelMask,
    pub images: Images,
    pub length: Length,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub max_grad_norm: f64,
    pub seed: u64,
    pub shuffle: bool,
    pub dtype: ComputeDType,
    pub gradient_checkpointing: bool,
    pub max_length: usize,
    pub video_fps: f64,
    pub frames_upbound: usize,
    pub save_steps: Option<usize>,
    pub resume: Option<PathBuf>,
    pub dump_grads: Option<PathBuf>,
    pub skip_bad_samples: bool,
    pub progress: bool,
}

impl TrainConfig {
    /// Where the data's media are.
    pub fn data_options(&self) -> crate::data::DataOptions {
        crate::data::DataOptions {
            image_folder: self.image_folder.clone(),
            video_folder: self.video_folder.clone(),
            seed: self.seed,
        }
    }

    /// How samples become model input.
    pub fn prep_settings(&self) -> crate::example::PrepSettings {
        crate::example::PrepSettings {
            template: self.template,
            mask: self.label_mask,
            max_length: self.max_length,
            image_strategy: self.images.strategy(),
            video_fps: self.video_fps,
            frames_upbound: self.frames_upbound,
            limits: onevision_processor::DecodeLimits::default(),
        }
    }

    /// The base lr of a group.
    pub fn lr_of(&self, g: Group) -> f64 {
        match g {
            Group::Projector => self.projector_lr,
            Group::Vision => self.vision_lr,
            Group::Language => self.lr,
        }
    }

    /// The settings a resumed run must share with the run it continues (everything that
    /// changes the numbers; paths, logging and the length may differ).
    pub fn fingerprint(&self) -> String {
        let parts: Vec<&str> = self.parts.iter().map(|g| g.name()).collect();
        format!(
            "parts={} lr={} vision_lr={} projector_lr={} wd={} warmup={} template={:?} mask={:?} \
             images={} batch={} accum={} clip={} seed={} shuffle={} dtype={:?} max_length={} \
             video_fps={} frames={}",
            parts.join(","),
            self.lr,
            self.vision_lr,
            self.projector_lr,
            self.weight_decay,
            self.warmup_ratio,
            self.template,
            self.label_mask,
            self.images.name(),
            self.batch_size,
            self.grad_accum,
            self.max_grad_norm,
            self.seed,
            self.shuffle,
            self.dtype,
            self.max_length,
            self.video_fps,
            self.frames_upbound
        )
    }

    /// The resolved settings, one per line, as printed at start.
    pub fn describe(&self) -> String {
        let parts: Vec<&str> = self.parts.iter().map(|g| g.name()).collect();
        let mut lines = vec![
            format!(
                "stage            {}",
                self.stage.map_or("(none: flags only)", |s| s.name())
            ),
            format!("model            {}", self.model.display()),
            format!("data             {}", self.data.display()),
            format!("output           {}", self.output.display()),
            format!("tunable parts    {}", parts.join(",")),
        ];
        for g in &self.parts {
            lines.push(format!("lr {:<13} {:e}", g.name(), self.lr_of(*g)));
        }
        lines.extend([
            format!(
                "schedule         linear warmup {} then cosine",
                self.warmup_ratio
            ),
            format!("weight decay     {}", self.weight_decay),
            format!("template         {:?}", self.template),
            format!("label mask       {:?}", self.label_mask),
            format!("single images    {}", self.images.name()),
            format!(
                "length           {}",
                match self.length {
                    Length::Epochs(e) => format!("{e} epoch(s)"),
                    Length::Steps(s) => format!("{s} steps"),
                }
            ),
            format!(
                "batch            {} x {} accumulation",
                self.batch_size, self.grad_accum
            ),
            format!("max grad norm    {}", self.max_grad_norm),
            format!("seed / shuffle   {} / {}", self.seed, self.shuffle),
            format!(
                "dtype            {:?}{}",
                self.dtype,
                if self.gradient_checkpointing {
                    ", gradient checkpointing"
                } else {
                    ""
                }
            ),
            format!("max length       {}", self.max_length),
            format!(
                "video            {} fps, at most {} frames",
                self.video_fps, self.frames_upbound
            ),
        ]);
        lines.join("\n")
    }
}
