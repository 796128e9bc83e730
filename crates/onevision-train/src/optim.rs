//! AdamW and gradient-norm clipping with PyTorch's semantics and, on the CPU, PyTorch's f32
//! rounding, op for op, so that a run equals the PyTorch one step for step.
//!
//! What is reproduced, and from where:
//! - `torch.optim.AdamW` as it runs on CPU tensors: `_single_tensor_adam` in
//!   `torch/optim/adam.py` with `decoupled_weight_decay=True` (foreach and fused are off for CPU
//!   parameters). This is transformers' `optim="adamw_torch"`. Note that transformers 5 defaults to
//!   `adamw_torch_fused` when torch >= 2.8, whose CPU kernel rounds differently.
//! - The parameter groups of transformers' `Trainer.create_optimizer`: decay / no-decay by
//!   [`decays`], times LLaVA-NeXT's learning-rate groups ([`Group`]).
//! - `torch.nn.utils.clip_grad_norm_` with `foreach=None` ([`clip_grad_norm_ordered`]).
//!
//! Rounding, as measured against torch 2.15 (CPU capability AVX512, MKL build) by
//! tools/fixtures/make_train_optim_fixtures.py and probes over every f32 of two binades:
//! - `exp_avg.lerp_(grad, 1 - beta1)`: ATen's `lerp_vec`, one fused multiply-add,
//!   `fma(w, grad - m, m)` for `w < 0.5` (`fma(w - 1, grad - m, grad)` otherwise).
//! - `exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)`: two kernels; the second
//!   contracts to `fma((1 - beta2) * grad, grad, v * beta2)`.
//! - `exp_avg_sq.sqrt()`: torch's CPU `sqrt` calls MKL's `vsSqrt` in high-accuracy mode, which is
//!   not correctly rounded (0.59% of f32 inputs come out 1 ulp off). It behaves as one Newton
//!   step from `vrsqrt14ps`; [`x86::sqrt_like_mkl`] reproduces it on all but 1e-5 of inputs.
//!   Without AVX-512 the sqrt is the correctly rounded one.
//! - `/ bias_correction2_sqrt`, `.add_(eps)`, `param.addcdiv_(exp_avg, denom, value=-step_size)`
//!   (`p + (s * m) / d`) and `param.mul_(1 - lr * wd)`: plain f32 ops with f32 scalars; bias
//!   corrections, step size and the scalars in f64 (Python floats), rounded to f32 where the
//!   kernel takes them.
//! - The per-tensor norms of `clip_grad_norm_`: ATen's last-dim norm kernel, 8 f32 lanes of
//!   `acc += x * x` (no FMA), lanes summed left to right, then the tail (8 lanes matched bit for
//!   bit over 90 arrays up to 10M elements; 16 lanes, the AVX-512 width, did not).
//!
//! On other devices the same formulas run as candle ops (not bit-identical to torch).

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{CpuStorage, DType, Device, InplaceOp2, Layout, Shape, Storage, Tensor, Var};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

// ---------------------------------------------------------------------------------------------
// Parameters and groups

/// LLaVA-NeXT's learning-rate groups (`--tunable-parts`): the projector (`mm_projector_lr`), the
/// vision tower (`mm_vision_tower_lr`) and everything else, the language model (`--lr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    Projector,
    Vision,
    Language,
}

impl Group {
    pub const ALL: [Group; 3] = [Group::Projector, Group::Vision, Group::Language];

    /// The name used in the CLI and in the log's `lr` object.
    pub fn name(self) -> &'static str {
        match self {
            Group::Projector => "projector",
            Group::Vision => "vision",
            Group::Language => "language",
        }
    }
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Group {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Group::ALL
            .into_iter()
            .find(|g| g.name() == s)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown parameter group {s:?}: expected projector, vision or language"
                ))
            })
    }
}

/// The base learning rate of each group. `scaled` applies a schedule multiplier as `LambdaLR`
/// does (`base_lr * lambda(step)` in f64).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroupLrs {
    pub projector: f64,
    pub vision: f64,
    pub language: f64,
}

impl GroupLrs {
    pub fn get(&self, group: Group) -> f64 {
        match group {
            Group::Projector => self.projector,
            Group::Vision => self.vision,
            Group::Language => self.language,
        }
    }

    /// Every group's lr times the schedule's multiplier: the lrs of update k are
    /// `base.scaled(schedule.multiplier(k))`.
    pub fn scaled(&self, multiplier: f64) -> GroupLrs {
        GroupLrs {
            projector: self.projector * multiplier,
            vision: self.vision * multiplier,
            language: self.language * multiplier,
        }
    }
}

/// One trainable tensor.
#[derive(Debug, Clone)]
pub struct Param {
    /// The name transformers 5 gives it in `named_parameters()`, e.g.
    /// `model.language_model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    /// f32 master weights; updated in place.
    pub var: Var,
    pub group: Group,
    /// Whether weight decay applies ([`decays`] of the name, as the Trainer groups them).
    pub decay: bool,
}

/// Gradients by [`Param::name`]. A parameter absent from the map got no gradient this step and
/// is skipped by [`AdamW::step`] and [`clip_grad_norm`], as torch skips `p.grad is None`.
pub type Grads = BTreeMap<String, Tensor>;

