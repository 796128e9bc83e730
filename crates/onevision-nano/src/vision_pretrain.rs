//! The vision tower's first, unimodal stage for a model made from nothing: SigLIP's sigmoid
//! image-text loss (Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training", its
//! Algorithm 1; big_vision `trainers/proj/image_text/siglip.py`) over the caption pairs of a
//! LLaVA JSON file, with a small text tower trained beside the vision tower and then dropped:
//!
//! ```text
//! image -> Processor base tile -> SigLIP layers [0, vision_layers_used) -> mean over patches -> Linear Dv->E -> L2 -> x
//! text  -> tokenizer ids -> Embedding V x E, mean over tokens                  -> Linear E->E  -> L2 -> y
//! logits = exp(t') · x·yᵀ + b,  t' = ln 10, b = -10 at init                                        (B, B)
//! loss   = -(1/B) Σ_i Σ_j log σ(z_ij · logits_ij)
//! ```
//!
//! `z_ij` is +1 where the captions of pairs i and j are the same text (the diagonal always),
//! -1 elsewhere. With distinct captions that is the paper's identity; the procedural world
//! repeats captions ("one red circle"), and calling a caption identical to the image's own a
//! negative would ask `x_i·y_i` to be high and low at once. The in-batch image->text accuracy
//! counts likewise: the best-scoring text is right when it is the image's caption or equal to it.
//!
//! The training loop is the train crate's, piece by piece: the tower's weights as f32 `Var`s
//! named as transformers names them (`model.vision_tower.*`), the one SigLIP of the models
//! crate (its nn layers take their differentiable paths when their weights track gradients, as
//! in `onevision train`), AdamW with the Trainer's decay rule, the cosine schedule with warmup,
//! global-norm clipping. The backward is one graph from the pixels to the loss: the tower is
//! small and its activations are all needed at once anyway (the train crate's segment-wise
//! backward exists for the language model's long chain). The output is the input checkpoint
//! with the trained vision tensors written over the old ones in their stored dtype; every other
//! tensor keeps its bytes.
//!
//! `pairs` finds the caption pairs, `model` holds the towers, the loss and the accuracy,
//! `checkpoint` writes the output; this file holds the settings and the loop.

mod checkpoint;
mod model;
mod pairs;

pub use checkpoint::write_checkpoint;
pub use model::{
    forward_backward, new_param, sigmoid_loss, top1_accuracy, uniform, Batch, ImageTextModel,
    StepOutput, TextBatch, Tower, INIT_LOGIT_BIAS, INIT_LOGIT_SCALE,
};
pub use pairs::{caption_pairs, Pair, CAPTION_TASK};

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use onevision_models::llava_ov::packing::ImageLayout;
use onevision_models::LlavaOnevisionConfig;
use onevision_processor::{decode_file, DecodeLimits, Processor};
use onevision_train::log::{Progress, StepRecord};
use onevision_train::optim::{clip_grad_norm_ordered, AdamW, AdamWConfig, Group};
use onevision_train::schedule::{warmup_steps, CosineWithWarmup};
use onevision_train::Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::io;
use crate::{Error, Result};

/// The log file written in the output directory unless [`VisionPretrainConfig::log`] says
/// otherwise.
pub const LOG_FILE: &str = "vision_pretrain_log.jsonl";

// ---------------------------------------------------------------------------------------------
// Settings and results

/// What [`pretrain_vision`] does.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionPretrainConfig {
    /// The checkpoint whose vision tower is trained (llava-hf / transformers 5 layout: config.json,
    /// model.safetensors, tokenizer.json, processor_config.json, chat_template.jinja).
    pub model: PathBuf,
    /// A LLaVA `.json` list or `.jsonl` file (or a `.yaml` mixture), as `onevision train` reads it.
    pub data: PathBuf,
    /// Relative image paths are joined to it; by default to the data file's directory, where
    /// `onevision world` writes them.
    pub image_folder: Option<PathBuf>,
    /// The new checkpoint directory (must not be `model`).
    pub output: PathBuf,
    /// Optimizer steps.
    pub steps: usize,
    /// Pairs per step; between 2 and the number of pairs.
    pub batch_size: usize,
    /// The peak learning rate, of every parameter.
    pub lr: f64,
    /// Warmup steps as a ratio of `steps` (rounded up, as the Trainer does).
    pub warmup_ratio: f64,
    pub weight_decay: f64,
    /// Seeds the heads' initial weights and the pair order.
    pub seed: u64,
    /// The width E of the shared image-text space.
    pub embed_dim: usize,
    /// The JSONL log (default OUTPUT/vision_pretrain_log.jsonl).
    pub log: Option<PathBuf>,
    /// A progress bar on a terminal instead of a printed line every `print_every` steps.
    pub progress: bool,
    /// The global gradient norm is clipped to this.
    pub max_grad_norm: f64,
    /// Steps between printed lines (without a progress bar); 0 prints none.
    pub print_every: usize,
}

