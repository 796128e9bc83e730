//! LayerNorm and RMSNorm, with the dtype handling of the transformers modules they replace.
//!
//! Each has the readable candle-ops forward (`forward_reference`, differentiable) and a one-pass
//! row kernel used for inference (no gradient tracking, f32/bf16 on the CPU) that computes the
//! same formula in the same dtypes: statistics in f32, the same roundings to the input dtype.

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Module, Shape, Tensor, D,
};
use half::bf16;
use rayon::prelude::*;

use crate::gemm_nt::StoreF32;
use crate::{Result, Weights};

/// `nn.LayerNorm` with weight and bias over the last axis. Statistics are computed in f32 for
/// half-precision inputs (as PyTorch's CPU and CUDA kernels do), then cast back.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    fast: RowNorm,
}

impl LayerNorm {
    pub fn new(dim: usize, eps: f64, w: &Weights) -> Result<Self> {
        Ok(Self::from_tensors(
            w.get(dim, "weight")?,
            w.get(dim, "bias")?,
            eps,
        )?)
    }

    pub fn from_tensors(weight: Tensor, bias: Tensor, eps: f64) -> candle_core::Result<Self> {
        let fast = RowNorm {
            kind: Kind::Layer,
            weight: to_f32_vec(&weight)?,
            bias: Some(to_f32_vec(&bias)?),
            eps: eps as f32,
        };
        Ok(Self {
            weight,
            bias,
            eps,
            fast,
        })
    }

    /// The candle-ops forward (differentiable).
    pub fn forward_reference(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let mean = x.mean_keepdim(D::Minus1)?;
        let x = x.broadcast_sub(&mean)?;
        let var = x.sqr()?.mean_keepdim(D::Minus1)?;
        let x = x.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let w = self.weight.to_dtype(DType::F32)?;
        let b = self.bias.to_dtype(DType::F32)?;
        x.broadcast_mul(&w)?.broadcast_add(&b)?.to_dtype(dtype)
    }
}

impl Module for LayerNorm {
    /// # Shapes
    /// `x`: (..., d) -> (..., d)
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if train_applies(x, &[&self.weight, &self.bias]) {
            let op = NormTrain {
                kind: Kind::Layer,
                eps: self.eps as f32,
            };
            return x.contiguous()?.apply_op3(&self.weight, &self.bias, op);
        }
        if self.weight.track_op() || self.bias.track_op() {
            // A trained norm: its weights need the differentiable path (the row kernel's copy
            // of them would also go stale after an update).
            return self.forward_reference(x);
        }
        match fused(x, &self.fast)? {
            Some(y) => Ok(y),
            None => self.forward_reference(x),
        }
    }
}

/// Qwen2's RMSNorm: `x·rsqrt(mean(x²) + eps)` in f32, cast back to the input dtype, *then*
/// multiplied by the weight (transformers `Qwen2RMSNorm`; the order matters in half precision).
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
    fast: RowNorm,
}

impl RmsNorm {
    pub fn new(dim: usize, eps: f64, w: &Weights) -> Result<Self> {
        Ok(Self::from_tensors(w.get(dim, "weight")?, eps)?)
    }

    pub fn from_tensors(weight: Tensor, eps: f64) -> candle_core::Result<Self> {
        let fast = RowNorm {
            kind: Kind::Rms,
            weight: to_f32_vec(&weight)?,
            bias: None,
            eps: eps as f32,
        };
        Ok(Self { weight, eps, fast })
    }

    /// The candle-ops forward (differentiable).
    pub fn forward_reference(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = x.dtype();
        let x32 = x.to_dtype(DType::F32)?;
        let ms = x32.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = x32.broadcast_mul(&(ms + self.eps)?.sqrt()?.recip()?)?;
        normed.to_dtype(dtype)?.broadcast_mul(&self.weight)
    }
}

impl Module for RmsNorm {
    /// # Shapes
    /// `x`: (..., d) -> (..., d)
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if train_applies(x, &[&self.weight]) {
            let op = NormTrain {
                kind: Kind::Rms,
                eps: self.eps as f32,
            };
            return x.contiguous()?.apply_op2(&self.weight, op);
        }
        if self.weight.track_op() {
            // A trained norm (see LayerNorm::forward).
            return self.forward_reference(x);
        }
        match fused(x, &self.fast)? {
            Some(y) => Ok(y),
            None => self.forward_reference(x),
        }
    }
}

