//! The training loop, readable in one sitting:
//! data -> forward -> loss -> backward -> clip -> step -> schedule -> log -> save.
//!
//! Semantics, as transformers' Trainer (5.24) with LLaVA-NeXT's recipe:
//! - **Order.** With shuffling, epoch `e` visits the samples in a permutation drawn from the
//!   seed and `e` (our SplitMix64, [`crate::Rng`]); `--no-shuffle` keeps file order (for a
//!   mixture, entry by entry). Micro-batch `m` of an epoch holds samples `m·B .. (m+1)·B`.
//!   Where a run stands is a pure function of its step, so `--resume` needs only the step.
//! - **Steps.** An optimizer step takes `--grad-accum` micro-batches; the last step of an epoch
//!   takes what is left (the Trainer's remainder), so an epoch has `ceil(ceil(N/B)/accum)` steps.
//! - **Loss.** Each step minimizes the mean cross entropy over the supervised tokens of all its
//!   micro-batches: every micro-batch's CE sum is divided by the step's total count of
//!   supervised (shifted) labels, as the Trainer's `num_items_in_batch` does since transformers
//!   4.46 (it counts unshifted labels, one more per sequence whose first label is unmasked; we
//!   count the tokens actually predicted, so with one micro-batch the loss equals the model's
//!   own `loss` output). The logged loss is that mean.
//! - **Update.** `clip_grad_norm_` over all trained gradients (the norm before clipping is
//!   logged), then AdamW with each group's lr times the cosine-with-warmup multiplier of the
//!   step (the first update uses step 0, i.e. lr 0 under warmup). Frozen parameters have no
//!   gradient and no optimizer state; a parameter without a gradient in a step is skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use onevision_models::{LlavaOnevision, LlavaOnevisionConfig, Media};
use onevision_processor::Processor;

use crate::checkpoint::{self, TrainState};
use crate::data::{self, Dataset, Sample};
use crate::example::{prepare, Example, PrepSettings};
use crate::log::{JsonlLog, Progress, StepRecord};
use crate::optim::{clip_grad_norm_ordered, AdamW, AdamWConfig, Grads};
use crate::params::ModelState;
use crate::schedule::{warmup_steps, CosineWithWarmup};
use crate::settings::{Images, Length, TrainConfig};
use crate::step::forward_backward;
use crate::{Error, Result, Rng};

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct Summary {
    pub steps: usize,
    pub losses: Vec<f64>,
    pub skipped: usize,
    pub truncated: usize,
    pub output: PathBuf,
}

/// The model config as this run trains it: the stage's AnyRes rule replaces the checkpoint's.
pub fn run_config(dir: &Path, images: Images) -> Result<(LlavaOnevisionConfig, serde_json::Value)> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let mut json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Config(format!("{} is not valid JSON: {e}", path.display())))?;
    if let Images::AnyRes(a) = images {
        if let Some(obj) = json.as_object_mut() {
            obj.insert("vision_aspect_ratio".into(), a.name().into());
        }
    }
    if let Some(obj) = json.as_object_mut() {
        obj.insert("dtype".into(), "float32".into());
    }
    let cfg = LlavaOnevisionConfig::from_json(&json)?;
    Ok((cfg, json))
}

/// The dataset, with its problems either refused (listing every one) or skipped and counted.
fn load_data(cfg: &TrainConfig) -> Result<(Dataset, usize)> {
    let ds = data::load(&cfg.data, &cfg.data_options())?;
    let bad = ds.problems.len();
    if bad > 0 && !cfg.skip_bad_samples {
        let list: Vec<String> = ds.problems.iter().map(|p| format!("  {p}")).collect();
        return Err(Error::DataProblems {
            count: bad,
            list: list.join("\n"),
        });
    }
    if ds.samples.is_empty() {
        return Err(Error::Config(format!(
            "{} holds no usable sample ({bad} problem(s)); expected at least one conversation",
            cfg.data.display()
        )));
    }
    Ok((ds, bad))
}

/// The sample order of one epoch.
fn epoch_order(n: usize, epoch: usize, cfg: &TrainConfig) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if cfg.shuffle {
        let mut rng = Rng::new(cfg.seed ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        rng.shuffle(&mut order);
    }
    order
}

/// Steps of one epoch and of the whole run.
pub fn plan(n_samples: usize, cfg: &TrainConfig) -> (usize, usize, usize) {
    let batches = n_samples.div_ceil(cfg.batch_size);
    let per_epoch = batches.div_ceil(cfg.grad_accum).max(1);
    let total = match cfg.length {
        Length::Epochs(e) => e * per_epoch,
        Length::Steps(s) => s,
    };
    (batches, per_epoch, total)
}

