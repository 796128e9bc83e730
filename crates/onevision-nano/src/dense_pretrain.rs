//! The vision tower's dense, placed pretraining: every patch feature learns what lies under it.
//!
//! The sigmoid image-text loss of [`crate::vision_pretrain`] pairs a mean-pooled image with a
//! caption: it teaches what a picture holds on the whole (colors, roughly), not where, and not
//! the shape or the glyph under one patch. onevision-nano's first run showed it: after the
//! curriculum the model named colors 7 times in 10 and shapes, positions, words and chart
//! values at chance, even on training questions. This objective gives the tower that local
//! knowledge before the paper's stages, from scenes and documents the world draws on the fly
//! (train split only, so no test scene is ever seen), with labels the world computes from the
//! same geometry it renders ([`onevision_world::labels`]):
//!
//! ```text
//! world image (side px) -> Processor AnyRes views (base tile + grid tiles, exactly what the model sees)
//!   -> SigLIP layers [0, vision_layers_used) -> per patch: Linear Dv -> 2x2 sub-cells x heads
//! heads per 1/2-patch sub-cell: shape (none + 4), color (background + 8), size (none + 2),
//!   glyph (none + the font's characters), center (an object's center is inside), and, on the
//!   base view only, cell (which of the 3x3 named positions the sub-cell is in)
//! loss = Σ_heads cross-entropy over the sub-cells that head grades, "nothing" and "something"
//!        weighted half and half (balanced_weights)
//! ```
//!
//! A sub-cell's label is the most common nonzero label among a 4x4 grid of points in its source
//! region, when at least [`MIN_HITS`] of the 16 points carry one; else "none". Half-patch
//! sub-cells are what a chart's glyphs need: they are 10 px wide at 192 px, less than a 16-px
//! patch, so one label per patch could not name each glyph.
//!
//! The loop is the one of [`crate::vision_pretrain`]: f32 `Var`s named as transformers names
//! them, AdamW with the Trainer's decay rule, cosine schedule with warmup, global-norm clipping,
//! and the output is the input checkpoint with only the trained tower tensors replaced.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Module, Tensor};
use onevision_models::llava_ov::packing::{select_best_resolution, ImageLayout};
use onevision_models::LlavaOnevisionConfig;
use onevision_nn::Linear;
use onevision_processor::{Processor, RgbImage};
use onevision_train::optim::{clip_grad_norm_ordered, AdamW, AdamWConfig, Grads, Param};
use onevision_train::schedule::{warmup_steps, CosineWithWarmup};
use onevision_train::Rng;
use onevision_world::labels::{
    label_doc, label_scene, LabelMap, COLOR_CLASSES, GLYPH_CLASSES, SHAPE_CLASSES, SIZE_CLASSES,
};
use onevision_world::{rng as wrng, text, Scene, Split};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::io;
use crate::vision_pretrain::{check_optimizer, new_param, uniform, write_checkpoint, Tower};
use crate::{Error, Result};

/// The log file written in the output directory.
pub const LOG_FILE: &str = "dense_pretrain_log.jsonl";

/// Sub-cells per patch side.
pub const SUB: usize = 2;
/// Sample points per sub-cell side.
const POINTS: usize = 4;
/// Points (of 16) that must carry a label for the sub-cell to carry it.
pub const MIN_HITS: usize = 3;

/// The heads, in the order of the linear layer's output blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    Shape,
    Color,
    Size,
    Glyph,
    Center,
    Cell,
}

impl Head {
    pub const ALL: [Head; 6] = [
        Head::Shape,
        Head::Color,
        Head::Size,
        Head::Glyph,
        Head::Center,
        Head::Cell,
    ];