/// The modules of this architecture that are `nn.LayerNorm`s (SigLIP's `layer_norm1`,
/// `layer_norm2`, `post_layernorm` and the pooling head's `layernorm`). The Trainer exempts
/// parameters of LayerNorm modules by type; the last two are also caught by the name patterns.
const LAYER_NORM_MODULES: [&str; 4] = ["layer_norm1", "layer_norm2", "post_layernorm", "layernorm"];

/// Whether weight decay applies to the parameter `name`, as transformers' Trainer decides
/// (`Trainer.get_decay_parameter_names`, transformers 5 `trainer.py`, with
/// `get_parameter_names` in `trainer_pt_utils.py`): no decay for parameters inside an
/// `nn.LayerNorm` (here by module name, [`LAYER_NORM_MODULES`]) and for names that, lowercased,
/// match any of `bias`, `layernorm`, `rmsnorm`, `(?:^|\.)norm(?:$|\.)` or `_norm(?:$|\.)`. So
/// biases, SigLIP's LayerNorms and Qwen2's `input_layernorm`, `post_attention_layernorm` and
/// final `norm` do not decay; matrices, embeddings, `image_newline` and the head's `probe` do.
/// (`get_parameter_names` tests the patterns on every suffix of the name starting at a
/// component; since each pattern's `^` only stands for a component start, that equals one test
/// on the whole name.)
pub fn decays(name: &str) -> bool {
    let lower = name.to_lowercase();
    if ["bias", "layernorm", "rmsnorm"]
        .iter()
        .any(|p| lower.contains(p))
    {
        return false;
    }
    let parts: Vec<&str> = lower.split('.').collect();
    if parts.iter().any(|c| *c == "norm" || c.ends_with("_norm")) {
        return false;
    }
    let module = parts.len().checked_sub(2).map(|i| parts[i]);
    !module.is_some_and(|m| LAYER_NORM_MODULES.contains(&m))
}

// ---------------------------------------------------------------------------------------------
// AdamW

/// AdamW's hyperparameters. The defaults are the Trainer's for `adamw_torch` (`adam_beta1`,
/// `adam_beta2`, `adam_epsilon`, `weight_decay`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Applied to parameters with [`Param::decay`]; the others get 0.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// AdamW with per-parameter state (first and second moments in f32, and a step count), created
/// at a parameter's first gradient, as torch creates `optimizer.state[p]` lazily.
pub struct AdamW {
    cfg: AdamWConfig,
    state: BTreeMap<String, State>,
    /// Use the candle-op formulation even on the CPU (to test it against the fused kernel).
    tensor_ops: bool,
}

struct State {
    step: u64,
    shape: Shape,
    moments: Moments,
}

enum Moments {
    /// CPU parameters: plain buffers that the fused kernel updates in place.
    Host {
        exp_avg: Vec<f32>,
        exp_avg_sq: Vec<f32>,
    },
    /// Elsewhere: tensors on the parameter's device, replaced by candle ops each step.
    Tensors { exp_avg: Tensor, exp_avg_sq: Tensor },
}

impl AdamW {
    pub fn new(cfg: AdamWConfig) -> Self {
        Self {
            cfg,
            state: BTreeMap::new(),
            tensor_ops: false,
        }
    }

    pub fn config(&self) -> &AdamWConfig {
        &self.cfg
    }

    /// How many updates parameter `name` has had (None before its first gradient).
    pub fn steps(&self, name: &str) -> Option<u64> {
        self.state.get(name).map(|s| s.step)
    }

    /// One optimizer step: every parameter with a gradient in `grads` is updated with the lr
    /// `lr(param.group)` (and `config.weight_decay` if `param.decay`); the others are skipped,
    /// their state and step count unchanged. Per parameter, as `_single_tensor_adam`:
    /// `step += 1; p *= 1 - lr*wd; m.lerp_(g, 1-b1); v = v*b2 + (1-b2)*g*g;
    /// d = sqrt(v) / sqrt(1 - b2^step) + eps; p += (-lr / (1 - b1^step)) * m / d`.
    pub fn step(
        &mut self,
        params: &[Param],
        grads: &Grads,
        lr: impl Fn(Group) -> f64,
    ) -> Result<()> {
        for p in params {
            if let Some(g) = grads.get(&p.name) {
                self.update(p, g, lr(p.group))?;
            }
        }
        Ok(())
    }

