//! Vectorized elementwise math for the fused CPU paths: `exp`, and the activations built on it.
//!
//! Each function matches its libm/PyTorch counterpart to a few ulp (tested below); the fused
//! paths that use them are tested against the candle reference ops.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use half::bf16;
use rayon::prelude::*;

/// Whether this CPU runs the AVX-512 versions.
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The activations with a fused path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FusedActivation {
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, computed as `x·σ(2·√(2/π)·(x + 0.044715·x³))`
    /// (the same function: `1 + tanh(y) = 2σ(2y)`), which has no cancellation for negative x.
    GeluTanh,
    /// `x·σ(x)`.
    Silu,
}

/// The activation applied elementwise on AVX-512, or `None` where the fused path does not apply
/// (not f32/bf16 on a CPU with AVX-512, or a tensor taking part in a gradient: the candle ops
/// are the differentiable reference).
pub fn activation_fused(x: &Tensor, act: FusedActivation) -> candle_core::Result<Option<Tensor>> {
    let applies = x.device().is_cpu()
        && !x.track_op()
        && matches!(x.dtype(), DType::F32 | DType::BF16)
        && has_avx512();
    if !applies {
        return Ok(None);
    }
    x.contiguous()?.apply_op1_no_bwd(&ActOp(act)).map(Some)
}

/// The activation as a differentiable op (training, f32 on AVX-512): the same vectorized
/// function, and a vectorized derivative in the backward (candle's reference backward of
/// `gelu` is a chain of ten tensor ops over the input).
pub fn activation_train(x: &Tensor, act: FusedActivation) -> candle_core::Result<Option<Tensor>> {
    let applies = x.device().is_cpu() && x.track_op() && x.dtype() == DType::F32 && has_avx512();
    if !applies {
        return Ok(None);
    }
    x.contiguous()?.apply_op1(ActOp(act)).map(Some)
}

/// `silu(gate)·up` as one differentiable op (training, f32 on AVX-512): the values of the
/// fused SiLU followed by the product, one node in the graph instead of two (and no kept
/// `silu(gate)`). Backward: `d_up = dy·silu(gate)`, `d_gate = dy·up·σ(gate)·(1 + gate·(1 - σ))`.
///
/// # Shapes
/// `gate`, `up`: the same shape -> that shape
pub fn silu_mul_train(gate: &Tensor, up: &Tensor) -> candle_core::Result<Option<Tensor>> {
    let applies = gate.device().is_cpu()
        && (gate.track_op() || up.track_op())
        && gate.dtype() == DType::F32
        && up.dtype() == DType::F32
        && gate.shape() == up.shape()
        && has_avx512();
    if !applies {
        return Ok(None);
    }
    gate.contiguous()?
        .apply_op2(&up.contiguous()?, SiluMul)
        .map(Some)
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("fused activation: operand must be contiguous f32"),
    }
}

fn to_f32_vec(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.contiguous()?.flatten_all()?.to_vec1::<f32>()
}

struct SiluMul;

impl candle_core::CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "silu-mul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (g, u) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let mut out = g.to_vec();
        out.par_chunks_mut(CHUNK)
            .zip(u.par_chunks(CHUNK))
            .for_each(|(o, u)| {
                apply_in_place(FusedActivation::Silu, o);
                o.iter_mut().zip(u).for_each(|(a, b)| *a *= b);
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (g, u, d) = (to_f32_vec(gate)?, to_f32_vec(up)?, to_f32_vec(dy)?);
        let mut dg = vec![0f32; g.len()];
        let mut du = vec![0f32; g.len()];
        dg.par_chunks_mut(CHUNK)
            .zip(du.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(i, (dg, du))| {
                let lo = i * CHUNK;
                let hi = lo + dg.len();
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `silu_mul_train` checked AVX-512F; all slices have hi - lo elements.
                unsafe {
                    x86::silu_mul_grad(&g[lo..hi], &u[lo..hi], &d[lo..hi], dg, du)
                };
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!("{lo} {hi} {} {}", dg.len(), du.len());
            });
        let dev = gate.device();
        Ok((
            gate.track_op()
                .then(|| Tensor::from_vec(dg, gate.shape(), dev))
                .transpose()?,
            up.track_op()
                .then(|| Tensor::from_vec(du, up.shape(), dev))
                .transpose()?,
        ))
    }
}

