//! The two towers and the loss: the checkpoint's SigLIP with an image head, a bag-of-tokens
//! text tower, the logit scale and bias, SigLIP's sigmoid loss and the in-batch accuracy.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Module, Tensor, Var};
use onevision_models::llava_ov::weights::RENAMES;
use onevision_models::siglip::SiglipVision;
use onevision_models::LlavaOnevisionConfig;
use onevision_nn::{Linear, RenameTable, WeightFiles};
use onevision_train::optim::{decays, Grads, Group, Param};
use onevision_train::params::param_name;
use onevision_train::Rng;

use crate::{Error, Result};

/// The logit scale's and bias's initial values (the paper's §3.2: t' = log 10, b = -10).
pub const INIT_LOGIT_SCALE: f64 = std::f64::consts::LN_10;
pub const INIT_LOGIT_BIAS: f64 = -10.0;

/// Names of the heads' parameters (they are not part of the checkpoint). AdamW's [`decays`]
/// applies to them as to any name: the projections and the embedding decay, biases do not, and
/// `logit_scale` does (open_clip exempts it; with the Trainer's rule it is a plain weight).
const IMAGE_PROJ: &str = "siglip_heads.image_projection";
const TEXT_EMBED: &str = "siglip_heads.text_embedding.weight";
const TEXT_PROJ: &str = "siglip_heads.text_projection";
const LOGIT_SCALE: &str = "siglip_heads.logit_scale";
const LOGIT_BIAS: &str = "siglip_heads.logit_bias";

/// The vision tower is rebuilt from canonical names, which need no renaming.
const CANONICAL: RenameTable = RenameTable {
    prefixes: &[],
    ignored_suffixes: &[],
    layouts: "canonical names (vision.*)",
};

/// The texts of a batch as the text tower takes them.
#[derive(Debug, Clone)]
pub struct TextBatch {
    /// Every text's ids, one after the other: (n,).
    ids: Tensor,
    /// Row i averages text i's positions: (b, n), 1/len_i at its positions, else 0.
    mean: Tensor,
}

impl TextBatch {
    /// `Err` for an empty text (its mean would be 0/0).
    pub fn new(texts: &[&[u32]], device: &Device) -> Result<Self> {
        let n: usize = texts.iter().map(|t| t.len()).sum();
        let b = texts.len();
        let mut ids = Vec::with_capacity(n);
        let mut mean = vec![0f32; b * n];
        for (i, t) in texts.iter().enumerate() {
            if t.is_empty() {
                return Err(Error::Invalid(format!(
                    "text {i} of the batch has no tokens; expected at least one"
                )));
            }
            let w = 1.0 / t.len() as f32;
            for &id in t.iter() {
                mean[i * n + ids.len()] = w;
                ids.push(id);
            }
        }
        Ok(Self {
            ids: Tensor::from_vec(ids, n, device)?,
            mean: Tensor::from_vec(mean, (b, n), device)?,
        })
    }
}

/// One batch: the images' base tiles, the captions, and which pairs are positives.
#[derive(Debug, Clone)]
pub struct Batch {
    /// (b, 3, s, s)
    pub pixels: Tensor,
    pub texts: TextBatch,
    /// `same[i][j]`: captions i and j are the same text.
    pub same: Vec<Vec<bool>>,
    /// z of the loss: +1 where `same`, else -1, (b, b).
    pub labels: Tensor,
}

impl Batch {
    pub fn new(pixels: Tensor, texts: &[&[u32]], device: &Device) -> Result<Self> {
        let b = texts.len();
        if pixels.dim(0)? != b {
            return Err(Error::Invalid(format!(
                "{} images for {b} texts; expected one image per text",
                pixels.dim(0)?
            )));
        }
        let same: Vec<Vec<bool>> = (0..b)
            .map(|i| (0..b).map(|j| texts[i] == texts[j]).collect())
            .collect();
        let z: Vec<f32> = same
            .iter()
            .flatten()
            .map(|&s| if s { 1.0 } else { -1.0 })
            .collect();
        Ok(Self {
            pixels,
            texts: TextBatch::new(texts, device)?,
            same,
            labels: Tensor::from_vec(z, (b, b), device)?,
        })
    }
}

/// Whether a canonical tensor is one the used part of the tower reads: the embeddings and the
/// first `used` encoder layers (not the unused last layers, `post_layernorm` or the head).
fn in_tower(canonical: &str, used: usize) -> bool {
    if canonical.starts_with("vision.embeddings.") {
        return true;
    }
    canonical
        .strip_prefix("vision.encoder.layers.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|i| i.parse::<usize>().ok())
        .is_some_and(|i| i < used)
}

/// The weight loader's errors, through the model crate's (this crate's error type has none of
/// its own for them).
fn nn(e: onevision_nn::Error) -> Error {
    Error::Models(e.into())
}

/// `U(-a, a)` values from the seeded generator (nn.Linear's weight bound for a = 1/sqrt(fan_in)).
pub fn uniform(rng: &mut Rng, n: usize, a: f64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
            ((2.0 * u - 1.0) * a) as f32
        })
        .collect()
}