    fn update(&mut self, p: &Param, grad: &Tensor, lr: f64) -> Result<()> {
        let t = p.var.as_tensor();
        if t.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return Err(Error::Config(format!(
                "AdamW keeps f32 master weights and gradients: {} is {:?} with a {:?} gradient",
                p.name,
                t.dtype(),
                grad.dtype()
            )));
        }
        if grad.shape() != t.shape() {
            return Err(Error::Config(format!(
                "the gradient of {} has shape {:?}, the parameter {:?}",
                p.name,
                grad.dims(),
                t.dims()
            )));
        }
        if !self.state.contains_key(&p.name) {
            let st = State::zeros(t, self.tensor_ops)?;
            self.state.insert(p.name.clone(), st);
        }
        let Some(st) = self.state.get_mut(&p.name) else {
            unreachable!("inserted above")
        };
        if &st.shape != t.shape() {
            return Err(Error::Config(format!(
                "optimizer state of {} has shape {:?}, the parameter {:?}",
                p.name,
                st.shape.dims(),
                t.dims()
            )));
        }
        st.step += 1;
        let wd = if p.decay { self.cfg.weight_decay } else { 0.0 };
        let c = Coefficients::new(&self.cfg, lr, wd, st.step);
        match &mut st.moments {
            Moments::Host {
                exp_avg,
                exp_avg_sq,
            } => {
                let op = FusedStep {
                    c,
                    exp_avg: RefCell::new(exp_avg),
                    exp_avg_sq: RefCell::new(exp_avg_sq),
                };
                t.inplace_op2(&grad.contiguous()?, &op)?;
            }
            Moments::Tensors {
                exp_avg,
                exp_avg_sq,
            } => step_tensors(&c, &p.var, grad, exp_avg, exp_avg_sq)?,
        }
        Ok(())
    }
}

impl State {
    fn zeros(t: &Tensor, tensor_ops: bool) -> Result<Self> {
        let n = t.elem_count();
        let moments = if t.device().is_cpu() && !tensor_ops {
            Moments::Host {
                exp_avg: vec![0.0; n],
                exp_avg_sq: vec![0.0; n],
            }
        } else {
            Moments::Tensors {
                exp_avg: t.zeros_like()?,
                exp_avg_sq: t.zeros_like()?,
            }
        };
        Ok(Self {
            step: 0,
            shape: t.shape().clone(),
            moments,
        })
    }
}

/// The scalars of one parameter's update, in the precision torch's kernels take them: computed
/// in f64 (Python floats), rounded to f32 by the kernel (`Scalar::to<float>`).
#[derive(Debug, Clone, Copy)]
struct Coefficients {
    /// `1 - lr * weight_decay`; None when the group's weight decay is 0 (torch skips the op).
    decay: Option<f32>,
    /// `1 - beta1`, lerp's weight.
    lerp_weight: f32,
    beta2: f32,
    one_minus_beta2: f32,
    bias_correction2_sqrt: f32,
    eps: f32,
    /// `-lr / (1 - beta1^step)`.
    neg_step_size: f32,
}

impl Coefficients {
    fn new(cfg: &AdamWConfig, lr: f64, weight_decay: f64, step: u64) -> Self {
        // torch keeps `step` in an f32 tensor and reads it with .item(): exact below 2^24.
        // black_box keeps LLVM from rewriting pow(x, 0.5) as sqrt or pow(x, n) as powi: Python
        // calls libm's pow for `x ** y`, and so must we.
        let step = std::hint::black_box(step as f64);
        let bias_correction1 = 1.0 - cfg.beta1.powf(step);
        let bias_correction2 = 1.0 - cfg.beta2.powf(step);
        let step_size = lr / bias_correction1;
        let bias_correction2_sqrt = bias_correction2.powf(std::hint::black_box(0.5));
        Self {
            decay: (weight_decay != 0.0).then_some((1.0 - lr * weight_decay) as f32),
            lerp_weight: (1.0 - cfg.beta1) as f32,
            beta2: cfg.beta2 as f32,
            one_minus_beta2: (1.0 - cfg.beta2) as f32,
            bias_correction2_sqrt: bias_correction2_sqrt as f32,
            eps: cfg.eps as f32,
            neg_step_size: (-step_size) as f32,
        }
    }

    /// ATen's `is_lerp_weight_small`: which of lerp's two formulas applies.
    fn lerp_weight_small(&self) -> bool {
        self.lerp_weight.abs() < 0.5
    }
}

/// The whole update of one CPU parameter in one pass: in place on the parameter (through
/// candle's in-place op, so every tensor sharing its storage sees it) and on the moments.
struct FusedStep<'a> {
    c: Coefficients,
    exp_avg: RefCell<&'a mut Vec<f32>>,
    exp_avg_sq: RefCell<&'a mut Vec<f32>>,
}

impl InplaceOp2 for FusedStep<'_> {
    fn name(&self) -> &'static str {
        "adamw-step"
    }

    fn cpu_fwd(
        &self,
        param: &mut CpuStorage,
        param_l: &Layout,
        grad: &CpuStorage,
        grad_l: &Layout,
    ) -> candle_core::Result<()> {
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (param, grad) else {
            candle_core::bail!("adamw-step: f32 parameter and gradient expected");
        };
        let (Some((p0, p1)), Some((g0, g1))) =
            (param_l.contiguous_offsets(), grad_l.contiguous_offsets())
        else {
            candle_core::bail!("adamw-step: the parameter and its gradient must be contiguous");
        };
        let mut m = self.exp_avg.borrow_mut();
        let mut v = self.exp_avg_sq.borrow_mut();
        let n = p1 - p0;
        if g1 - g0 != n || m.len() != n || v.len() != n {
            candle_core::bail!("adamw-step: parameter, gradient and moments differ in length");
        }
        step_host(&self.c, &mut p[p0..p1], &g[g0..g1], &mut m[..], &mut v[..]);
        Ok(())
    }
}

/// Elements per parallel task; the update is elementwise, so the split changes no result.
const CHUNK: usize = 1 << 14;