    pub fn classes(self) -> usize {
        match self {
            Head::Shape => SHAPE_CLASSES,
            Head::Color => COLOR_CLASSES,
            Head::Size => SIZE_CLASSES,
            Head::Glyph => GLYPH_CLASSES,
            Head::Center => 2,
            Head::Cell => 9,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Head::Shape => "shape",
            Head::Color => "color",
            Head::Size => "size",
            Head::Glyph => "glyph",
            Head::Center => "center",
            Head::Cell => "cell",
        }
    }
}

/// Classes of all heads of one sub-cell.
pub fn classes_per_sub_cell() -> usize {
    Head::ALL.iter().map(|h| h.classes()).sum()
}

/// What [`pretrain_dense`] does.
#[derive(Debug, Clone, PartialEq)]
pub struct DensePretrainConfig {
    /// The checkpoint whose vision tower is trained (llava-hf layout).
    pub model: PathBuf,
    /// The new checkpoint directory (must not be `model`).
    pub output: PathBuf,
    pub steps: usize,
    /// World images per step (each gives the base tile and the grid tiles).
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_ratio: f64,
    pub weight_decay: f64,
    /// Seeds the head's weights and the world's draws.
    pub seed: u64,
    /// The world's image side in pixels (as `onevision world --image-size`).
    pub image_size: u32,
    /// The share of images that are documents (text cards, bar and pie charts); the rest are
    /// scenes of shapes.
    pub doc_share: f64,
    pub log: Option<PathBuf>,
    pub max_grad_norm: f64,
    /// Steps between printed lines (without a progress bar); 0 prints none.
    pub print_every: usize,
    /// A probe of what the checkpoint's tower already holds: the tower is frozen, only the
    /// fresh head trains, and no checkpoint is written (the log and the summary are the result).
    pub probe: bool,
}