/// `N(0, std²)` values (Box-Muller) from the seeded generator.
fn normal(rng: &mut Rng, n: usize, std: f64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1 = ((rng.next_u64() >> 11) as f64 + 1.0) / ((1u64 << 53) as f64 + 1.0); // (0, 1]
            let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let r = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            (r * std) as f32
        })
        .collect()
}

/// `x / |x|` per row.
///
/// # Shapes
/// `x`: (b, e) -> (b, e)
fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    // As F.normalize's eps keeps a zero row finite.
    let norm = (x.sqr()?.sum_keepdim(1)? + 1e-12)?.sqrt()?; // (b, 1)
    Ok(x.broadcast_div(&norm)?)
}

/// The used part of a checkpoint's vision tower (per `vision_feature_layer`: the embeddings
/// and the first layers, not `post_layernorm` or the head), every weight an f32 `Var` in the
/// vision group, named as transformers names them.
pub struct Tower {
    pub vision: SiglipVision,
    /// In canonical-name order.
    pub params: Vec<Param>,
    /// The trained tensors by canonical name (`vision.*`), the `Var`s' tensors.
    pub tensors: Vec<(String, Tensor)>,
}

impl Tower {
    pub fn load(dir: &Path, cfg: &LlavaOnevisionConfig, device: &Device) -> Result<Self> {
        let files = WeightFiles::open_dir(dir, RENAMES).map_err(nn)?;
        let used = cfg.vision_layers_used();
        let (mut params, mut tensors, mut map) = (vec![], vec![], HashMap::new());
        for name in files.canonical_names() {
            if !in_tower(&name, used) {
                continue;
            }
            let var = Var::from_tensor(&files.tensor(&name, DType::F32, device).map_err(nn)?)?;
            let pname = param_name(&name);
            params.push(Param {
                decay: decays(&pname),
                name: pname,
                var: var.clone(),
                group: Group::Vision,
            });
            map.insert(name.clone(), var.as_tensor().clone());
            tensors.push((name, var.as_tensor().clone()));
        }
        let files = Arc::new(WeightFiles::from_tensors(map, CANONICAL).map_err(nn)?);
        let w = files.weights(DType::F32, device);
        let vision = SiglipVision::new(&cfg.vision, used, &w.pp("vision"))?;
        Ok(Self {
            vision,
            params,
            tensors,
        })
    }
}

/// A new f32 `Var` of a pretraining head, in the vision group, appended to `params`; returns
/// its tensor.
pub fn new_param(
    params: &mut Vec<Param>,
    name: String,
    data: Vec<f32>,
    shape: &[usize],
    device: &Device,
) -> Result<Tensor> {
    let v = Var::from_tensor(&Tensor::from_vec(data, shape, device)?)?;
    params.push(Param {
        decay: decays(&name),
        name,
        var: v.clone(),
        group: Group::Vision,
    });
    Ok(v.as_tensor().clone())
}

/// The vision tower with the image and text heads of the sigmoid loss, every weight an f32
/// `Var`.
pub struct ImageTextModel {
    vision: SiglipVision,
    image_proj: Linear,
    text_embed: Tensor,
    text_proj: Linear,
    logit_scale: Tensor,
    logit_bias: Tensor,
    /// Tower first (canonical-name order), then the heads.
    params: Vec<Param>,
    /// The tower's trained tensors by canonical name (the `Var`s' tensors).
    tower: Vec<(String, Tensor)>,
}