fn step_host(c: &Coefficients, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| step_chunk(c, p, g, m, v));
}

fn step_chunk(c: &Coefficients, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if onevision_nn::simd::has_avx512() {
        // SAFETY: AVX-512F was detected; the slices have equal lengths (checked by the caller).
        unsafe { x86::adamw(c, p, g, m, v) };
        return;
    }
    step_portable(c, p, g, m, v, f32::sqrt);
}

/// The per-element update with torch's roundings (`mul_add` where ATen's kernel fuses), with
/// the given square root.
#[inline(always)]
fn step_portable(
    c: &Coefficients,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    sqrt: impl Fn(f32) -> f32,
) {
    let small = c.lerp_weight_small();
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        if let Some(f) = c.decay {
            *p *= f;
        }
        *m = if small {
            c.lerp_weight.mul_add(g - *m, *m)
        } else {
            (c.lerp_weight - 1.0).mul_add(g - *m, g)
        };
        *v = (c.one_minus_beta2 * g).mul_add(g, *v * c.beta2);
        let d = sqrt(*v) / c.bias_correction2_sqrt + c.eps;
        *p += (c.neg_step_size * *m) / d;
    }
}

/// The same update as candle ops, for parameters that are not on the CPU.
fn step_tensors(
    c: &Coefficients,
    var: &Var,
    g: &Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
) -> Result<()> {
    let dev = var.device();
    let s = |x: f32| Tensor::new(x, dev);
    let mut p = var.as_tensor().clone();
    if let Some(f) = c.decay {
        p = p.broadcast_mul(&s(f)?)?;
    }
    let diff = g.sub(m)?;
    let new_m = if c.lerp_weight_small() {
        m.add(&diff.broadcast_mul(&s(c.lerp_weight)?)?)?
    } else {
        g.add(&diff.broadcast_mul(&s(c.lerp_weight - 1.0)?)?)?
    };
    let new_v = v
        .broadcast_mul(&s(c.beta2)?)?
        .add(&g.broadcast_mul(&s(c.one_minus_beta2)?)?.mul(g)?)?;
    let denom = new_v
        .sqrt()?
        .broadcast_div(&s(c.bias_correction2_sqrt)?)?
        .broadcast_add(&s(c.eps)?)?;
    let p = p.add(&new_m.broadcast_mul(&s(c.neg_step_size)?)?.div(&denom)?)?;
    var.set(&p)?;
    *m = new_m;
    *v = new_v;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Saving and loading the state (for --resume)

const EXP_AVG: &str = ".exp_avg";
const EXP_AVG_SQ: &str = ".exp_avg_sq";
const STEP: &str = ".step";

impl AdamW {
    /// The state as named tensors: `<name>.exp_avg`, `<name>.exp_avg_sq` (f32, the parameter's
    /// shape) and `<name>.step` (i64 scalar) for every parameter that has had an update (copies;
    /// [`AdamW::save_state`] writes a file without copying).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        // Infallible on the CPU: each buffer holds exactly its shape's element count.
        let host = |data: &[f32], shape: &Shape| {
            Tensor::from_slice(data, shape.clone(), &Device::Cpu)
                .expect("a moment buffer has its parameter's element count")
        };
        let mut out = Vec::with_capacity(3 * self.state.len());
        for (name, st) in &self.state {
            let (m, v) = match &st.moments {
                Moments::Host {
                    exp_avg,
                    exp_avg_sq,
                } => (host(exp_avg, &st.shape), host(exp_avg_sq, &st.shape)),
                Moments::Tensors {
                    exp_avg,
                    exp_avg_sq,
                } => (exp_avg.clone(), exp_avg_sq.clone()),
            };
            out.push((format!("{name}{EXP_AVG}"), m));
            out.push((format!("{name}{EXP_AVG_SQ}"), v));
            let step = Tensor::from_slice(&[st.step as i64], (), &Device::Cpu)
                .expect("a scalar from one value");
            out.push((format!("{name}{STEP}"), step));
        }
        out
    }

    /// Replaces the state with one saved by [`AdamW::state_tensors`] / [`AdamW::save_state`]:
    /// the next step continues bit for bit as if the run had not stopped. Every state entry must
    /// belong to one of `params` and have its shape; parameters without an entry start fresh
    /// (they had no gradient yet).
    pub fn load_state(
        &mut self,
        params: &[Param],
        tensors: impl IntoIterator<Item = (String, Tensor)>,
    ) -> Result<()> {
        type Parts = (Option<Tensor>, Option<Tensor>, Option<Tensor>);
        let mut parts: BTreeMap<String, Parts> = BTreeMap::new();
        for (key, t) in tensors {
            let (name, slot) = if let Some(n) = key.strip_suffix(EXP_AVG_SQ) {
                (n, 1)
            } else if let Some(n) = key.strip_suffix(EXP_AVG) {
                (n, 0)
            } else if let Some(n) = key.strip_suffix(STEP) {
                (n, 2)
            } else {
                return Err(Error::Config(format!(
                    "optimizer state: unexpected tensor {key:?} (expected <parameter>{EXP_AVG}, \
                     <parameter>{EXP_AVG_SQ} or <parameter>{STEP})"
                )));
            };
            let e = parts.entry(name.to_string()).or_default();
            let dst = match slot {
                0 => &mut e.0,
                1 => &mut e.1,
                _ => &mut e.2,
            };
            *dst = Some(t);
        }
        let by_name: BTreeMap<&str, &Param> = params.iter().map(|p| (p.name.as_str(), p)).collect();
        let mut state = BTreeMap::new();
        for (name, (m, v, step)) in parts {
            let Some(p) = by_name.get(name.as_str()) else {
                return Err(Error::Config(format!(
                    "optimizer state for {name}, which is not a trained parameter of this run \
                     (were --tunable-parts or the model changed?)"
                )));
            };
            let (Some(m), Some(v), Some(step)) = (m, v, step) else {
                return Err(Error::Config(format!(
                    "optimizer state for {name} is incomplete: {EXP_AVG}, {EXP_AVG_SQ} and \
                     {STEP} are all needed"
                )));
            };
            let shape = p.var.shape().clone();
            for (what, t) in [(EXP_AVG, &m), (EXP_AVG_SQ, &v)] {
                if t.shape() != &shape || t.dtype() != DType::F32 {
                    return Err(Error::Config(format!(
                        "optimizer state {name}{what} is {:?} {:?}, the parameter f32 {:?}",
                        t.dtype(),
                        t.dims(),
                        shape.dims()
                    )));
                }
            }
            let step = step.flatten_all()?.to_dtype(DType::I64)?.to_vec1::<i64>()?;
            let step = match step[..] {
                [s] if s >= 0 => s as u64,
                _ => {
                    return Err(Error::Config(format!(
                        "optimizer state {name}{STEP} must be one count >= 0, found {step:?}"
                    )))
                }
            };
            let dev = p.var.device();
            let moments = if dev.is_cpu() && !self.tensor_ops {
                Moments::Host {
                    exp_avg: m.flatten_all()?.to_vec1::<f32>()?,
                    exp_avg_sq: v.flatten_all()?.to_vec1::<f32>()?,
                }
            } else {
                Moments::Tensors {
                    exp_avg: m.to_device(dev)?.copy()?,
                    exp_avg_sq: v.to_device(dev)?.copy()?,
                }
            };
            state.insert(
                name,
                State {
                    step,
                    shape,
                    moments,
                },
            );
        }
        self.state = state;
        Ok(())
    }

    /// Writes the state to one safetensors file (the names of [`AdamW::state_tensors`]),
    /// straight from the moment buffers: no copy of the ~2x-parameters state in memory.
    pub fn save_state(&self, path: &Path) -> Result<()> {
        let write_err = |e: String| Error::Write {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        };
        let mut views: Vec<(String, RawView)> = Vec::with_capacity(3 * self.state.len());
        for (name, st) in &self.state {
            let shape = st.shape.dims().to_vec();
            let (m, v) = match &st.moments {
                Moments::Host {
                    exp_avg,
                    exp_avg_sq,
                } => (le_bytes(exp_avg), le_bytes(exp_avg_sq)),
                Moments::Tensors {
                    exp_avg,
                    exp_avg_sq,
                } => (
                    Cow::Owned(owned_le_bytes(exp_avg)?),
                    Cow::Owned(owned_le_bytes(exp_avg_sq)?),
                ),
            };
            views.push((format!("{name}{EXP_AVG}"), RawView::f32(m, shape.clone())));
            views.push((format!("{name}{EXP_AVG_SQ}"), RawView::f32(v, shape)));
            let step = (st.step as i64).to_le_bytes().to_vec();
            views.push((
                format!("{name}{STEP}"),
                RawView {
                    dtype: safetensors::Dtype::I64,
                    shape: vec![],
                    bytes: Cow::Owned(step),
                },
            ));
        }
        let meta = std::collections::HashMap::from([(
            "adamw".to_string(),
            serde_json::to_string(&self.cfg).map_err(|e| write_err(e.to_string()))?,
        )]);
        safetensors::serialize_to_file(views, Some(meta), path)
            .map_err(|e| write_err(e.to_string()))
    }

    /// Loads a file written by [`AdamW::save_state`] (see [`AdamW::load_state`]).
    pub fn load_state_file(&mut self, params: &[Param], path: &Path) -> Result<()> {
        let read_err = |e: candle_core::Error| Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        };
        // SAFETY: the file is mapped read-only for this call; a checkpoint is not rewritten
        // while a run resumes from it.
        let file =
            unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }.map_err(read_err)?;
        // One tensor at a time out of the mapping, so the moments are in memory about once.
        let mut tensors = Vec::new();
        for (name, _) in file.tensors() {
            let t = file.load(&name, &Device::Cpu).map_err(read_err)?;
            tensors.push((name, t));
        }
        self.load_state(params, tensors)
    }
}