struct ActOp(FusedActivation);

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

impl CustomOp1 for ActOp {
    fn name(&self) -> &'static str {
        "fused-activation"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = l.shape().elem_count();
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("fused activation: input is not contiguous");
        };
        let act = self.0;
        let storage = match s {
            CpuStorage::F32(v) => {
                let src = &v[start..end];
                let mut out = vec![0f32; n];
                out.par_chunks_mut(CHUNK)
                    .zip(src.par_chunks(CHUNK))
                    .for_each(|(o, i)| {
                        o.copy_from_slice(i);
                        apply_in_place(act, o);
                    });
                CpuStorage::F32(out)
            }
            CpuStorage::BF16(v) => {
                let src = &v[start..end];
                let mut out = vec![bf16::ZERO; n];
                out.par_chunks_mut(CHUNK)
                    .zip(src.par_chunks(CHUNK))
                    .for_each(|(o, i)| {
                        let mut buf: Vec<f32> = i.iter().map(|x| x.to_f32()).collect();
                        apply_in_place(act, &mut buf);
                        for (d, s) in o.iter_mut().zip(&buf) {
                            *d = bf16::from_f32(*s);
                        }
                    });
                CpuStorage::BF16(out)
            }
            _ => candle_core::bail!("fused activation: unsupported dtype {:?}", s.dtype()),
        };
        Ok((storage, l.shape().clone()))
    }

    /// `dx = dy·f'(x)` (f32; only reached through [`activation_train`]).
    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (x, g) = (to_f32_vec(arg)?, to_f32_vec(grad)?);
        let mut dx = vec![0f32; x.len()];
        let act = self.0;
        dx.par_chunks_mut(CHUNK).enumerate().for_each(|(i, o)| {
            let lo = i * CHUNK;
            let hi = lo + o.len();
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `activation_train` checked AVX-512F; slices of hi - lo elements.
            unsafe {
                x86::activation_grad(act, &x[lo..hi], &g[lo..hi], o)
            };
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("{act:?} {lo} {hi}");
        });
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