impl VisionPretrainConfig {
    /// The settings with the paper's optimizer defaults scaled to a small run: lr 1e-3, weight
    /// decay 1e-4, 10% warmup, 100 steps of 32 pairs, E = 128, clipping at 1.
    pub fn new(model: PathBuf, data: PathBuf, output: PathBuf) -> Self {
        Self {
            model,
            data,
            image_folder: None,
            output,
            steps: 100,
            batch_size: 32,
            lr: 1e-3,
            warmup_ratio: 0.1,
            weight_decay: 1e-4,
            seed: 0,
            embed_dim: 128,
            log: None,
            progress: false,
            max_grad_norm: 1.0,
            print_every: 10,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.log
            .clone()
            .unwrap_or_else(|| self.output.join(LOG_FILE))
    }

    /// Refuses settings that cannot train, saying what is expected.
    fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Invalid(what));
        if self.steps == 0 {
            return bad("steps is 0; expected at least one optimizer step".into());
        }
        if self.embed_dim == 0 {
            return bad(
                "embed_dim is 0; expected the width of the image-text space (e.g. 128)".into(),
            );
        }
        check_optimizer(
            self.lr,
            self.warmup_ratio,
            self.weight_decay,
            self.max_grad_norm,
        )?;
        if self.batch_size < 2 {
            return bad(format!(
                "batch size {} is too small: the sigmoid loss needs at least 2 pairs a batch (the other pairs are the negatives)",
                self.batch_size
            ));
        }
        let same = match (self.model.canonicalize(), self.output.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            return bad(format!(
                "output {} is the input checkpoint; expected a new directory (the input's weights are read while the output is written)",
                self.output.display()
            ));
        }
        Ok(())
    }
}

/// Refuses optimizer settings that cannot train (shared by both vision pretrainings).
pub(crate) fn check_optimizer(
    lr: f64,
    warmup_ratio: f64,
    weight_decay: f64,
    max_grad_norm: f64,
) -> Result<()> {
    let bad = |what: String| Err(Error::Invalid(what));
    if !(lr.is_finite() && lr >= 0.0) {
        return bad(format!("lr is {lr}; expected a finite rate >= 0"));
    }
    if !(0.0..=1.0).contains(&warmup_ratio) {
        return bad(format!(
            "warmup_ratio is {warmup_ratio}; expected a ratio in [0, 1]"
        ));
    }
    if !(weight_decay.is_finite() && weight_decay >= 0.0) {
        return bad(format!(
            "weight_decay is {weight_decay}; expected a finite value >= 0"
        ));
    }
    if max_grad_norm.is_nan() || max_grad_norm <= 0.0 {
        return bad(format!(
            "max_grad_norm is {max_grad_norm}; expected a norm > 0"
        ));
    }
    Ok(())
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionPretrainSummary {
    pub steps: usize,
    /// Caption pairs trained on.
    pub pairs: usize,
    /// The loss of every step, in order.
    pub losses: Vec<f64>,
    pub final_loss: f64,
    /// The last step's in-batch image->text top-1 accuracy.
    pub final_accuracy: f64,
    /// The training loop's wall time (loading and saving excluded).
    pub seconds: f64,
    /// Pairs per second over the training loop.
    pub samples_per_s: f64,
    pub output: PathBuf,
}
// ---------------------------------------------------------------------------------------------
// The loop

/// The pairs of step `k`: epoch `e` visits the pairs in a permutation drawn from the seed and
/// `e` (as `onevision train` draws its epochs), cut into `n / b` whole batches (the remainder
/// waits for a later epoch), so no batch holds a pair twice.
pub fn batch_pairs(step: usize, n: usize, batch_size: usize, seed: u64) -> Vec<usize> {
    let per_epoch = (n / batch_size).max(1);
    let (epoch, k) = (step / per_epoch, step % per_epoch);
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407)).shuffle(&mut order);
    order[k * batch_size..((k + 1) * batch_size).min(n)].to_vec()
}