/// A tensor for safetensors' writer that borrows its bytes where it can.
struct RawView<'a> {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    bytes: Cow<'a, [u8]>,
}

impl<'a> RawView<'a> {
    fn f32(bytes: Cow<'a, [u8]>, shape: Vec<usize>) -> Self {
        Self {
            dtype: safetensors::Dtype::F32,
            shape,
            bytes,
        }
    }
}

impl safetensors::View for RawView<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// The little-endian bytes of `data` (safetensors' byte order), borrowed on little-endian hosts.
fn le_bytes(data: &[f32]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        // SAFETY: any f32 is 4 initialized bytes and u8 has alignment 1; the slice covers
        // exactly the memory of `data` and borrows it.
        Cow::Borrowed(unsafe {
            std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data))
        })
    } else {
        Cow::Owned(data.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
}

fn owned_le_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let v = t.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
    Ok(v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

// ---------------------------------------------------------------------------------------------
// Gradient clipping

/// [`clip_grad_norm_ordered`] with the per-tensor norms stacked in name order (the order of
/// `grads`). The total can differ from torch's in the last bit when that order is not the
/// model's parameter order; the trainer should use [`clip_grad_norm_ordered`].
pub fn clip_grad_norm(grads: &mut Grads, max_norm: f64) -> Result<f64> {
    let names: Vec<String> = grads.keys().cloned().collect();
    clip_in_order(&names, grads, max_norm)
}

/// `torch.nn.utils.clip_grad_norm_(params, max_norm)` (`foreach=None`, 2-norm,
/// `torch/nn/utils/clip_grad.py`): the norm of each gradient (`torch._foreach_norm`, on the CPU
/// one `linalg.vector_norm` per tensor), the norm of those norms stacked in `params` order
/// (torch's `model.parameters()` order) = the total; then
/// `clip_coef = max_norm / (total + 1e-6)` (in f32, as `Tensor.__rtruediv__`:
/// `reciprocal(total + 1e-6) * max_norm`), clamped to at most 1, and every gradient multiplied
/// by it, also when it is 1 (torch avoids the branch). Returns the total norm before clipping,
/// the `grad_norm` the Trainer logs. Parameters without a gradient are left out, as torch leaves
/// out `grad is None`. `max_norm <= 0` only measures.
pub fn clip_grad_norm_ordered(params: &[Param], grads: &mut Grads, max_norm: f64) -> Result<f64> {
    let names: Vec<String> = params
        .iter()
        .filter(|p| grads.contains_key(&p.name))
        .map(|p| p.name.clone())
        .collect();
    if names.len() != grads.len() {
        let known: std::collections::BTreeSet<&str> =
            params.iter().map(|p| p.name.as_str()).collect();
        let stray: Vec<&String> = grads
            .keys()
            .filter(|k| !known.contains(k.as_str()))
            .collect();
        return Err(Error::Config(format!(
            "gradients for tensors that are not trained parameters: {stray:?}"
        )));
    }
    clip_in_order(&names, grads, max_norm)
}

fn clip_in_order(names: &[String], grads: &mut Grads, max_norm: f64) -> Result<f64> {
    if names.is_empty() {
        return Ok(0.0);
    }
    let norms = names
        .par_iter()
        .map(|n| match grads.get(n) {
            Some(g) => tensor_norm(g),
            None => Err(Error::Config(format!("no gradient for {n}"))),
        })
        .collect::<Result<Vec<f32>>>()?;
    let total = sum_sq_like_torch(&norms).sqrt();
    if max_norm > 0.0 {
        let coef = (1.0 / (total + 1e-6f64 as f32)) * max_norm as f32;
        // torch.clamp(max=1.0) keeps a NaN.
        let coef = if coef.is_nan() { coef } else { coef.min(1.0) };
        for n in names {
            if let Some(g) = grads.get_mut(n) {
                let c = Tensor::new(coef, g.device())?.to_dtype(g.dtype())?;
                *g = g.broadcast_mul(&c)?;
            }
        }
    }
    Ok(total as f64)
}

/// The 2-norm of one gradient: on the CPU as ATen's f32 kernel rounds it, elsewhere by candle.
fn tensor_norm(t: &Tensor) -> Result<f32> {
    if t.device().is_cpu() && t.dtype() == DType::F32 {
        let t = t.contiguous()?;
        let (s, l) = t.storage_and_layout();
        if let (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) = (&*s, l.contiguous_offsets()) {
            return Ok(sum_sq_like_torch(&v[a..b]).sqrt());
        }
    }
    Ok(t.to_dtype(DType::F32)?
        .sqr()?
        .sum_all()?
        .sqrt()?
        .to_scalar::<f32>()?)
}

/// `sum(x^2)` in the order of ATen's vectorized last-dim norm (`norm_kernel_tensor_iterator_impl`,
/// `ReduceOpsKernel.cpp`): 8 lanes accumulate `acc += x*x` (a multiply, then an add), the lanes
/// are added left to right, then the `len % 8` tail one by one.
fn sum_sq_like_torch(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            acc[l] += c[l] * c[l];
        }
    }
    let mut sum = acc[0];
    for a in &acc[1..] {
        sum += a;
    }
    for &t in chunks.remainder() {
        sum += t * t;
    }
    sum
}