impl ImageTextModel {
    /// Loads the used part of the checkpoint's vision tower (per `vision_feature_layer`) from
    /// `dir` and makes new heads for a vocabulary of `vocab` ids and an `embed_dim`-wide space,
    /// seeded by `seed`: projections `U(±1/sqrt(fan_in))` with zero biases (nn.Linear's weight
    /// bound), the token embeddings `N(0, 0.02²)` (CLIP's text init), t' = ln 10, b = -10.
    pub fn load(
        dir: &Path,
        cfg: &LlavaOnevisionConfig,
        vocab: usize,
        embed_dim: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let Tower {
            vision,
            mut params,
            tensors: tower,
        } = Tower::load(dir, cfg, device)?;

        let (dv, e) = (cfg.vision.hidden_size, embed_dim);
        let mut rng = Rng::new(seed ^ 0x5161_1B00_C0DE_0001);
        let mut var = |name: String, data: Vec<f32>, shape: &[usize]| {
            new_param(&mut params, name, data, shape, device)
        };
        let image_w = var(
            format!("{IMAGE_PROJ}.weight"),
            uniform(&mut rng, e * dv, 1.0 / (dv as f64).sqrt()),
            &[e, dv],
        )?;
        let image_b = var(format!("{IMAGE_PROJ}.bias"), vec![0.0; e], &[e])?;
        let text_embed = var(
            TEXT_EMBED.into(),
            normal(&mut rng, vocab * e, 0.02),
            &[vocab, e],
        )?;
        let text_w = var(
            format!("{TEXT_PROJ}.weight"),
            uniform(&mut rng, e * e, 1.0 / (e as f64).sqrt()),
            &[e, e],
        )?;
        let text_b = var(format!("{TEXT_PROJ}.bias"), vec![0.0; e], &[e])?;
        let logit_scale = var(LOGIT_SCALE.into(), vec![INIT_LOGIT_SCALE as f32], &[1])?;
        let logit_bias = var(LOGIT_BIAS.into(), vec![INIT_LOGIT_BIAS as f32], &[1])?;
        Ok(Self {
            vision,
            image_proj: Linear::from_tensors(image_w, Some(image_b))?,
            text_embed,
            text_proj: Linear::from_tensors(text_w, Some(text_b))?,
            logit_scale,
            logit_bias,
            params,
            tower,
        })
    }

    /// Every trained parameter: the tower's (named as transformers 5 names them, e.g.
    /// `model.vision_tower.encoder.layers.0.mlp.fc1.weight`), then the heads' (`siglip_heads.*`).
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// The tower's tensors as trained so far, by canonical name (`vision.*`).
    pub fn tower(&self) -> &[(String, Tensor)] {
        &self.tower
    }

    /// # Shapes
    /// `pixels`: (b, 3, s, s) -> (b, E), unit rows
    pub fn image_embeddings(&self, pixels: &Tensor) -> Result<Tensor> {
        let h = self.vision.forward(pixels)?; // (b, g·g, dv)
        let pooled = h.mean(1)?; // (b, dv)
        l2_normalize(&self.image_proj.forward(&pooled)?)
    }

    /// # Shapes
    /// -> (b, E), unit rows
    pub fn text_embeddings(&self, texts: &TextBatch) -> Result<Tensor> {
        let rows = self.text_embed.index_select(&texts.ids, 0)?; // (n, E)
        let pooled = texts.mean.matmul(&rows)?; // (b, E)
        l2_normalize(&self.text_proj.forward(&pooled)?)
    }

    /// `exp(t') · x·yᵀ + b`.
    ///
    /// # Shapes
    /// `x`, `y`: (b, E) -> (b, b), row i the image i against every text
    pub fn logits(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let sim = x.matmul(&y.t()?)?; // (b, b)
        let scaled = sim.broadcast_mul(&self.logit_scale.exp()?)?;
        Ok(scaled.broadcast_add(&self.logit_bias)?)
    }

    /// The batch's loss (a scalar with its graph) and logits.
    pub fn loss(&self, batch: &Batch) -> Result<(Tensor, Tensor)> {
        let x = self.image_embeddings(&batch.pixels)?;
        let y = self.text_embeddings(&batch.texts)?;
        let logits = self.logits(&x, &y)?;
        Ok((sigmoid_loss(&logits, &batch.labels)?, logits))
    }

    /// The current logit scale t = exp(t') and bias b.
    pub fn temperature_and_bias(&self) -> Result<(f64, f64)> {
        let t = self.logit_scale.to_vec1::<f32>()?[0] as f64;
        let b = self.logit_bias.to_vec1::<f32>()?[0] as f64;
        Ok((t.exp(), b))
    }
}

/// SigLIP's loss: `-(1/B) Σ_i Σ_j log σ(z_ij · logits_ij)`, with `log σ(u)` written as
/// `-(max(-u, 0) + ln(1 + e^{-|u|}))` (finite for any u, as `jax.nn.log_sigmoid`).
///
/// # Shapes
/// `logits`, `labels` (z, ±1): (b, b) -> scalar
pub fn sigmoid_loss(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let b = logits.dim(0)?;
    let u = (labels * logits)?;
    let softplus = (u.neg()?.relu()? + (u.abs()?.neg()?.exp()? + 1.0)?.log()?)?; // -log σ(u)
    Ok((softplus.sum_all()? / b as f64)?)
}