/// The samples of each micro-batch of optimizer step `step`.
fn step_samples(step: usize, n: usize, cfg: &TrainConfig) -> Vec<Vec<usize>> {
    let (batches, per_epoch, _) = plan(n, cfg);
    let (epoch, k) = (step / per_epoch, step % per_epoch);
    let order = epoch_order(n, epoch, cfg);
    let first = k * cfg.grad_accum;
    let last = ((k + 1) * cfg.grad_accum).min(batches);
    (first..last)
        .map(|m| order[m * cfg.batch_size..((m + 1) * cfg.batch_size).min(n)].to_vec())
        .collect()
}

/// A run's fixed parts.
struct Run<'a> {
    cfg: &'a TrainConfig,
    proc: Processor,
    prep: PrepSettings,
    samples: Vec<Sample>,
    device: Device,
}

impl Run<'_> {
    /// Prepares the micro-batches of a step, skipping (and counting) unusable samples; what was
    /// skipped or truncated is told through `warn`.
    fn micro_batches(
        &self,
        step: usize,
        skipped: &mut usize,
        truncated: &mut usize,
        warn: &dyn Fn(String),
    ) -> Vec<Vec<Example>> {
        step_samples(step, self.samples.len(), self.cfg)
            .into_iter()
            .map(|ids| {
                ids.into_iter()
                    .filter_map(|i| {
                        let s = &self.samples[i];
                        match prepare(s, &self.proc, &self.prep, &self.device) {
                            Ok(ex) => {
                                if ex.truncated() {
                                    *truncated += 1;
                                    warn(format!(
                                        "warning: {} (id {}) truncated from {} to {} tokens (--max-length)",
                                        s.origin, s.id, ex.input_ids.len(), ex.len
                                    ));
                                }
                                Some(ex)
                            }
                            Err(why) => {
                                *skipped += 1;
                                warn(format!("warning: skipped {} (id {}): {why}", s.origin, s.id));
                                None
                            }
                        }
                    })
                    .collect()
            })
            .collect()
    }
}

/// Prints the resolved settings and trains.
pub fn train(cfg: &TrainConfig) -> Result<Summary> {
    let device = Device::Cpu;
    let weights_dir = cfg.resume.clone().unwrap_or_else(|| cfg.model.clone());
    let (model_cfg, json) = run_config(&weights_dir, cfg.images)?;
    let proc = Processor::from_dir(&weights_dir, &model_cfg)?;
    let (ds, bad) = load_data(cfg)?;
    if bad > 0 {
        eprintln!("warning: skipping {bad} bad sample(s) or entries (--skip-bad-samples):");
        for p in &ds.problems {
            eprintln!("  {p}");
        }
    }
    let state = ModelState::load(&weights_dir, &model_cfg, &cfg.parts, &device)?;
    let (trainable, all) = state.counts();
    eprintln!("{}", cfg.describe());
    let counts = ds.modality_counts();
    eprintln!(
        "samples          {} (text {}, single image {}, multi-image {}, video {}), {bad} skipped as bad",
        ds.samples.len(),
        counts.text,
        counts.single_image,
        counts.multi_image,
        counts.video
    );
    eprintln!("parameters       {trainable} trained of {all}");

    let (batches, per_epoch, total) = plan(ds.samples.len(), cfg);
    let warmup = warmup_steps(cfg.warmup_ratio, total);
    eprintln!("steps            {total} ({per_epoch} per epoch of {batches} micro-batches), {warmup} warmup");

    let schedule = CosineWithWarmup::new(warmup, total);
    let mut opt = AdamW::new(AdamWConfig {
        weight_decay: cfg.weight_decay,
        ..AdamWConfig::default()
    });
    let mut st = TrainState {
        step: 0,
        total_steps: total,
        micro_batches: 0,
        seed: cfg.seed,
        fingerprint: cfg.fingerprint(),
        skipped: 0,
        truncated: 0,
    };
    if let Some(dir) = &cfg.resume {
        st = resume(dir, st, &mut opt, &state)?;
        eprintln!("resumed          at step {} of {total}", st.step);
    }

    let run = Run {
        cfg,
        proc,
        prep: cfg.prep_settings(),
        samples: ds.samples,
        device: device.clone(),
    };
    std::fs::create_dir_all(&cfg.output).map_err(|source| Error::Write {
        path: cfg.output.clone(),
        source,
    })?;
    let mut log = if cfg.resume.is_some() {
        // Lines after the checkpoint's step (a run that went on past it) are dropped.
        JsonlLog::resume(&cfg.log, st.step)?
    } else {
        JsonlLog::create(&cfg.log, false)?
    };
    let mut progress = Progress::new(total, cfg.progress);
    progress.set_position(st.step);
    let mut model = state.build(cfg.dtype.dtype())?;
    let mut losses = vec![];
    let n = run.samples.len();

    while st.step < total {
        let t0 = Instant::now();
        let k = st.step;
        let mbs = run.micro_batches(k, &mut st.skipped, &mut st.truncated, &|m| {
            progress.println(m)
        });
        st.micro_batches += mbs.len();
        let step_tokens: usize = mbs.iter().flatten().map(|e| e.supervised()).sum();
        if step_tokens == 0 {
            eprintln!(
                "warning: step {} has no supervised token (every sample skipped); no update",
                k + 1
            );
            st.step += 1;
            continue;
        }
        let mut grads = Grads::new();
        let loss = forward_backward_all(&model, &state, &mbs, step_tokens, cfg, &mut grads)?;
        if let (0, Some(path)) = (k, &cfg.dump_grads) {
            let all: Vec<&Example> = mbs.iter().flatten().collect();
            dump(path, &model, &all, loss, &grads, &run.proc)?;
        }
        let grad_norm = clip_grad_norm_ordered(state.params(), &mut grads, cfg.max_grad_norm)?;
        let mult = schedule.multiplier(k);
        opt.step(state.params(), &grads, |g| cfg.lr_of(g) * mult)?;
        drop(grads);
        if cfg.dtype.dtype() != DType::F32 {
            // The half-precision copies are casts of the f32 masters: redo them.
            model = state.build(cfg.dtype.dtype())?;
        }
        st.step += 1;
        let rec = record(&st, &mbs, loss, grad_norm, mult, t0, n, bad, cfg);
        log.write(&rec)?;
        progress.update(&rec);
        losses.push(loss);
        if cfg.save_steps.is_some_and(|every| st.step % every == 0) && st.step < total {
            let dir = checkpoint::step_dir(&cfg.output, st.step);
            checkpoint::save(&dir, &state, &json, &weights_dir, Some((&st, &opt)))?;
        }
    }
    progress.finish();
    checkpoint::save(&cfg.output, &state, &json, &weights_dir, Some((&st, &opt)))?;
    let records = crate::log::read_log(&cfg.log)?;
    let plot = cfg.output.join("train_curves.svg");
    crate::plot::plot_curves(&records, &plot)?;
    if st.skipped + st.truncated > 0 {
        eprintln!(
            "{} sample(s) skipped and {} truncated while training (see the warnings above)",
            st.skipped, st.truncated
        );
    }
    drop(model);
    Ok(Summary {
        steps: st.step,
        losses,
        skipped: st.skipped,
        truncated: st.truncated,
        output: cfg.output.clone(),
    })
}