/// The base tile of each image (the AnyRes base: the image squashed to the tile size,
/// normalized), decoded in parallel.
///
/// # Shapes
/// -> (b, 3, s, s)
fn load_pixels(pairs: &[&Pair], proc: &Processor, device: &Device) -> Result<Tensor> {
    let limits = DecodeLimits::default();
    let tiles = pairs
        .par_iter()
        .map(|p| {
            let img = decode_file(&p.image, &limits).map_err(|e| {
                Error::Invalid(format!(
                    "the image of pair {} ({}) cannot be used: {e}; expected a readable PNG, JPEG, WebP, GIF, BMP or TIFF file",
                    p.id, p.origin
                ))
            })?;
            let px = proc.image(&img, ImageLayout::Base).pixels;
            Ok(Tensor::from_vec(px.data, &px.shape, device)?) // (1, 3, s, s)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&tiles, 0)?)
}

/// Token ids of every pair's text; `Err` for a text without tokens or an id outside the
/// vocabulary.
fn tokenize(pairs: &[Pair], proc: &Processor) -> Result<Vec<Vec<u32>>> {
    let vocab = proc.tokenizer.vocab_size();
    pairs
        .iter()
        .map(|p| {
            let ids = proc.tokenizer.encode(&p.text)?;
            if ids.is_empty() {
                return Err(Error::Invalid(format!(
                    "the caption of pair {} ({}) has no tokens; expected some text",
                    p.id, p.origin
                )));
            }
            if let Some(&bad) = ids.iter().find(|&&i| i as usize >= vocab) {
                return Err(Error::Invalid(format!(
                    "the tokenizer gave id {bad} for pair {} ({}), outside its vocabulary of {vocab}",
                    p.id, p.origin
                )));
            }
            Ok(ids)
        })
        .collect()
}

/// One line of the JSONL log.
#[derive(Debug, Clone, Serialize)]
struct LogLine {
    step: usize,
    loss: f64,
    lr: f64,
    accuracy: f64,
    grad_norm: f64,
    /// The logit scale t = exp(t') and bias b after the update.
    logit_scale: f64,
    logit_bias: f64,
    /// This step's wall time.
    seconds: f64,
    /// Since the loop started.
    elapsed: f64,
    samples_per_s: f64,
}

/// Pretrains the vision tower of `cfg.model` on the caption pairs of `cfg.data` and writes
/// the checkpoint to `cfg.output` (see the module header).
pub fn pretrain_vision(cfg: &VisionPretrainConfig) -> Result<VisionPretrainSummary> {
    cfg.check()?;
    let device = Device::Cpu;
    let model_cfg = LlavaOnevisionConfig::from_file(&cfg.model.join("config.json"))?;
    let proc = Processor::from_dir(&cfg.model, &model_cfg)?;
    let pairs = caption_pairs(&cfg.data, cfg.image_folder.as_deref())?;
    if cfg.batch_size > pairs.len() {
        return Err(Error::Invalid(format!(
            "batch size {} is larger than the {} caption pair(s) of {}; expected at most {1}",
            cfg.batch_size,
            pairs.len(),
            cfg.data.display()
        )));
    }
    let texts = tokenize(&pairs, &proc)?;
    let model = ImageTextModel::load(
        &cfg.model,
        &model_cfg,
        proc.tokenizer.vocab_size(),
        cfg.embed_dim,
        cfg.seed,
        &device,
    )?;
    let tower_params: usize = model.tower().iter().map(|(_, t)| t.elem_count()).sum();
    let all_params: usize = model.params().iter().map(|p| p.var.elem_count()).sum();
    let warmup = warmup_steps(cfg.warmup_ratio, cfg.steps);
    eprintln!(
        "vision pretraining: {} caption pairs, {} steps of {} ({warmup} warmup), {tower_params} tower + {} head parameters, E = {}",
        pairs.len(),
        cfg.steps,
        cfg.batch_size,
        all_params - tower_params,
        cfg.embed_dim
    );

    std::fs::create_dir_all(&cfg.output).map_err(io(&cfg.output))?;
    let log_path = cfg.log_path();
    let mut log = File::create(&log_path).map_err(io(&log_path))?;
    let schedule = CosineWithWarmup::new(warmup, cfg.steps);
    let mut opt = AdamW::new(AdamWConfig {
        weight_decay: cfg.weight_decay,
        ..AdamWConfig::default()
    });
    let mut progress = Progress::new(cfg.steps, cfg.progress);
    let start = Instant::now();
    let mut losses = Vec::with_capacity(cfg.steps);
    let mut accuracy = 0.0;

    for k in 0..cfg.steps {
        let t0 = Instant::now();
        // data
        let idx = batch_pairs(k, pairs.len(), cfg.batch_size, cfg.seed);
        let chosen: Vec<&Pair> = idx.iter().map(|&i| &pairs[i]).collect();
        let ids: Vec<&[u32]> = idx.iter().map(|&i| texts[i].as_slice()).collect();
        let batch = Batch::new(load_pixels(&chosen, &proc, &device)?, &ids, &device)?;
        // forward, loss, backward
        let mut out = forward_backward(&model, &batch)?;
        if !out.loss.is_finite() {
            return Err(Error::Invalid(format!(
                "the loss is {} at step {}; expected a finite loss (lower the learning rate, now {})",
                out.loss,
                k + 1,
                cfg.lr
            )));
        }
        // clip, step, schedule
        let grad_norm = clip_grad_norm_ordered(model.params(), &mut out.grads, cfg.max_grad_norm)?;
        let lr = cfg.lr * schedule.multiplier(k);
        opt.step(model.params(), &out.grads, |_| lr)?;
        // log
        let (t, b) = model.temperature_and_bias()?;
        let seconds = t0.elapsed().as_secs_f64().max(1e-9);
        let line = LogLine {
            step: k + 1,
            loss: out.loss,
            lr,
            accuracy: out.accuracy,
            grad_norm,
            logit_scale: t,
            logit_bias: b,
            seconds,
            elapsed: start.elapsed().as_secs_f64(),
            samples_per_s: idx.len() as f64 / seconds,
        };
        write_line(&mut log, &log_path, &line)?;
        report(cfg, &mut progress, &line, &ids, pairs.len());
        losses.push(out.loss);
        accuracy = out.accuracy;
    }
    progress.finish();
    let seconds = start.elapsed().as_secs_f64();
    write_checkpoint(&cfg.model, &cfg.output, model.tower())?;
    Ok(VisionPretrainSummary {
        steps: cfg.steps,
        pairs: pairs.len(),
        final_loss: losses.last().copied().unwrap_or(f64::NAN),
        losses,
        final_accuracy: accuracy,
        seconds,
        samples_per_s: (cfg.steps * cfg.batch_size) as f64 / seconds.max(1e-9),
        output: cfg.output.clone(),
    })
}

fn write_line(log: &mut File, path: &Path, line: &LogLine) -> Result<()> {
    let text = serde_json::to_string(line)?;
    writeln!(log, "{text}")
        .and_then(|_| log.flush())
        .map_err(io(path))
}

/// The progress bar, or a line every `print_every` steps (and at the first and last).
fn report(
    cfg: &VisionPretrainConfig,
    progress: &mut Progress,
    line: &LogLine,
    ids: &[&[u32]],
    pairs: usize,
) {
    if cfg.progress {
        let tokens: usize = ids.iter().map(|t| t.len()).sum();
        progress.update(&StepRecord {
            step: line.step,
            epoch: (line.step * cfg.batch_size) as f64 / pairs as f64,
            loss: line.loss,
            lr: BTreeMap::from([(Group::Vision.name().to_string(), line.lr)]),
            grad_norm: line.grad_norm,
            tokens: tokens as u64,
            samples_per_s: line.samples_per_s,
            tokens_per_s: tokens as f64 / line.seconds,
            skipped_samples: 0,
            truncated_samples: 0,
        });
        return;
    }
    let every = cfg.print_every;
    if every > 0 && (line.step == 1 || line.step.is_multiple_of(every) || line.step == cfg.steps) {
        eprintln!(
            "step {}/{} loss {:.4} acc {:.3} lr {:.2e} grad_norm {:.3} t {:.2} b {:.2} {:.1} samples/s",
            line.step,
            cfg.steps,
            line.loss,
            line.accuracy,
            line.lr,
            line.grad_norm,
            line.logit_scale,
            line.logit_bias,
            line.samples_per_s
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_whole_permutations_per_epoch() {
        let (n, b) = (10, 3);
        let mut epoch0: Vec<usize> = (0..3).flat_map(|k| batch_pairs(k, n, b, 7)).collect();
        assert_eq!(epoch0.len(), 9);
        epoch0.sort();
        epoch0.dedup();
        assert_eq!(epoch0.len(), 9, "no pair twice in an epoch");
        assert_eq!(batch_pairs(4, n, b, 7), batch_pairs(4, n, b, 7));
        assert_ne!(batch_pairs(0, n, b, 7), batch_pairs(3, n, b, 7));
    }
}