fn to_f32_vec(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
}

/// The one-pass path where it applies (CPU, f32/bf16, no gradient tracking).
fn fused(x: &Tensor, op: &RowNorm) -> candle_core::Result<Option<Tensor>> {
    let applies = x.device().is_cpu()
        && !x.track_op()
        && matches!(x.dtype(), DType::F32 | DType::BF16)
        && x.dims().last() == Some(&op.weight.len());
    if !applies {
        return Ok(None);
    }
    x.contiguous()?.apply_op1_no_bwd(op).map(Some)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Layer,
    Rms,
}

#[derive(Debug, Clone)]
struct RowNorm {
    kind: Kind,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    eps: f32,
}

impl RowNorm {
    /// One row, in f32: the normalized values (before the weight for RMSNorm, which applies it
    /// after the cast; LayerNorm's weight and bias are applied here, in f32).
    fn row(&self, x: &mut [f32]) {
        let n = x.len() as f32;
        match self.kind {
            Kind::Layer => {
                let mean = lanes_sum(x, |v| v) / n;
                x.iter_mut().for_each(|v| *v -= mean);
                let var = lanes_sum(x, |v| v * v) / n;
                let inv = 1.0 / (var + self.eps).sqrt();
                let bias = self.bias.as_deref().unwrap_or(&[]);
                for ((v, w), b) in x.iter_mut().zip(&self.weight).zip(bias) {
                    *v = *v * inv * w + b;
                }
            }
            Kind::Rms => {
                let ms = lanes_sum(x, |v| v * v) / n;
                let inv = 1.0 / (ms + self.eps).sqrt();
                x.iter_mut().for_each(|v| *v *= inv);
            }
        }
    }

    fn rows<T: Copy + Send + Sync>(
        &self,
        src: &[T],
        d: usize,
        to_f32: impl Fn(T) -> f32 + Sync,
        store: impl Fn(&mut Vec<f32>, &mut [T]) + Sync,
        zero: T,
    ) -> Vec<T> {
        let mut out = vec![zero; src.len()];
        out.par_chunks_mut(d * 64)
            .zip(src.par_chunks(d * 64))
            .for_each(|(o, s)| {
                let mut buf = Vec::with_capacity(d);
                for (orow, srow) in o.chunks_mut(d).zip(s.chunks(d)) {
                    buf.clear();
                    buf.extend(srow.iter().map(|&v| to_f32(v)));
                    self.row(&mut buf);
                    store(&mut buf, orow);
                }
            });
        out
    }
}

/// `Σ f(x)` over 16 interleaved partial sums (vectorizable, and no worse than a running sum).
fn lanes_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += f(*v);
        }
    }
    for (a, v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += f(*v);
    }
    acc.iter().sum()
}

impl CustomOp1 for RowNorm {
    fn name(&self) -> &'static str {
        "row-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("row-norm: input is not contiguous");
        };
        let d = self.weight.len();
        let storage = match s {
            CpuStorage::F32(v) => {
                let store = |buf: &mut Vec<f32>, o: &mut [f32]| match self.kind {
                    Kind::Layer => o.copy_from_slice(buf),
                    Kind::Rms => {
                        for ((o, v), w) in o.iter_mut().zip(buf.iter()).zip(&self.weight) {
                            *o = v * w;
                        }
                    }
                };
                CpuStorage::F32(self.rows(&v[start..end], d, |x| x, store, 0.0))
            }
            CpuStorage::BF16(v) => {
                let store = |buf: &mut Vec<f32>, o: &mut [bf16]| {
                    if let Kind::Rms = self.kind {
                        // Cast the normalized row to bf16, then multiply by the (bf16) weight
                        // in f32 and round again, as a bf16 `weight * hidden` does.
                        for (v, w) in buf.iter_mut().zip(&self.weight) {
                            *v = bf16::from_f32(*v).to_f32() * w;
                        }
                    }
                    bf16::store(buf, o);
                };
                CpuStorage::BF16(self.rows(
                    &v[start..end],
                    d,
                    |x: bf16| x.to_f32(),
                    store,
                    bf16::ZERO,
                ))
            }
            _ => candle_core::bail!("row-norm: unsupported dtype {:?}", s.dtype()),
        };
        Ok((storage, l.shape().clone()))
    }
}