impl DensePretrainConfig {
    /// lr 1e-3, weight decay 1e-4, 5% warmup, 500 steps of 16 images, 192-px images, 40% documents.
    pub fn new(model: PathBuf, output: PathBuf) -> Self {
        Self {
            model,
            output,
            steps: 500,
            batch_size: 16,
            lr: 1e-3,
            warmup_ratio: 0.05,
            weight_decay: 1e-4,
            seed: 0,
            image_size: onevision_world::DEFAULT_IMAGE_SIZE,
            doc_share: 0.4,
            log: None,
            max_grad_norm: 1.0,
            print_every: 25,
            probe: false,
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Invalid(what));
        if self.steps == 0 {
            return bad("steps is 0; expected at least one optimizer step".into());
        }
        if self.batch_size == 0 {
            return bad("batch size is 0; expected at least one image a step".into());
        }
        check_optimizer(
            self.lr,
            self.warmup_ratio,
            self.weight_decay,
            self.max_grad_norm,
        )?;
        if !(0.0..=1.0).contains(&self.doc_share) {
            return bad(format!(
                "doc_share is {}; expected a share in [0, 1]",
                self.doc_share
            ));
        }
        if self.image_size < onevision_world::MIN_IMAGE_SIZE || self.image_size % 2 != 0 {
            return bad(format!(
                "image size {} px; expected an even size of at least {} px, as the world draws",
                self.image_size,
                onevision_world::MIN_IMAGE_SIZE
            ));
        }
        let same = match (self.model.canonicalize(), self.output.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            return bad(format!(
                "output {} is the input checkpoint; expected a new directory",
                self.output.display()
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Views and labels

/// How one processor view maps to the source image: tile pixel (u, v) shows source pixel
/// (x0 + u·scale, y0 + v·scale); `base` marks the base tile (the whole image squashed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    pub x0: f64,
    pub y0: f64,
    pub scale: f64,
    pub base: bool,
}

/// The views the processor makes of a `side`-px square image in the AnyRes layout, in its
/// order: the base tile, then the grid tiles row by row. The grid's frame is the image resized
/// to fit the best resolution (aspect kept, rounded up as transformers' `get_patch_output_size`
/// does) and centered with padding.
pub fn anyres_views(side: u32, cfg: &LlavaOnevisionConfig) -> Vec<View> {
    let t = cfg.vision.image_size as f64;
    let s = f64::from(side);
    let mut views = vec![View {
        x0: 0.0,
        y0: 0.0,
        scale: s / t,
        base: true,
    }];
    let (bh, bw) = select_best_resolution((side as usize, side as usize), &cfg.grid_pinpoints);
    let f = (bw as f64 / s).min(bh as f64 / s);
    let (nw, nh) = (
        ((s * f).ceil()).min(bw as f64),
        ((s * f).ceil()).min(bh as f64),
    );
    let (px, py) = (
        ((bw as f64 - nw) / 2.0).floor(),
        ((bh as f64 - nh) / 2.0).floor(),
    );
    let (kx, ky) = (s / nw, s / nh);
    for r in 0..bh / cfg.vision.image_size {
        for c in 0..bw / cfg.vision.image_size {
            views.push(View {
                x0: (c as f64 * t - px) * kx,
                y0: (r as f64 * t - py) * ky,
                scale: kx.max(ky),
                base: false,
            });
        }
    }
    views
}

/// Targets of one view: per patch (row-major), per sub-cell (row-major), per head, a class, or
/// `None` where the head does not grade it (the cell head off the base tile).
pub fn view_targets(
    map: &LabelMap,
    view: &View,
    grid: usize,
    patch: usize,
) -> Vec<[Option<u32>; 6]> {
    let side = map.side as f64;
    let sub = patch as f64 / SUB as f64;
    let mut out = Vec::with_capacity(grid * grid * SUB * SUB);
    for pr in 0..grid {
        for pc in 0..grid {
            for sr in 0..SUB {
                for sc in 0..SUB {
                    // The sub-cell's tile-pixel box, and its source box.
                    let (u0, v0) = (
                        pc as f64 * patch as f64 + sc as f64 * sub,
                        pr as f64 * patch as f64 + sr as f64 * sub,
                    );
                    let (x0, y0) = (view.x0 + u0 * view.scale, view.y0 + v0 * view.scale);
                    let w = sub * view.scale;
                    let mut counts: [Vec<(u8, usize)>; 4] = Default::default();
                    for j in 0..POINTS {
                        for i in 0..POINTS {
                            let x = x0 + (i as f64 + 0.5) * w / POINTS as f64;
                            let y = y0 + (j as f64 + 0.5) * w / POINTS as f64;
                            if x < 0.0 || y < 0.0 || x >= side || y >= side {
                                continue;
                            }
                            let (a, b, c, d) = map.at(x as u32, y as u32);
                            for (k, v) in [a, b, c, d].into_iter().enumerate() {
                                if v == 0 {
                                    continue;
                                }
                                match counts[k].iter_mut().find(|(l, _)| *l == v) {
                                    Some(e) => e.1 += 1,
                                    None => counts[k].push((v, 1)),
                                }
                            }
                        }
                    }
                    let pick = |c: &Vec<(u8, usize)>| -> u32 {
                        let total: usize = c.iter().map(|e| e.1).sum();
                        if total < MIN_HITS {
                            return 0;
                        }
                        // The most common; the smaller label on a tie.
                        c.iter()
                            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
                            .map_or(0, |e| u32::from(e.0))
                    };
                    let center = map.centers.iter().any(|&(cx, cy)| {
                        let (cx, cy) = (f64::from(cx), f64::from(cy));
                        cx >= x0 && cx < x0 + w && cy >= y0 && cy < y0 + w
                    });
                    let cell = view.base.then(|| {
                        let (mx, my) = (x0 + w / 2.0, y0 + w / 2.0);
                        let k = |v: f64| ((v / side * 3.0).floor() as i64).clamp(0, 2) as u32;
                        k(my) * 3 + k(mx)
                    });
                    out.push([
                        Some(pick(&counts[0])),
                        Some(pick(&counts[1])),
                        Some(pick(&counts[2])),
                        Some(pick(&counts[3])),
                        Some(u32::from(center)),
                        cell,
                    ]);
                }
            }
        }
    }
    out
}

/// One training image: its pixels as the processor prepares them and its label map.
pub struct Drawn {
    pub image: RgbImage,
    pub labels: LabelMap,
}

/// Image `k` of the stream of `seed`: a document (a text card, a bar or a pie chart, in the
/// world's turns) with probability `doc_share`, else a scene; both from the train split only.
pub fn draw(seed: u64, k: usize, side: u32, doc_share: f64) -> Result<Drawn> {
    let mut rng = wrng::Rng::new(wrng::mix(
        wrng::mix(seed ^ 0xDE45_E000_0000_0001) ^ k as u64,
    ));
    let (pixels, labels) = if rng.unit() < doc_share as f32 {
        let item = text::doc_item(Split::Train, seed ^ 0xD0C5, k)
            .map_err(|e| Error::Invalid(format!("the world drew no document {k}: {e}")))?;
        let r = text::render_doc(&item.doc, side);
        (r.pixels, label_doc(&item.doc, side))
    } else {
        let scene = loop {
            if let Some(s) = Scene::sample(&mut rng) {
                if Split::owner(&s) == Split::Train {
                    break s;
                }
            }
        };
        let r = onevision_world::render(&scene, side);
        (r.pixels, label_scene(&scene, side))
    };
    let n = side as usize;
    let image = RgbImage::from_raw(n, n, pixels).map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(Drawn { image, labels })
}

// ---------------------------------------------------------------------------------------------
// The model

/// The tower with one linear head over every patch feature.
pub struct DenseModel {
    tower: Tower,
    head: Linear,
    params: Vec<Param>,
    /// The tower's features are detached: only the head trains (a probe).
    frozen_tower: bool,
}

const HEAD: &str = "dense_head";

impl DenseModel {
    /// With `frozen_tower`, [`DenseModel::params`] holds the head's parameters only and no
    /// gradient reaches the tower.
    pub fn load(
        dir: &Path,
        cfg: &LlavaOnevisionConfig,
        seed: u64,
        frozen_tower: bool,
        device: &Device,
    ) -> Result<Self> {
        let tower = Tower::load(dir, cfg, device)?;
        let dv = cfg.vision.hidden_size;
        let k = SUB * SUB * classes_per_sub_cell();
        let mut rng = Rng::new(seed ^ 0xDE45_E11E_AD00_0001);
        let mut params = if frozen_tower {
            vec![]
        } else {
            tower.params.clone()
        };
        let mut var = |name: String, data: Vec<f32>, shape: &[usize]| {
            new_param(&mut params, name, data, shape, device)
        };
        let w = var(
            format!("{HEAD}.weight"),
            uniform(&mut rng, k * dv, 1.0 / (dv as f64).sqrt()),
            &[k, dv],
        )?;
        let b = var(format!("{HEAD}.bias"), vec![0.0; k], &[k])?;
        Ok(Self {
            tower,
            head: Linear::from_tensors(w, Some(b))?,
            params,
            frozen_tower,
        })
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    pub fn tower_tensors(&self) -> &[(String, Tensor)] {
        &self.tower.tensors
    }

    /// # Shapes
    /// `pixels`: (n, 3, s, s) -> (n·g·g·SUB², classes_per_sub_cell)
    pub fn logits(&self, pixels: &Tensor) -> Result<Tensor> {
        let mut h = self.tower.vision.forward(pixels)?; // (n, g·g, dv)
        if self.frozen_tower {
            h = h.detach();
        }
        let (n, t, d) = h.dims3()?;
        let y = self.head.forward(&h.reshape((n * t, d))?)?; // (n·t, SUB²·C)
        Ok(y.reshape((n * t * SUB * SUB, classes_per_sub_cell()))?)
    }
}

/// One batch: the views' pixels and, per head, the graded rows, their classes and weights.
pub struct DenseBatch {
    pub pixels: Tensor,
    /// Per head: rows (r,), classes (r,), weights (r,) and the classes as a list.
    pub graded: Vec<Graded>,
}

pub struct Graded {
    pub rows: Tensor,
    pub classes: Tensor,
    pub weights: Tensor,
    pub list: Vec<u32>,
}

/// Weights that give "nothing here" (class 0) and "something here" (the rest) half of the
/// head's loss each, where both occur: background covers most of a world image, and without
/// the balance a head learns it first and the objects' and glyphs' classes late. The cell
/// head, whose classes are all positions, weights its rows equally.
pub fn balanced_weights(head: Head, classes: &[u32]) -> Vec<f32> {
    let n = classes.len();
    let fg = classes.iter().filter(|&&c| c != 0).count();
    if head == Head::Cell || fg == 0 || fg == n {
        return vec![1.0 / n.max(1) as f32; n];
    }
    let (wf, wb) = (0.5 / fg as f32, 0.5 / (n - fg) as f32);
    classes
        .iter()
        .map(|&c| if c != 0 { wf } else { wb })
        .collect()
}

impl DenseBatch {
    pub fn new(pixels: Tensor, targets: &[[Option<u32>; 6]], device: &Device) -> Result<Self> {
        let mut graded = vec![];
        for (h, head) in Head::ALL.iter().enumerate() {
            let (rows, classes): (Vec<u32>, Vec<u32>) = targets
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t[h].map(|c| (i as u32, c)))
                .unzip();
            if let Some(bad) = classes.iter().find(|&&c| c as usize >= head.classes()) {
                return Err(Error::Invalid(format!(
                    "a {} label is {bad}; expected fewer than {} classes",
                    head.name(),
                    head.classes()
                )));
            }
            let n = rows.len();
            let weights = balanced_weights(*head, &classes);
            graded.push(Graded {
                rows: Tensor::from_vec(rows, n, device)?,
                classes: Tensor::from_vec(classes.clone(), n, device)?,
                weights: Tensor::from_vec(weights, n, device)?,
                list: classes,
            });
        }
        Ok(Self { pixels, graded })
    }
}

/// `Σ_i w_i · -log softmax(logits_i)[target_i]`, the row maximum held constant as in
/// onevision-train's `cross_entropy_sum`.
///
/// # Shapes
/// `logits`: (n, k), `targets`, `weights`: (n,) -> scalar
pub fn weighted_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
) -> Result<Tensor> {
    let max = logits.max_keepdim(1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(1)?.log()?;
    let logp = shifted.broadcast_sub(&lse)?;
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?; // (n,)
    Ok((picked * weights)?.sum_all()?.neg()?)
}

/// The loss and, per head, the accuracy on the rows whose class is not 0 (for the cell head:
/// on all its rows), `None` when a head had no such row.
pub struct DenseStep {
    pub loss: f64,
    pub accuracy: Vec<Option<f64>>,
    pub grads: Grads,
}

pub fn forward_backward(model: &DenseModel, batch: &DenseBatch) -> Result<DenseStep> {
    let logits = model.logits(&batch.pixels)?;
    let mut loss: Option<Tensor> = None;
    let mut accuracy = vec![];
    let mut offset = 0;
    for (h, head) in Head::ALL.iter().enumerate() {
        let g = &batch.graded[h];
        let list = &g.list;
        let k = head.classes();
        if !list.is_empty() {
            let block = logits
                .narrow(1, offset, k)?
                .contiguous()?
                .index_select(&g.rows, 0)?; // (r, k)
            let ce = weighted_cross_entropy(&block, &g.classes, &g.weights)?;
            let pred: Vec<u32> = block.detach().argmax(1)?.to_vec1()?;
            let (mut hit, mut n) = (0usize, 0usize);
            for (p, &c) in pred.iter().zip(list) {
                if c != 0 || *head == Head::Cell {
                    n += 1;
                    hit += usize::from(*p == c);
                }
            }
            accuracy.push((n > 0).then(|| hit as f64 / n as f64));
            loss = Some(match loss {
                Some(l) => (l + ce)?,
                None => ce,
            });
        } else {
            accuracy.push(None);
        }
        offset += k;
    }
    let loss = loss.ok_or_else(|| Error::Invalid("a batch with nothing to grade".into()))?;
    let store = loss.backward()?;
    let mut grads = Grads::new();
    for p in model.params() {
        if let Some(g) = store.get(p.var.as_tensor()) {
            grads.insert(p.name.clone(), g.clone());
        }
    }
    Ok(DenseStep {
        loss: loss.to_scalar::<f32>()? as f64,
        accuracy,
        grads,
    })
}

// ---------------------------------------------------------------------------------------------
// The loop

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq)]
pub struct DensePretrainSummary {
    pub steps: usize,
    pub losses: Vec<f64>,
    /// Per head, the mean accuracy over the last tenth of the steps.
    pub final_accuracy: Vec<(&'static str, f64)>,
    pub seconds: f64,
    pub images_per_s: f64,
    pub output: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
struct LogLine {
    step: usize,
    loss: f64,
    lr: f64,
    grad_norm: f64,
    accuracy: std::collections::BTreeMap<&'static str, f64>,
    seconds: f64,
    elapsed: f64,
    images_per_s: f64,
}

/// Builds the batch of step `step`: `batch_size` fresh world images, all their AnyRes views.
fn make_batch(
    cfg: &DensePretrainConfig,
    model_cfg: &LlavaOnevisionConfig,
    proc: &Processor,
    views: &[View],
    step: usize,
    device: &Device,
) -> Result<DenseBatch> {
    let grid = model_cfg.vision.grid();
    let patch = model_cfg.vision.patch_size;
    let drawn = (0..cfg.batch_size)
        .into_par_iter()
        .map(|i| {
            let d = draw(
                cfg.seed,
                step * cfg.batch_size + i,
                cfg.image_size,
                cfg.doc_share,
            )?;
            let px = proc.image(&d.image, ImageLayout::AnyRes).pixels;
            if px.shape[0] != views.len() {
                return Err(Error::Invalid(format!(
                    "the processor made {} views of a {} px image; expected {}",
                    px.shape[0],
                    cfg.image_size,
                    views.len()
                )));
            }
            let targets: Vec<[Option<u32>; 6]> = views
                .iter()
                .flat_map(|v| view_targets(&d.labels, v, grid, patch))
                .collect();
            Ok((Tensor::from_vec(px.data, &px.shape, device)?, targets))
        })
        .collect::<Result<Vec<_>>>()?;
    let (pixels, targets): (Vec<Tensor>, Vec<Vec<[Option<u32>; 6]>>) = drawn.into_iter().unzip();
    let targets: Vec<[Option<u32>; 6]> = targets.into_iter().flatten().collect();
    DenseBatch::new(Tensor::cat(&pixels, 0)?, &targets, device)
}

/// Pretrains the vision tower of `cfg.model` densely on world images drawn on the fly and
/// writes the checkpoint to `cfg.output` (see the module header).
pub fn pretrain_dense(cfg: &DensePretrainConfig) -> Result<DensePretrainSummary> {
    cfg.check()?;
    let device = Device::Cpu;
    let model_cfg = LlavaOnevisionConfig::from_file(&cfg.model.join("config.json"))?;
    let proc = Processor::from_dir(&cfg.model, &model_cfg)?;
    let model = DenseModel::load(&cfg.model, &model_cfg, cfg.seed, cfg.probe, &device)?;
    let views = anyres_views(cfg.image_size, &model_cfg);
    let warmup = warmup_steps(cfg.warmup_ratio, cfg.steps);
    eprintln!(
        "dense vision {}: {} steps of {} world images ({} views each, {:.0}% documents), {warmup} warmup",
        if cfg.probe {
            "probe (tower frozen, head only)"
        } else {
            "pretraining"
        },
        cfg.steps,
        cfg.batch_size,
        views.len(),
        cfg.doc_share * 100.0
    );
    std::fs::create_dir_all(&cfg.output).map_err(io(&cfg.output))?;
    let log_path = cfg.log.clone().unwrap_or_else(|| cfg.output.join(LOG_FILE));
    let mut log = File::create(&log_path).map_err(io(&log_path))?;
    let schedule = CosineWithWarmup::new(warmup, cfg.steps);
    let mut opt = AdamW::new(AdamWConfig {
        weight_decay: cfg.weight_decay,
        ..AdamWConfig::default()
    });
    let start = Instant::now();
    let mut losses = Vec::with_capacity(cfg.steps);
    let tail_from = cfg.steps - (cfg.steps / 10).max(1);
    let mut tail: Vec<(f64, usize)> = vec![(0.0, 0); Head::ALL.len()];
    for k in 0..cfg.steps {
        let t0 = Instant::now();
        let batch = make_batch(cfg, &model_cfg, &proc, &views, k, &device)?;
        let mut out = forward_backward(&model, &batch)?;
        if !out.loss.is_finite() {
            return Err(Error::Invalid(format!(
                "the loss is {} at step {}; expected a finite loss (lower the learning rate, now {})",
                out.loss,
                k + 1,
                cfg.lr
            )));
        }
        let grad_norm = clip_grad_norm_ordered(model.params(), &mut out.grads, cfg.max_grad_norm)?;
        let lr = cfg.lr * schedule.multiplier(k);
        opt.step(model.params(), &out.grads, |_| lr)?;
        let seconds = t0.elapsed().as_secs_f64().max(1e-9);
        let accuracy: std::collections::BTreeMap<&'static str, f64> = Head::ALL
            .iter()
            .zip(&out.accuracy)
            .filter_map(|(h, a)| a.map(|a| (h.name(), a)))
            .collect();
        if k >= tail_from {
            for (t, a) in tail.iter_mut().zip(&out.accuracy) {
                if let Some(a) = a {
                    t.0 += a;
                    t.1 += 1;
                }
            }
        }
        let line = LogLine {
            step: k + 1,
            loss: out.loss,
            lr,
            grad_norm,
            accuracy,
            seconds,
            elapsed: start.elapsed().as_secs_f64(),
            images_per_s: cfg.batch_size as f64 / seconds,
        };
        let text = serde_json::to_string(&line)?;
        writeln!(log, "{text}")
            .and_then(|_| log.flush())
            .map_err(io(&log_path))?;
        let every = cfg.print_every;
        if every > 0 && (k == 0 || (k + 1) % every == 0 || k + 1 == cfg.steps) {
            let acc: Vec<String> = line
                .accuracy
                .iter()
                .map(|(h, a)| format!("{h} {a:.2}"))
                .collect();
            eprintln!(
                "step {}/{} loss {:.4} lr {:.2e} grad_norm {:.3} {:.1} images/s | {}",
                k + 1,
                cfg.steps,
                out.loss,
                lr,
                grad_norm,
                line.images_per_s,
                acc.join(" ")
            );
        }
        losses.push(out.loss);
    }
    let seconds = start.elapsed().as_secs_f64();
    if !cfg.probe {
        write_checkpoint(&cfg.model, &cfg.output, model.tower_tensors())?;
    }
    Ok(DensePretrainSummary {
        steps: cfg.steps,
        losses,
        final_accuracy: Head::ALL
            .iter()
            .zip(&tail)
            .filter(|(_, t)| t.1 > 0)
            .map(|(h, t)| (h.name(), t.0 / t.1 as f64))
            .collect(),
        seconds,
        images_per_s: (cfg.steps * cfg.batch_size) as f64 / seconds.max(1e-9),
        output: cfg.output.clone(),
    })
}