/// In-batch image->text top-1 accuracy: the share of rows whose best-scoring column (the first
/// on ties) is a right text, `right(i, j)`.
pub fn top1_accuracy(logits: &[Vec<f32>], right: impl Fn(usize, usize) -> bool) -> f64 {
    if logits.is_empty() {
        return 0.0;
    }
    let hits = logits
        .iter()
        .enumerate()
        .filter(|(i, row)| {
            // The first maximum; a NaN score never wins.
            let mut best: Option<(usize, f32)> = None;
            for (j, &v) in row.iter().enumerate() {
                if v.is_nan() {
                    continue;
                }
                if best.is_none_or(|(_, m)| v > m) {
                    best = Some((j, v));
                }
            }
            best.is_some_and(|(j, _)| right(*i, j))
        })
        .count();
    hits as f64 / logits.len() as f64
}

/// The loss, accuracy and gradients of one batch.
#[derive(Debug)]
pub struct StepOutput {
    pub loss: f64,
    pub accuracy: f64,
    /// By [`Param::name`].
    pub grads: Grads,
}

/// Forward and backward of one batch, one graph from the pixels to the loss.
pub fn forward_backward(model: &ImageTextModel, batch: &Batch) -> Result<StepOutput> {
    let (loss, logits) = model.loss(batch)?;
    let store = loss.backward()?;
    let mut grads = Grads::new();
    for p in model.params() {
        if let Some(g) = store.get(p.var.as_tensor()) {
            grads.insert(p.name.clone(), g.clone());
        }
    }
    let rows: Vec<Vec<f32>> = logits.detach().to_vec2()?;
    Ok(StepOutput {
        loss: loss.to_scalar::<f32>()? as f64,
        accuracy: top1_accuracy(&rows, |i, j| batch.same[i][j]),
        grads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// -log σ(u) in f64, directly from the definition.
    fn neg_log_sigmoid(u: f64) -> f64 {
        (1.0 + (-u).exp()).ln()
    }

    #[test]
    fn sigmoid_loss_known_answer() {
        let logits = [[2.0f32, -1.0, 0.5], [0.0, 3.0, -30.0], [40.0, 1.5, -2.0]];
        let z = [[1.0f32, -1.0, -1.0], [-1.0, 1.0, 1.0], [-1.0, -1.0, 1.0]];
        let mut want = 0.0;
        for i in 0..3 {
            for j in 0..3 {
                want += neg_log_sigmoid((z[i][j] * logits[i][j]) as f64);
            }
        }
        want /= 3.0;
        let dev = Device::Cpu;
        let l = Tensor::new(&logits, &dev).unwrap();
        let zt = Tensor::new(&z, &dev).unwrap();
        let got = sigmoid_loss(&l, &zt).unwrap().to_scalar::<f32>().unwrap() as f64;
        assert!((got - want).abs() < 1e-5 * want, "{got} vs {want}");
    }

    #[test]
    fn accuracy_counts_first_maximum_and_equal_texts() {
        let logits = vec![
            vec![3.0, 1.0, 0.0],
            vec![2.0, 2.0, 0.0], // tie: the first (0) wins
            vec![0.0, 5.0, 1.0],
        ];
        assert_eq!(top1_accuracy(&logits, |i, j| i == j), 1.0 / 3.0);
        // Texts 1 and 2 equal: row 2's best (1) is right.
        assert_eq!(
            top1_accuracy(&logits, |i, j| i == j || (i.min(j) == 1 && i.max(j) == 2)),
            2.0 / 3.0
        );
        assert_eq!(top1_accuracy(&[], |_, _| true), 0.0);
    }

    #[test]
    fn text_batch_averages_each_text() {
        let dev = Device::Cpu;
        let tb = TextBatch::new(&[&[4, 5], &[7]], &dev).unwrap();
        assert_eq!(tb.ids.to_vec1::<u32>().unwrap(), vec![4, 5, 7]);
        assert_eq!(
            tb.mean.to_vec2::<f32>().unwrap(),
            vec![vec![0.5, 0.5, 0.0], vec![0.0, 0.0, 1.0]]
        );
        assert!(TextBatch::new(&[&[1], &[]], &dev).is_err());
    }

    #[test]
    fn tower_tensors_are_the_used_layers() {
        assert!(in_tower("vision.embeddings.patch_embedding.weight", 2));
        assert!(in_tower("vision.encoder.layers.1.mlp.fc1.weight", 2));
        assert!(!in_tower("vision.encoder.layers.2.mlp.fc1.weight", 2));
        assert!(!in_tower("vision.encoder.layers.10.mlp.fc1.weight", 2));
        assert!(!in_tower("vision.post_layernorm.weight", 2));
        assert!(!in_tower("text.embed_tokens.weight", 2));
    }
}