/// Whether the differentiable one-pass norm applies: f32 on the CPU, something taking part in
/// a gradient.
fn train_applies(x: &Tensor, params: &[&Tensor]) -> bool {
    x.device().is_cpu()
        && x.dtype() == DType::F32
        && params.iter().all(|p| p.dtype() == DType::F32)
        && (x.track_op() || params.iter().any(|p| p.track_op()))
}

/// LayerNorm (x, weight, bias) or RMSNorm (x, weight) over the last axis as one differentiable
/// op (training, f32): the row kernel's arithmetic, weights read from their tensors at every
/// call. The backward recomputes each row's statistics from `x`:
/// - LayerNorm: `x̂ = (x - μ)·r`, `g = dy∘w`, `dx = r·(g - mean(g) - x̂·mean(g∘x̂))`,
///   `dw = Σ dy∘x̂`, `db = Σ dy`;
/// - RMSNorm: `x̂ = x·r`, `g = dy∘w`, `dx = r·(g - x̂·mean(g∘x̂))`, `dw = Σ dy∘x̂`,
///
/// with `r = 1/sqrt(var + eps)` (or `mean(x²) + eps`). A frozen weight gets no gradient.
struct NormTrain {
    kind: Kind,
    eps: f32,
}

/// Rows per parallel task of [`NormTrain`].
const NORM_ROWS: usize = 64;

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, len: usize) -> candle_core::Result<&'a [f32]> {
    let (CpuStorage::F32(v), Some((a, b))) = (s, l.contiguous_offsets()) else {
        candle_core::bail!("norm-train: operands must be contiguous f32");
    };
    if b - a != len {
        candle_core::bail!("norm-train: operand of {} elements, expected {len}", b - a);
    }
    Ok(&v[a..b])
}

impl NormTrain {
    /// Each row's normalization `x̂` (in place) and its `r`.
    fn normalize(&self, x: &mut [f32]) -> f32 {
        let n = x.len() as f32;
        match self.kind {
            Kind::Layer => {
                let mean = lanes_sum(x, |v| v) / n;
                x.iter_mut().for_each(|v| *v -= mean);
                let var = lanes_sum(x, |v| v * v) / n;
                let r = 1.0 / (var + self.eps).sqrt();
                x.iter_mut().for_each(|v| *v *= r);
                r
            }
            Kind::Rms => {
                let ms = lanes_sum(x, |v| v * v) / n;
                let r = 1.0 / (ms + self.eps).sqrt();
                x.iter_mut().for_each(|v| *v *= r);
                r
            }
        }
    }