// ---------------------------------------------------------------------------------------------
// The AVX-512 kernel

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Coefficients;

    /// torch's CPU f32 `sqrt`, i.e. MKL's `vsSqrt` with `VML_HA` (ATen's `vml::vsqrt`). Its
    /// results equal one Newton step for the reciprocal square root from `vrsqrt14ps`, then a
    /// multiply by x, in exact arithmetic rounded once: `x * (y * (1.5 - 0.5 * x * y * y))` with
    /// `y = rsqrt14(x)`, evaluated in f64. Measured on every f32 in [1, 4) (the mantissas of both
    /// exponent parities): 174 of 16.8M differ from torch by 1 ulp (MKL's own rounding of the
    /// same step), against 98,955 for the correctly rounded sqrt. 0 and +inf map to themselves.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn sqrt_like_mkl(x: __m512) -> __m512 {
        let y = _mm512_rsqrt14_ps(x);
        let lo = newton(_mm512_castps512_ps256(x), _mm512_castps512_ps256(y));
        let hi = newton(upper(x), upper(y));
        let r = _mm512_insertf64x4::<1>(
            _mm512_castpd256_pd512(_mm256_castps_pd(lo)),
            _mm256_castps_pd(hi),
        );
        let r = _mm512_castpd_ps(r);
        // sqrt(±0) = ±0 and sqrt(inf) = inf, where the step computes 0·inf.
        let zero = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, _mm512_setzero_ps());
        let inf = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, _mm512_set1_ps(f32::INFINITY));
        _mm512_mask_blend_ps(zero | inf, r, x)
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn upper(v: __m512) -> __m256 {
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)))
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn newton(x: __m256, y: __m256) -> __m256 {
        let x = _mm512_cvtps_pd(x);
        let y = _mm512_cvtps_pd(y);
        let t = _mm512_mul_pd(_mm512_mul_pd(_mm512_mul_pd(_mm512_set1_pd(0.5), x), y), y);
        let t = _mm512_sub_pd(_mm512_set1_pd(1.5), t);
        _mm512_cvtpd_ps(_mm512_mul_pd(x, _mm512_mul_pd(y, t)))
    }

    /// [`sqrt_like_mkl`] of one value (for the portable kernel in tests).
    #[cfg(test)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn sqrt_like_mkl_one(x: f32) -> f32 {
        _mm_cvtss_f32(_mm512_castps512_ps128(sqrt_like_mkl(_mm512_set1_ps(x))))
    }

    /// The AdamW update of `step_portable`, 16 lanes at a time (the tail masked), with
    /// [`sqrt_like_mkl`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn adamw(
        c: &Coefficients,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) {
        let n = p.len();
        let small = c.lerp_weight_small();
        let w = _mm512_set1_ps(if small {
            c.lerp_weight
        } else {
            c.lerp_weight - 1.0
        });
        let b2 = _mm512_set1_ps(c.beta2);
        let s2 = _mm512_set1_ps(c.one_minus_beta2);
        let bc2 = _mm512_set1_ps(c.bias_correction2_sqrt);
        let eps = _mm512_set1_ps(c.eps);
        let ss = _mm512_set1_ps(c.neg_step_size);
        let mut i = 0;
        while i < n {
            let k = (n - i).min(16);
            let mask: __mmask16 = if k == 16 {
                0xffff
            } else {
                ((1u32 << k) - 1) as u16
            };
            let (pp, gp, mp, vp) = (
                p.as_mut_ptr().add(i),
                g.as_ptr().add(i),
                m.as_mut_ptr().add(i),
                v.as_mut_ptr().add(i),
            );
            let gv = _mm512_maskz_loadu_ps(mask, gp);
            let mut pv = _mm512_maskz_loadu_ps(mask, pp);
            let mv = _mm512_maskz_loadu_ps(mask, mp);
            let vv = _mm512_maskz_loadu_ps(mask, vp);
            if let Some(f) = c.decay {
                pv = _mm512_mul_ps(pv, _mm512_set1_ps(f));
            }
            let diff = _mm512_sub_ps(gv, mv);
            let mv = _mm512_fmadd_ps(w, diff, if small { mv } else { gv });
            let vv = _mm512_fmadd_ps(_mm512_mul_ps(s2, gv), gv, _mm512_mul_ps(vv, b2));
            let d = _mm512_add_ps(_mm512_div_ps(sqrt_like_mkl(vv), bc2), eps);
            let pv = _mm512_add_ps(pv, _mm512_div_ps(_mm512_mul_ps(ss, mv), d));
            _mm512_mask_storeu_ps(pp, mask, pv);
            _mm512_mask_storeu_ps(mp, mask, mv);
            _mm512_mask_storeu_ps(vp, mask, vv);
            i += 16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: u64, n: usize, scale: f32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
            })
            .collect()
    }

    /// The AVX-512 kernel computes exactly the portable formula with the same sqrt, tails
    /// included, for both lerp formulas and with and without decay.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_kernel_equals_portable_formula() {
        if !onevision_nn::simd::has_avx512() {
            return;
        }
        for (n, beta1, wd, step) in [
            (1, 0.9, 0.0, 1),
            (37, 0.9, 0.1, 3),
            (100, 0.3, 0.1, 2),
            (16, 0.9, 0.0, 7),
        ] {
            let cfg = AdamWConfig {
                beta1,
                ..AdamWConfig::default()
            };
            let c = Coefficients::new(&cfg, 1e-3, wd, step);
            let g = lcg(1, n, 2.0);
            let (mut p1, mut m1, mut v1) = (lcg(2, n, 1.0), lcg(3, n, 0.1), lcg(4, n, 0.01));
            for x in v1.iter_mut() {
                *x = x.abs();
            }
            v1[0] = 0.0;
            let (mut p2, mut m2, mut v2) = (p1.clone(), m1.clone(), v1.clone());
            unsafe { x86::adamw(&c, &mut p1, &g, &mut m1, &mut v1) };
            step_portable(&c, &mut p2, &g, &mut m2, &mut v2, |x| unsafe {
                x86::sqrt_like_mkl_one(x)
            });
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&p1), bits(&p2), "params n={n}");
            assert_eq!(bits(&m1), bits(&m2), "exp_avg n={n}");
            assert_eq!(bits(&v1), bits(&v2), "exp_avg_sq n={n}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn mkl_sqrt_special_values() {
        if !onevision_nn::simd::has_avx512() {
            return;
        }
        for x in [0.0f32, -0.0, f32::INFINITY, 1.0, 4.0, 1e-40, 2.0, f32::MAX] {
            let got = unsafe { x86::sqrt_like_mkl_one(x) };
            assert_eq!(got.to_bits(), x.sqrt().to_bits(), "sqrt({x:e})");
        }
        assert!(unsafe { x86::sqrt_like_mkl_one(f32::NAN) }.is_nan());
        assert!(unsafe { x86::sqrt_like_mkl_one(-1.0) }.is_nan());
    }

    /// Against torch.sqrt on the fixture's inputs: the hard cases (where torch's root is not the
    /// correctly rounded one), other binades, random magnitudes and special values.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn mkl_sqrt_matches_torch() -> Result<()> {
        if !onevision_nn::simd::has_avx512() {
            return Ok(());
        }
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/train/optim");
        let t = candle_core::safetensors::load(format!("{dir}/optim.safetensors"), &Device::Cpu)?;
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{dir}/manifest.json"))
                .map_err(|e| Error::Config(e.to_string()))?,
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        let hard = manifest["sqrt_hard"].as_u64().unwrap_or(0) as usize;
        let (Some(x), Some(want)) = (t.get("sqrt.x"), t.get("sqrt.torch")) else {
            return Err(Error::Config("fixture lacks sqrt.x / sqrt.torch".into()));
        };
        let (x, want) = (x.to_vec1::<f32>()?, want.to_vec1::<f32>()?);
        let (mut ours, mut rounded) = (0, 0);
        for (i, (x, w)) in x.iter().zip(&want).enumerate() {
            let got = unsafe { x86::sqrt_like_mkl_one(*x) };
            if got.to_bits() != w.to_bits() {
                ours += 1;
                // Only where MKL's own rounding of the step differs: next to a halfway point.
                assert!(
                    i < hard,
                    "sqrt({x:e}): {got:e}, torch {w:e} (not a hard case)"
                );
            }
            rounded += usize::from(x.sqrt().to_bits() != w.to_bits());
        }
        println!("sqrt: {ours} of {} differ from torch ({rounded} for the correctly rounded root; {hard} hard cases)", x.len());
        assert!(ours * 100 <= hard, "{ours} misses in {hard} hard cases");
        assert!(rounded >= hard);
        Ok(())
    }

    #[test]
    fn norm_lanes_and_tail() {
        let x: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let mut acc = [0f32; 8];
        for (i, v) in x[..16].iter().enumerate() {
            acc[i % 8] += v * v;
        }
        let mut want = acc.iter().skip(1).fold(acc[0], |s, a| s + a);
        for v in &x[16..] {
            want += v * v;
        }
        assert_eq!(sum_sq_like_torch(&x), want);
        assert_eq!(sum_sq_like_torch(&[]), 0.0);
    }

    fn param(name: &str, values: Vec<f32>, decay: bool) -> Result<Param> {
        let n = values.len();
        Ok(Param {
            name: name.to_string(),
            var: Var::from_tensor(&Tensor::from_vec(values, n, &Device::Cpu)?)?,
            group: Group::Language,
            decay,
        })
    }

    /// The candle-op path (other devices) agrees with the fused kernel to float rounding.
    #[test]
    fn tensor_ops_agree_with_fused_kernel() -> Result<()> {
        let n = 300;
        let cfg = AdamWConfig {
            weight_decay: 0.1,
            ..AdamWConfig::default()
        };
        let a = vec![param("w", lcg(5, n, 1.0), true)?];
        let b = vec![param("w", lcg(5, n, 1.0), true)?];
        let (mut oa, mut ob) = (AdamW::new(cfg), AdamW::new(cfg));
        ob.tensor_ops = true;
        for k in 0..4 {
            let g = Tensor::from_vec(lcg(10 + k, n, 0.02), n, &Device::Cpu)?;
            let grads = Grads::from([("w".to_string(), g)]);
            oa.step(&a, &grads, |_| 1e-2)?;
            ob.step(&b, &grads, |_| 1e-2)?;
        }
        let pa = a[0].var.as_tensor().to_vec1::<f32>()?;
        let pb = b[0].var.as_tensor().to_vec1::<f32>()?;
        let max = pa
            .iter()
            .zip(&pb)
            .map(|(x, y)| (x - y).abs() / x.abs().max(1e-3))
            .fold(0f32, f32::max);
        assert!(max < 1e-6, "max relative deviation {max:e}");
        assert_ne!(pa, lcg(5, n, 1.0), "the parameters moved");
        Ok(())
    }
}