/// Continues from a checkpoint's training state, refusing one made with other settings.
fn resume(
    dir: &Path,
    fresh: TrainState,
    opt: &mut AdamW,
    state: &ModelState,
) -> Result<TrainState> {
    let saved = checkpoint::load_state(dir)?;
    let refuse = |reason: String| Error::Resume {
        path: dir.to_path_buf(),
        reason,
    };
    if saved.fingerprint != fresh.fingerprint {
        return Err(refuse(format!(
            "it was trained with other settings:\n  saved: {}\n  now:   {}",
            saved.fingerprint, fresh.fingerprint
        )));
    }
    if saved.total_steps != fresh.total_steps {
        return Err(refuse(format!(
            "the run planned {} steps and this one plans {} (the schedule would differ); pass the same --epochs/--max-steps and data",
            saved.total_steps, fresh.total_steps
        )));
    }
    opt.load_state_file(state.params(), &dir.join(checkpoint::OPTIMIZER))?;
    Ok(saved)
}

/// Forward and backward of every micro-batch of a step, gradients summed into `grads`;
/// returns the step's loss (the mean over its supervised tokens).
fn forward_backward_all(
    model: &LlavaOnevision,
    state: &ModelState,
    mbs: &[Vec<Example>],
    step_tokens: usize,
    cfg: &TrainConfig,
    grads: &mut Grads,
) -> Result<f64> {
    let mut loss = 0.0;
    for mb in mbs.iter().filter(|mb| !mb.is_empty()) {
        let refs: Vec<&Example> = mb.iter().collect();
        let r = forward_backward(
            model,
            state.params(),
            &refs,
            step_tokens,
            cfg.gradient_checkpointing,
            grads,
        )?;
        loss += r.loss;
    }
    Ok(loss)
}