    fn forward(
        &self,
        x: (&CpuStorage, &Layout),
        w: (&CpuStorage, &Layout),
        b: Option<(&CpuStorage, &Layout)>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = *x.1.dims().last().unwrap_or(&0);
        let xs = f32_slice(x.0, x.1, x.1.shape().elem_count())?;
        let ws = f32_slice(w.0, w.1, d)?;
        let bs = match b {
            Some((s, l)) => Some(f32_slice(s, l, d)?),
            None => None,
        };
        let mut out = xs.to_vec();
        out.par_chunks_mut(d * NORM_ROWS).for_each(|rows| {
            for row in rows.chunks_mut(d) {
                match (self.kind, bs) {
                    // The row kernel's LayerNorm: `(x - μ)·r·w + b`.
                    (Kind::Layer, Some(bs)) => {
                        let n = d as f32;
                        let mean = lanes_sum(row, |v| v) / n;
                        row.iter_mut().for_each(|v| *v -= mean);
                        let var = lanes_sum(row, |v| v * v) / n;
                        let inv = 1.0 / (var + self.eps).sqrt();
                        for ((v, w), b) in row.iter_mut().zip(ws).zip(bs) {
                            *v = *v * inv * w + b;
                        }
                    }
                    _ => {
                        self.normalize(row);
                        row.iter_mut().zip(ws).for_each(|(v, w)| *v *= w);
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), x.1.shape().clone()))
    }

    /// (dx, dw, db) where each is needed.
    fn backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = x.dim(D::Minus1)?;
        let xs = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let dys = dy.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let ws = w.flatten_all()?.to_vec1::<f32>()?;
        let (want_dx, want_dw) = (x.track_op(), w.track_op());
        let want_db = b.is_some_and(|b| b.track_op());
        let mut dx = vec![0f32; if want_dx { xs.len() } else { 0 }];
        let chunk = d * NORM_ROWS;
        let tasks = xs.len().div_ceil(chunk.max(1));
        // Per task: its rows of dx, and partial sums of dw and db.
        let partial = |ti: usize, dx: &mut [f32]| -> (Vec<f32>, Vec<f32>) {
            let (mut dw, mut db) = (vec![0f32; d], vec![0f32; d]);
            let lo = ti * chunk;
            let hi = (lo + chunk).min(xs.len());
            let mut xh = vec![0f32; d];
            let mut g = vec![0f32; d];
            for (ri, at) in (lo..hi).step_by(d).enumerate() {
                xh.copy_from_slice(&xs[at..at + d]);
                let r = self.normalize(&mut xh);
                let dyr = &dys[at..at + d];
                if want_dw {
                    dw.iter_mut()
                        .zip(dyr.iter().zip(&xh))
                        .for_each(|(a, (g, x))| *a += g * x);
                }
                if want_db {
                    db.iter_mut().zip(dyr).for_each(|(a, g)| *a += g);
                }
                if want_dx {
                    g.iter_mut()
                        .zip(dyr.iter().zip(&ws))
                        .for_each(|(o, (a, b))| *o = a * b);
                    let n = d as f32;
                    let mgx = lanes_sum_pair(&g, &xh) / n;
                    let mg = match self.kind {
                        Kind::Layer => lanes_sum(&g, |v| v) / n,
                        Kind::Rms => 0.0,
                    };
                    let out = &mut dx[ri * d..(ri + 1) * d];
                    for ((o, gv), xv) in out.iter_mut().zip(&g).zip(&xh) {
                        *o = r * (gv - mg - xv * mgx);
                    }
                }
            }
            (dw, db)
        };
        let parts: Vec<(Vec<f32>, Vec<f32>)> = if want_dx {
            dx.par_chunks_mut(chunk)
                .enumerate()
                .map(|(ti, out)| partial(ti, out))
                .collect()
        } else {
            (0..tasks)
                .into_par_iter()
                .map(|ti| partial(ti, &mut []))
                .collect()
        };
        let sum = |which: usize| -> Vec<f32> {
            let mut acc = vec![0f32; d];
            for p in &parts {
                let v = if which == 0 { &p.0 } else { &p.1 };
                acc.iter_mut().zip(v).for_each(|(a, x)| *a += x);
            }
            acc
        };
        let dev = x.device();
        let dx = if want_dx {
            Some(Tensor::from_vec(dx, x.shape(), dev)?)
        } else {
            None
        };
        let dw = if want_dw {
            Some(Tensor::from_vec(sum(0), d, dev)?)
        } else {
            None
        };
        let db = if want_db {
            Some(Tensor::from_vec(sum(1), d, dev)?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

/// `Σ a∘b` over 16 interleaved partial sums.
fn lanes_sum_pair(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((s, p), q) in acc.iter_mut().zip(x).zip(y) {
            *s += p * q;
        }
    }
    for ((s, p), q) in acc.iter_mut().zip(ra).zip(rb) {
        *s += p * q;
    }
    acc.iter().sum()
}

impl CustomOp2 for NormTrain {
    fn name(&self) -> &'static str {
        "norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.forward((s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = self.backward(x, w, None, dy)?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for NormTrain {
    fn name(&self) -> &'static str {
        "norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.forward((s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.backward(x, w, Some(b), dy)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::test_util::max_abs_diff;

    /// The one-pass kernels equal the candle-ops forwards in f32 and bf16 (the latter to one
    /// bf16 rounding: summation order may flip a rounding), with a row length that is not a
    /// multiple of 16 and an offset mean. Errors are relative to `|want| + 1` (outputs near 0
    /// come from cancellation in `w·x̂ + b`).
    #[test]
    fn fused_norms_match_reference() {
        let dev = Device::Cpu;
        let d = 37;
        let x = (Tensor::randn(0f32, 2.0, (3, 70, d), &dev).unwrap() + 0.7).unwrap();
        let w = Tensor::randn(1f32, 0.2, d, &dev).unwrap();
        let b = Tensor::randn(0f32, 0.2, d, &dev).unwrap();
        for dt in [DType::F32, DType::BF16] {
            let cast = |t: &Tensor| t.to_dtype(dt).unwrap();
            let ln = LayerNorm::from_tensors(cast(&w), cast(&b), 1e-6).unwrap();
            let rms = RmsNorm::from_tensors(cast(&w), 1e-6).unwrap();
            let xs = cast(&x);
            for (name, got, want) in [
                (
                    "layer",
                    ln.forward(&xs).unwrap(),
                    ln.forward_reference(&xs).unwrap(),
                ),
                (
                    "rms",
                    rms.forward(&xs).unwrap(),
                    rms.forward_reference(&xs).unwrap(),
                ),
            ] {
                assert_eq!(got.dtype(), dt);
                let got = got.to_dtype(DType::F32).unwrap();
                let want = want.to_dtype(DType::F32).unwrap();
                let err = ((&got - &want).unwrap().abs().unwrap()
                    / (want.abs().unwrap() + 1.0).unwrap())
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
                let tol = if dt == DType::F32 { 1e-5 } else { 1.0 / 128.0 };
                assert!(err <= tol, "{name} {dt:?}: relative error {err}");
            }
        }
    }

    /// Under a gradient (trained or frozen weights, tracked input) the one-pass op gives the
    /// reference's values and gradients.
    #[test]
    fn train_norms_match_reference() {
        use candle_core::Var;
        let dev = Device::Cpu;
        let d = 37;
        let x =
            Var::from_tensor(&(Tensor::randn(0f32, 2.0, (3, 70, d), &dev).unwrap() + 0.7).unwrap())
                .unwrap();
        let w = Var::randn(1f32, 0.2, d, &dev).unwrap();
        let b = Var::randn(0f32, 0.2, d, &dev).unwrap();
        let mix = Tensor::randn(0f32, 1.0, (3, 70, d), &dev).unwrap();
        let check = |got: &Tensor, want: &Tensor, vars: &[&Var], name: &str| {
            let f = max_abs_diff(got, want);
            assert!(f <= 1e-5, "{name}: forward differs by {f}");
            let g1 = (got * &mix).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (want * &mix)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for v in vars {
                let (a, e) = (g1.get(v).unwrap(), g2.get(v).unwrap());
                let diff = max_abs_diff(a, e);
                let scale = crate::test_util::max_abs(e);
                assert!(
                    diff <= 1e-5 * scale,
                    "{name}: gradient differs by {diff} of {scale}"
                );
            }
        };
        let ln =
            LayerNorm::from_tensors(w.as_tensor().clone(), b.as_tensor().clone(), 1e-6).unwrap();
        check(
            &ln.forward(&x).unwrap(),
            &ln.forward_reference(&x).unwrap(),
            &[&x, &w, &b],
            "layer",
        );
        let rms = RmsNorm::from_tensors(w.as_tensor().clone(), 1e-6).unwrap();
        check(
            &rms.forward(&x).unwrap(),
            &rms.forward_reference(&x).unwrap(),
            &[&x, &w],
            "rms",
        );
        // Frozen weights: only the input's gradient.
        let frozen = RmsNorm::from_tensors(w.as_tensor().detach(), 1e-6).unwrap();
        check(
            &frozen.forward(&x).unwrap(),
            &frozen.forward_reference(&x).unwrap(),
            &[&x],
            "rms frozen",
        );
    }
}
