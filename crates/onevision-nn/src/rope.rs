//! Rotary position embedding, "rotate half" (non-interleaved) form, as in transformers' Qwen2.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Shape, Tensor, WithDType, D};
use half::bf16;
use rayon::prelude::*;

/// The default RoPE: `inv_freq[i] = 1 / θ^(2i/d)`, angles `pos·inv_freq` in f32, cos/sin in f32
/// then cast to the compute dtype (transformers `Qwen2RotaryEmbedding`, rope type "default").
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    inv_freq: Vec<f32>,
}

impl RotaryEmbedding {
    pub fn new(head_dim: usize, theta: f64) -> Self {
        let theta = theta as f32;
        let inv_freq = (0..head_dim)
            .step_by(2)
            .map(|i| 1.0 / theta.powf(i as f32 / head_dim as f32))
            .collect();
        Self { inv_freq }
    }

    /// cos and sin tables for positions `start..start + len`.
    ///
    /// # Shapes
    /// returns `(cos, sin)`, each (t, d)
    pub fn cos_sin(
        &self,
        start: usize,
        len: usize,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut angles = Vec::with_capacity(len * half * 2);
        for p in start..start + len {
            let p = p as f32;
            let row: Vec<f32> = self.inv_freq.iter().map(|f| p * f).collect();
            angles.extend_from_slice(&row);
            angles.extend_from_slice(&row);
        }
        let angles = Tensor::from_vec(angles, (len, half * 2), device)?; // (t, d)
        Ok((
            angles.cos()?.to_dtype(dtype)?,
            angles.sin()?.to_dtype(dtype)?,
        ))
    }
}

/// `x·cos + rotate_half(x)·sin`, with `rotate_half(x) = cat(-x[d/2:], x[:d/2])`: one pass
/// over `x` for inference (CPU, f32/bf16, no gradient tracking), else
/// [`apply_rotary_reference`].
///
/// # Shapes
/// `x`: (b, h, t, d); `cos`, `sin`: (t, d) -> (b, h, t, d)
pub fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    let applies = x.device().is_cpu()
        && !(x.track_op() || cos.track_op() || sin.track_op())
        && matches!(x.dtype(), DType::F32 | DType::BF16)
        && x.dtype() == cos.dtype()
        && x.dtype() == sin.dtype();
    if applies {
        return x
            .contiguous()?
            .apply_op3_no_bwd(&cos.contiguous()?, &sin.contiguous()?, &RopeOp);
    }
    // Under a gradient (training) with constant tables: the same pass as one differentiable op
    // (the reference keeps six tensors per call in the graph).
    let train = x.device().is_cpu()
        && x.track_op()
        && !(cos.track_op() || sin.track_op())
        && x.dtype() == DType::F32
        && cos.dtype() == DType::F32
        && sin.dtype() == DType::F32;
    if train {
        return x
            .contiguous()?
            .apply_op3(&cos.contiguous()?, &sin.contiguous()?, RopeOp);
    }
    apply_rotary_reference(x, cos, sin)
}

/// The candle-ops rotary embedding (differentiable).
///
/// # Shapes
/// `x`: (b, h, t, d); `cos`, `sin`: (t, d) -> (b, h, t, d)
pub fn apply_rotary_reference(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
) -> candle_core::Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?
}

/// The one-pass rotary embedding. Each product and the sum are rounded to the compute dtype,
/// as the reference's three tensor ops do.
struct RopeOp;

fn rope_rows<T: WithDType>(x: &[T], cos: &[T], sin: &[T], t: usize, d: usize) -> Vec<T> {
    let half = d / 2;
    // f32 arithmetic, each result rounded to T (exact for f32; f32 -> f64 -> bf16 rounds once).
    let f = |v: T| v.to_f64() as f32;
    let round = |v: f32| T::from_f64(v as f64);
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(d).enumerate().for_each(|(row, o)| {
        let pos = row % t;
        let (c, s) = (&cos[pos * d..(pos + 1) * d], &sin[pos * d..(pos + 1) * d]);
        let xr = &x[row * d..(row + 1) * d];
        for j in 0..d {
            let rot = if j < half {
                -f(xr[j + half])
            } else {
                f(xr[j - half])
            };
            let a = f(round(f(xr[j]) * f(c[j])));
            let b = f(round(rot * f(s[j])));
            o[j] = round(a + b);
        }
    });
    out
}