/// The log line of a finished step.
#[allow(clippy::too_many_arguments)]
fn record(
    st: &TrainState,
    mbs: &[Vec<Example>],
    loss: f64,
    grad_norm: f64,
    mult: f64,
    t0: Instant,
    n_samples: usize,
    bad: usize,
    cfg: &TrainConfig,
) -> StepRecord {
    let secs = t0.elapsed().as_secs_f64().max(1e-9);
    let tokens: usize = mbs.iter().flatten().map(|e| e.tokens()).sum();
    let samples = mbs.iter().map(Vec::len).sum::<usize>();
    StepRecord {
        step: st.step,
        epoch: (st.micro_batches as f64) / (n_samples.div_ceil(cfg.batch_size) as f64),
        loss,
        lr: cfg
            .parts
            .iter()
            .map(|g| (g.name().to_string(), cfg.lr_of(*g) * mult))
            .collect::<BTreeMap<_, _>>(),
        grad_norm,
        tokens: tokens as u64,
        samples_per_s: samples as f64 / secs,
        tokens_per_s: tokens as f64 / secs,
        skipped_samples: (bad + st.skipped) as u64,
        truncated_samples: st.truncated as u64,
    }
}

/// The pad id of dumped batches: the tokenizer's `<|endoftext|>` (Qwen2's pad token), else 0.
fn pad_id(proc: &Processor) -> i64 {
    proc.tokenizer.token_id("<|endoftext|>").unwrap_or(0) as i64
}

/// Writes the first step's batch as the model saw it, the loss and every raw gradient
/// (`--dump-grads`), in the layout transformers' processor and model use: `input_ids`,
/// `labels`, `attention_mask` (b, t) right-padded; `pixel_values` (images, max tiles, 3, s, s)
/// zero-padded with `image_sizes` (images, 2) as (height, width); `pixel_values_videos`
/// (videos, max frames, 3, s, s) with `video_frame_indices`.
fn dump(
    path: &Path,
    model: &LlavaOnevision,
    examples: &[&Example],
    loss: f64,
    grads: &Grads,
    proc: &Processor,
) -> Result<()> {
    let dev = model.device();
    let t = examples.iter().map(|e| e.len).max().unwrap_or(0);
    let b = examples.len();
    let pad = pad_id(proc);
    let (mut ids, mut labels, mut mask) =
        (vec![pad; b * t], vec![-100i64; b * t], vec![0i64; b * t]);
    for (i, e) in examples.iter().enumerate() {
        for p in 0..e.len {
            ids[i * t + p] = e.input_ids[p] as i64;
            labels[i * t + p] = e.labels[p];
            mask[i * t + p] = 1;
        }
    }
    let mut out: Vec<(String, Tensor)> = vec![
        ("input_ids".into(), Tensor::from_vec(ids, (b, t), dev)?),
        ("labels".into(), Tensor::from_vec(labels, (b, t), dev)?),
        (
            "attention_mask".into(),
            Tensor::from_vec(mask, (b, t), dev)?,
        ),
        ("loss".into(), Tensor::new(&[loss as f32], dev)?),
    ];
    let (mut images, mut sizes, mut videos) = (vec![], vec![], vec![]);
    for e in examples {
        for m in &e.media {
            match m {
                Media::Image { pixels, size, .. } => {
                    images.push(pixels.clone());
                    sizes.extend([size.0 as i64, size.1 as i64]);
                }
                Media::Video { frames } => videos.push(frames.clone()),
            }
        }
    }
    if !images.is_empty() {
        out.push(("pixel_values".into(), pad_stack(&images)?));
        let n = images.len();
        out.push(("image_sizes".into(), Tensor::from_vec(sizes, (n, 2), dev)?));
    }
    if !videos.is_empty() {
        out.push(("pixel_values_videos".into(), pad_stack(&videos)?));
        let idx: Vec<&Vec<usize>> = examples.iter().flat_map(|e| &e.frame_indices).collect();
        let most = idx.iter().map(|v| v.len()).max().unwrap_or(0);
        let mut flat = vec![-1i64; idx.len() * most];
        for (i, v) in idx.iter().enumerate() {
            for (j, &f) in v.iter().enumerate() {
                flat[i * most + j] = f as i64;
            }
        }
        out.push((
            "video_frame_indices".into(),
            Tensor::from_vec(flat, (idx.len(), most), dev)?,
        ));
    }
    for (name, g) in grads {
        out.push((name.clone(), g.clone()));
    }
    let map: std::collections::HashMap<String, Tensor> = out.into_iter().collect();
    candle_core::safetensors::save(&map, path).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// Stacks (p_i, 3, s, s) tensors into (n, max p, 3, s, s), zero-padded.
fn pad_stack(xs: &[Tensor]) -> Result<Tensor> {
    let most = xs
        .iter()
        .map(|x| x.dim(0))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let most = most.into_iter().max().unwrap_or(0);
    let padded = xs
        .iter()
        .map(|x| {
            let p = x.dim(0)?;
            if p == most {
                return Ok(x.clone());
            }
            let mut dims = x.dims().to_vec();
            dims[0] = most - p;
            Tensor::cat(&[x, &Tensor::zeros(dims, x.dtype(), x.device())?], 0)
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Tensor::stack(&padded, 0)?)
}