fn apply_in_place(act: FusedActivation, x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `activation_fused` checked AVX-512F.
        unsafe { x86::activation(act, x) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no fused activation here {act:?} {}", x.len());
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use super::FusedActivation;

    /// `e^x` to about 1 ulp over the f32 range: `x = n·ln2 + r` with `|r| <= ln2/2`, a degree-7
    /// Taylor polynomial for `e^r` (truncation below 2^-27 relative), scaled by `2^n`. Below
    /// -104 the result is 0, as `expf`'s is.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn exp(x: __m512) -> __m512 {
        let x = _mm512_max_ps(
            _mm512_min_ps(x, _mm512_set1_ps(88.722_83)),
            _mm512_set1_ps(-104.0),
        );
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm512_set1_ps(1.0 / 5040.0);
        for c in [
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        _mm512_scalef_ps(p, n)
    }

    /// `x·σ(z)` with `σ(z) = 1/(1 + e^-z)`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn times_sigmoid(x: __m512, z: __m512) -> __m512 {
        let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), z));
        _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0), e))
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn one(act: FusedActivation, x: __m512) -> __m512 {
        match act {
            FusedActivation::Silu => times_sigmoid(x, x),
            FusedActivation::GeluTanh => {
                // 2·√(2/π)·(x + 0.044715·x³)
                let x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
                let inner = _mm512_fmadd_ps(_mm512_set1_ps(0.044715), x3, x);
                let z = _mm512_mul_ps(_mm512_set1_ps(2.0 * 0.797_884_6), inner);
                times_sigmoid(x, z)
            }
        }
    }

    /// `f'(x)`: SiLU `σ(x)·(1 + x·(1 - σ(x)))`; tanh-GELU `x·σ(z)` with `z = c·(x + a·x³)`:
    /// `σ(z) + x·σ(z)·(1 - σ(z))·c·(1 + 3a·x²)`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn derivative(act: FusedActivation, x: __m512) -> __m512 {
        let one_ = _mm512_set1_ps(1.0);
        let sigmoid = |z: __m512| {
            let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), z));
            _mm512_div_ps(one_, _mm512_add_ps(one_, e))
        };
        match act {
            FusedActivation::Silu => {
                let s = sigmoid(x);
                let t = _mm512_fmadd_ps(x, _mm512_sub_ps(one_, s), one_);
                _mm512_mul_ps(s, t)
            }
            FusedActivation::GeluTanh => {
                let (a, c) = (0.044715f32, 2.0 * 0.797_884_6f32);
                let x2 = _mm512_mul_ps(x, x);
                let inner = _mm512_fmadd_ps(_mm512_set1_ps(a), _mm512_mul_ps(x2, x), x);
                let s = sigmoid(_mm512_mul_ps(_mm512_set1_ps(c), inner));
                let dz = _mm512_mul_ps(
                    _mm512_set1_ps(c),
                    _mm512_fmadd_ps(_mm512_set1_ps(3.0 * a), x2, one_),
                );
                let xs1s = _mm512_mul_ps(_mm512_mul_ps(x, s), _mm512_sub_ps(one_, s));
                _mm512_fmadd_ps(xs1s, dz, s)
            }
        }
    }

    /// `dx = dy·f'(x)` over equal-length slices.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn activation_grad(act: FusedActivation, x: &[f32], dy: &[f32], dx: &mut [f32]) {
        let n = dx.len();
        let mut i = 0;
        while i < n {
            let m: __mmask16 = if i + 16 <= n {
                0xffff
            } else {
                ((1u32 << (n - i)) - 1) as u16
            };
            let xv = _mm512_maskz_loadu_ps(m, x.as_ptr().add(i));
            let gv = _mm512_maskz_loadu_ps(m, dy.as_ptr().add(i));
            let r = _mm512_mul_ps(gv, derivative(act, xv));
            _mm512_mask_storeu_ps(dx.as_mut_ptr().add(i), m, r);
            i += 16;
        }
    }

    /// The gradients of `silu(g)·u`: `du = dy·silu(g)`, `dg = dy·u·silu'(g)`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn silu_mul_grad(g: &[f32], u: &[f32], dy: &[f32], dg: &mut [f32], du: &mut [f32]) {
        let n = dg.len();
        let mut i = 0;
        while i < n {
            let m: __mmask16 = if i + 16 <= n {
                0xffff
            } else {
                ((1u32 << (n - i)) - 1) as u16
            };
            let gv = _mm512_maskz_loadu_ps(m, g.as_ptr().add(i));
            let uv = _mm512_maskz_loadu_ps(m, u.as_ptr().add(i));
            let dv = _mm512_maskz_loadu_ps(m, dy.as_ptr().add(i));
            let silu = one(FusedActivation::Silu, gv);
            _mm512_mask_storeu_ps(du.as_mut_ptr().add(i), m, _mm512_mul_ps(dv, silu));
            let d = _mm512_mul_ps(_mm512_mul_ps(dv, uv), derivative(FusedActivation::Silu, gv));
            _mm512_mask_storeu_ps(dg.as_mut_ptr().add(i), m, d);
            i += 16;
        }
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn activation(act: FusedActivation, x: &mut [f32]) {
        let n = x.len();
        let p = x.as_mut_ptr();
        let mut i = 0;
        while i + 16 <= n {
            _mm512_storeu_ps(p.add(i), one(act, _mm512_loadu_ps(p.add(i))));
            i += 16;
        }
        if i < n {
            let m: __mmask16 = ((1u32 << (n - i)) - 1) as u16;
            _mm512_mask_storeu_ps(p.add(i), m, one(act, _mm512_maskz_loadu_ps(m, p.add(i))));
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        if !has_avx512() {
            return;
        }
        let xs: Vec<f32> = (0..20000).map(|i| -103.0 + i as f32 * 0.0095).collect();
        for chunk in xs.chunks(16) {
            let mut buf = [0f32; 16];
            buf[..chunk.len()].copy_from_slice(chunk);
            let got: [f32; 16] = unsafe {
                std::mem::transmute(x86::exp(std::arch::x86_64::_mm512_loadu_ps(buf.as_ptr())))
            };
            for (x, g) in chunk.iter().zip(got) {
                let want = x.exp();
                let ulp = (want.to_bits() as i64 - g.to_bits() as i64).abs();
                assert!(
                    ulp <= 2 || want < f32::MIN_POSITIVE,
                    "exp({x}) = {g}, libm {want}"
                );
            }
        }
    }

    /// Under a gradient: the values and input gradients of candle's ops (and of SiLU times a
    /// second input).
    #[test]
    fn train_activations_match_candle() {
        if !has_avx512() {
            return;
        }
        let dev = Device::Cpu;
        let x = candle_core::Var::from_tensor(
            &(Tensor::randn(0f32, 3.0, (7, 37), &dev).unwrap() - 1.0).unwrap(),
        )
        .unwrap();
        let u = candle_core::Var::randn(0f32, 1.0, (7, 37), &dev).unwrap();
        let xt = x.as_tensor();
        let grad = |y: &Tensor, v: &candle_core::Var| {
            y.sum_all()
                .unwrap()
                .backward()
                .unwrap()
                .get(v)
                .unwrap()
                .clone()
        };
        let close = |a: &Tensor, b: &Tensor, tol: f32, what: &str| {
            let d = (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d <= tol, "{what}: {d}");
        };
        for (act, reference) in [
            (FusedActivation::GeluTanh, xt.gelu().unwrap()),
            (FusedActivation::Silu, xt.silu().unwrap()),
        ] {
            let got = activation_train(xt, act).unwrap().expect("applies");
            close(&got, &reference, 2e-6, "value");
            close(&grad(&got, &x), &grad(&reference, &x), 1e-5, "gradient");
        }
        let got = silu_mul_train(xt, u.as_tensor()).unwrap().expect("applies");
        let want = (xt.silu().unwrap() * u.as_tensor()).unwrap();
        close(&got, &want, 1e-5, "silu·u");
        close(&grad(&got, &x), &grad(&want, &x), 1e-5, "d gate");
        close(&grad(&got, &u), &grad(&want, &u), 1e-5, "d up");
    }

    /// Both activations, both dtypes, a length with a partial vector: equal to candle's ops.
    #[test]
    fn activations_match_candle() {
        if !has_avx512() {
            return;
        }
        let x = (Tensor::randn(0f32, 3.0, (7, 37), &Device::Cpu).unwrap() - 1.0).unwrap();
        for (act, reference) in [
            (FusedActivation::GeluTanh, x.gelu().unwrap()),
            (FusedActivation::Silu, x.silu().unwrap()),
        ] {
            let got = activation_fused(&x, act).unwrap().expect("applies");
            let d = (&got - &reference)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d <= 2e-6, "{act:?} f32: {d}");
            let xh = x.to_dtype(DType::BF16).unwrap();
            let got = activation_fused(&xh, act)
                .unwrap()
                .expect("applies")
                .to_dtype(DType::F32)
                .unwrap();
            // One bf16 rounding of the f32 result on the same (rounded) input.
            let xf = xh.to_dtype(DType::F32).unwrap();
            let want = match act {
                FusedActivation::GeluTanh => xf.gelu(),
                FusedActivation::Silu => xf.silu(),
            }
            .unwrap();
            // (+1e-4: candle's 0.5·x·(1 + tanh) cancels for x << 0, off by up to ~1e-6 absolute.)
            let rel = ((&got - &want).unwrap().abs().unwrap()
                / (want.abs().unwrap() + 1e-4).unwrap())
            .unwrap();
            let d = rel.max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d <= 1.0 / 256.0, "{act:?} bf16: relative {d}");
        }
    }
}