impl CustomOp3 for RopeOp {
    fn name(&self) -> &'static str {
        "rotary"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sc: &CpuStorage,
        lc: &Layout,
        ss: &CpuStorage,
        ls: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, _, t, d) = lx.shape().dims4()?;
        if lc.shape().dims2()? != (t, d) || ls.shape().dims2()? != (t, d) || d % 2 != 0 {
            candle_core::bail!(
                "rotary: x {:?} with cos {:?}, sin {:?}",
                lx.shape(),
                lc.shape(),
                ls.shape()
            );
        }
        let range = |l: &Layout| {
            l.contiguous_offsets()
                .ok_or_else(|| candle_core::Error::Msg("rotary: operand not contiguous".into()))
        };
        let ((x0, x1), (c0, c1), (s0, s1)) = (range(lx)?, range(lc)?, range(ls)?);
        fn run<T: WithDType>(
            sx: &CpuStorage,
            sc: &CpuStorage,
            ss: &CpuStorage,
            r: [(usize, usize); 3],
            t: usize,
            d: usize,
        ) -> candle_core::Result<CpuStorage> {
            fn get<T: WithDType>(
                s: &CpuStorage,
                (a, b): (usize, usize),
            ) -> candle_core::Result<&[T]> {
                Ok(&T::cpu_storage_as_slice(s)?[a..b])
            }
            let (x, c, s) = (
                get::<T>(sx, r[0])?,
                get::<T>(sc, r[1])?,
                get::<T>(ss, r[2])?,
            );
            Ok(T::to_cpu_storage_owned(rope_rows(x, c, s, t, d)))
        }
        let r = [(x0, x1), (c0, c1), (s0, s1)];
        let storage = match sx {
            CpuStorage::F32(_) => run::<f32>(sx, sc, ss, r, t, d)?,
            CpuStorage::BF16(_) => run::<bf16>(sx, sc, ss, r, t, d)?,
            _ => candle_core::bail!("rotary: unsupported dtype {:?}", sx.dtype()),
        };
        Ok((storage, lx.shape().clone()))
    }

    /// `y = x·cos + R(x)·sin` with `R(x) = cat(-x₂, x₁)` is linear in `x`:
    /// `dx = dy·cos + Rᵀ(dy·sin)`, `Rᵀ(z) = cat(z₂, -z₁)`. The tables are constants.
    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = dy.dim(D::Minus1)?;
        let ds = dy.broadcast_mul(&sin.detach())?;
        let (z1, z2) = (
            ds.narrow(D::Minus1, 0, d / 2)?,
            ds.narrow(D::Minus1, d / 2, d / 2)?,
        );
        let rt = Tensor::cat(&[&z2, &z1.neg()?], D::Minus1)?;
        let dx = (dy.broadcast_mul(&cos.detach())? + rt)?;
        Ok((Some(dx), None, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::max_abs_diff;

    /// The one-pass rotary embedding equals the candle ops bit for bit (same roundings), f32
    /// and bf16.
    #[test]
    fn fused_rotary_equals_reference() {
        let dev = Device::Cpu;
        let rope = RotaryEmbedding::new(16, 10000.0);
        for dt in [DType::F32, DType::BF16] {
            let (cos, sin) = rope.cos_sin(5, 7, dt, &dev).unwrap();
            let x = Tensor::randn(0f32, 1.0, (2, 3, 7, 16), &dev)
                .unwrap()
                .to_dtype(dt)
                .unwrap();
            let got = apply_rotary(&x, &cos, &sin)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            let want = apply_rotary_reference(&x, &cos, &sin)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            assert_eq!(max_abs_diff(&got, &want), 0.0, "{dt:?}");
        }
    }

    /// Under a gradient the op gives the reference's values and input gradient.
    #[test]
    fn rotary_gradient_equals_reference() {
        let dev = Device::Cpu;
        let rope = RotaryEmbedding::new(16, 10000.0);
        let (cos, sin) = rope.cos_sin(0, 7, DType::F32, &dev).unwrap();
        let x = candle_core::Var::randn(0f32, 1.0, (2, 3, 7, 16), &dev).unwrap();
        let mix = Tensor::randn(0f32, 1.0, (2, 3, 7, 16), &dev).unwrap();
        let got = apply_rotary(x.as_tensor(), &cos, &sin).unwrap();
        let want = apply_rotary_reference(x.as_tensor(), &cos, &sin).unwrap();
        assert_eq!(max_abs_diff(&got, &want), 0.0);
        let g1 = (&got * &mix)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g2 = (&want * &mix)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let d = max_abs_diff(g1.get(&x).unwrap(), g2.get(&x).unwrap());
        assert!(d <= 1e-6, "gradient differs by {d}");
    }
}
