//! Vectorized elementwise math for the fused CPU paths: `exp`, and the activations built on it,
//! written once over the vector width ([`crate::vector::F32s`]) and run at the AVX-512 or AVX2
//! level ([`crate::cpu`]).
//!
//! Each function matches its libm/PyTorch counterpart to a few ulp (tested below, at every
//! level); the fused paths that use them are tested against the candle reference ops.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use half::bf16;
use rayon::prelude::*;

use crate::cpu::{self, KernelLevel};
use crate::vector::{self, F32s, Kernel};

/// Whether the kernels run at the AVX-512 level ([`cpu::level`]).
pub fn has_avx512() -> bool {
    cpu::level() == KernelLevel::Avx512
}

/// Whether the vectorized activations run (the AVX2 level or above).
pub(crate) fn vectorized() -> bool {
    cpu::level() >= KernelLevel::Avx2
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

/// The activation applied elementwise, or `None` where the fused path does not apply (not
/// f32/bf16, the reference kernel level, or a tensor taking part in a gradient: the candle ops
/// are the differentiable reference).
pub fn activation_fused(x: &Tensor, act: FusedActivation) -> candle_core::Result<Option<Tensor>> {
    let applies = x.device().is_cpu()
        && !x.track_op()
        && matches!(x.dtype(), DType::F32 | DType::BF16)
        && vectorized();
    if !applies {
        return Ok(None);
    }
    x.contiguous()?.apply_op1_no_bwd(&ActOp(act)).map(Some)
}

/// The activation as a differentiable op (training, f32, AVX2 level or above): the same vectorized
/// function, and a vectorized derivative in the backward (candle's reference backward of
/// `gelu` is a chain of ten tensor ops over the input).
pub fn activation_train(x: &Tensor, act: FusedActivation) -> candle_core::Result<Option<Tensor>> {
    let applies = x.device().is_cpu() && x.track_op() && x.dtype() == DType::F32 && vectorized();
    if !applies {
        return Ok(None);
    }
    x.contiguous()?.apply_op1(ActOp(act)).map(Some)
}

/// `silu(gate)·up` as one differentiable op (training, f32, AVX2 level or above): the values of the
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
        && vectorized();
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
                silu_mul_grad_in(&g[lo..hi], &u[lo..hi], &d[lo..hi], dg, du);
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
            activation_grad_in(act, &x[lo..hi], &g[lo..hi], o);
        });
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// The activation in place at the current level (as [`activation_grad_in`]).
pub(crate) fn apply_in_place(act: FusedActivation, x: &mut [f32]) {
    // SAFETY: no requirement beyond the level's (checked by the callers).
    unsafe { vector::run(cpu::level(), Activation { act, x }) }
        .expect("fused activation at a vector level");
}

struct Activation<'a> {
    act: FusedActivation,
    x: &'a mut [f32],
}

impl Kernel for Activation<'_> {
    type Output = ();
    #[inline(always)]
    unsafe fn run<S: F32s>(self) {
        activation::<S>(self.act, self.x)
    }
}

/// `o = g·f'(x)`, equal lengths.
struct ActivationGrad<'a> {
    act: FusedActivation,
    x: &'a [f32],
    g: &'a [f32],
    o: &'a mut [f32],
}

impl Kernel for ActivationGrad<'_> {
    type Output = ();
    #[inline(always)]
    unsafe fn run<S: F32s>(self) {
        activation_grad::<S>(self.act, self.x, self.g, self.o)
    }
}

/// The gradients of `silu(g)·u`, equal lengths.
struct SiluMulGrad<'a> {
    g: &'a [f32],
    u: &'a [f32],
    d: &'a [f32],
    dg: &'a mut [f32],
    du: &'a mut [f32],
}

impl Kernel for SiluMulGrad<'_> {
    type Output = ();
    #[inline(always)]
    unsafe fn run<S: F32s>(self) {
        silu_mul_grad::<S>(self.g, self.u, self.d, self.dg, self.du)
    }
}

/// `e^x` to about 1 ulp over the f32 range: `x = n·ln2 + r` with `|r| <= ln2/2`, a degree-7
/// Taylor polynomial for `e^r` (truncation below 2^-27 relative), scaled by `2^n`. Below -104 the
/// result is 0, as `expf`'s is.
#[inline(always)]
pub(crate) unsafe fn exp<S: F32s>(x: S::V) -> S::V {
    let x = S::max(S::min(x, S::splat(88.722_83)), S::splat(-104.0));
    let n = S::round(S::mul(x, S::splat(std::f32::consts::LOG2_E)));
    let r = S::fnmadd(n, S::splat(0.693_145_75), x);
    let r = S::fnmadd(n, S::splat(1.428_606_8e-6), r);
    let mut p = S::splat(1.0 / 5040.0);
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = S::fmadd(p, r, S::splat(c));
    }
    S::scale_pow2(p, n)
}

/// `σ(z) = 1/(1 + e^-z)`.
#[inline(always)]
unsafe fn sigmoid<S: F32s>(z: S::V) -> S::V {
    let e = exp::<S>(S::sub(S::zero(), z));
    S::div(S::splat(1.0), S::add(S::splat(1.0), e))
}

/// `x·σ(z)`.
#[inline(always)]
unsafe fn times_sigmoid<S: F32s>(x: S::V, z: S::V) -> S::V {
    let e = exp::<S>(S::sub(S::zero(), z));
    S::div(x, S::add(S::splat(1.0), e))
}

/// The activation of one vector.
#[inline(always)]
pub(crate) unsafe fn one<S: F32s>(act: FusedActivation, x: S::V) -> S::V {
    match act {
        FusedActivation::Silu => times_sigmoid::<S>(x, x),
        FusedActivation::GeluTanh => {
            // 2·√(2/π)·(x + 0.044715·x³)
            let x3 = S::mul(S::mul(x, x), x);
            let inner = S::fmadd(S::splat(0.044715), x3, x);
            let z = S::mul(S::splat(2.0 * 0.797_884_6), inner);
            times_sigmoid::<S>(x, z)
        }
    }
}

/// `f'(x)`: SiLU `σ(x)·(1 + x·(1 - σ(x)))`; tanh-GELU `x·σ(z)` with `z = c·(x + a·x³)`:
/// `σ(z) + x·σ(z)·(1 - σ(z))·c·(1 + 3a·x²)`.
#[inline(always)]
unsafe fn derivative<S: F32s>(act: FusedActivation, x: S::V) -> S::V {
    let one_ = S::splat(1.0);
    match act {
        FusedActivation::Silu => {
            let s = sigmoid::<S>(x);
            let t = S::fmadd(x, S::sub(one_, s), one_);
            S::mul(s, t)
        }
        FusedActivation::GeluTanh => {
            let (a, c) = (0.044715f32, 2.0 * 0.797_884_6f32);
            let x2 = S::mul(x, x);
            let inner = S::fmadd(S::splat(a), S::mul(x2, x), x);
            let s = sigmoid::<S>(S::mul(S::splat(c), inner));
            let dz = S::mul(S::splat(c), S::fmadd(S::splat(3.0 * a), x2, one_));
            let xs1s = S::mul(S::mul(x, s), S::sub(one_, s));
            S::fmadd(xs1s, dz, s)
        }
    }
}

/// The activation in place.
#[inline(always)]
pub(crate) unsafe fn activation<S: F32s>(act: FusedActivation, x: &mut [f32]) {
    let (n, p) = (x.len(), x.as_mut_ptr());
    let mut i = 0;
    while i + S::LANES <= n {
        S::store(p.add(i), one::<S>(act, S::load(p.add(i))));
        i += S::LANES;
    }
    if i < n {
        let l = n - i;
        S::store_n(p.add(i), one::<S>(act, S::load_n(p.add(i), l)), l);
    }
}

/// `dx = dy·f'(x)` over equal-length slices.
#[inline(always)]
pub(crate) unsafe fn activation_grad<S: F32s>(
    act: FusedActivation,
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    let n = dx.len();
    let (xp, gp, op) = (x.as_ptr(), dy.as_ptr(), dx.as_mut_ptr());
    let mut i = 0;
    while i < n {
        let l = (n - i).min(S::LANES);
        let (xv, gv) = if l == S::LANES {
            (S::load(xp.add(i)), S::load(gp.add(i)))
        } else {
            (S::load_n(xp.add(i), l), S::load_n(gp.add(i), l))
        };
        let r = S::mul(gv, derivative::<S>(act, xv));
        if l == S::LANES {
            S::store(op.add(i), r)
        } else {
            S::store_n(op.add(i), r, l)
        }
        i += S::LANES;
    }
}

/// The gradients of `silu(g)·u`: `du = dy·silu(g)`, `dg = dy·u·silu'(g)`.
#[inline(always)]
pub(crate) unsafe fn silu_mul_grad<S: F32s>(
    g: &[f32],
    u: &[f32],
    dy: &[f32],
    dg: &mut [f32],
    du: &mut [f32],
) {
    let n = dg.len();
    let (gp, up, yp) = (g.as_ptr(), u.as_ptr(), dy.as_ptr());
    let (dgp, dup) = (dg.as_mut_ptr(), du.as_mut_ptr());
    let mut i = 0;
    while i < n {
        let l = (n - i).min(S::LANES);
        let (gv, uv, dv) = if l == S::LANES {
            (S::load(gp.add(i)), S::load(up.add(i)), S::load(yp.add(i)))
        } else {
            (
                S::load_n(gp.add(i), l),
                S::load_n(up.add(i), l),
                S::load_n(yp.add(i), l),
            )
        };
        let d_up = S::mul(dv, one::<S>(FusedActivation::Silu, gv));
        let d_gate = S::mul(S::mul(dv, uv), derivative::<S>(FusedActivation::Silu, gv));
        if l == S::LANES {
            S::store(dup.add(i), d_up);
            S::store(dgp.add(i), d_gate);
        } else {
            S::store_n(dup.add(i), d_up, l);
            S::store_n(dgp.add(i), d_gate, l);
        }
        i += S::LANES;
    }
}

/// `dx = dy·f'(x)` at the current level (AVX2 or above: the caller checked [`vectorized`]).
pub(crate) fn activation_grad_in(act: FusedActivation, x: &[f32], g: &[f32], o: &mut [f32]) {
    assert!(x.len() == o.len() && g.len() == o.len());
    // SAFETY: equal lengths, asserted.
    unsafe { vector::run(cpu::level(), ActivationGrad { act, x, g, o }) }
        .expect("activation backward at a vector level");
}

/// The gradients of `silu(g)·u` at the current level (as [`activation_grad_in`]).
pub(crate) fn silu_mul_grad_in(g: &[f32], u: &[f32], d: &[f32], dg: &mut [f32], du: &mut [f32]) {
    let n = dg.len();
    assert!(g.len() == n && u.len() == n && d.len() == n && du.len() == n);
    // SAFETY: equal lengths, asserted.
    unsafe { vector::run(cpu::level(), SiluMulGrad { g, u, d, dg, du }) }
        .expect("silu-mul backward at a vector level");
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    struct ExpOf<'a>(&'a [f32]);
    impl Kernel for ExpOf<'_> {
        type Output = Vec<f32>;
        #[inline(always)]
        unsafe fn run<S: F32s>(self) -> Vec<f32> {
            let mut out = vec![0f32; self.0.len()];
            for (o, x) in out.chunks_mut(S::LANES).zip(self.0.chunks(S::LANES)) {
                let v = exp::<S>(S::load_n(x.as_ptr(), x.len().min(S::LANES - 1)));
                let mut b = [0f32; crate::vector::MAX_LANES];
                S::store(b.as_mut_ptr(), v);
                o.copy_from_slice(&b[..o.len()]);
            }
            out
        }
    }

    /// At every vector level (a full vector read as `LANES - 1` lanes and a zero, so the tail
    /// path is taken too).
    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        let xs: Vec<f32> = (0..20000).map(|i| -103.0 + i as f32 * 0.0095).collect();
        for level in cpu::available() {
            // SAFETY: an available level.
            let Some(got) = (unsafe { vector::run(level, ExpOf(&xs)) }) else {
                continue;
            };
            let lanes = if level == KernelLevel::Avx512 { 16 } else { 8 };
            for (i, (x, g)) in xs.iter().zip(got).enumerate() {
                let want = if i % lanes == lanes - 1 { 1.0 } else { x.exp() };
                let ulp = (want.to_bits() as i64 - g.to_bits() as i64).abs();
                assert!(
                    ulp <= 2 || want < f32::MIN_POSITIVE,
                    "{level}: exp({x}) = {g}, libm {want}"
                );
            }
        }
    }

    /// Under a gradient: the values and input gradients of candle's ops (and of SiLU times a
    /// second input).
    #[test]
    fn train_activations_match_candle() {
        cpu::for_each_level(train_activations_match_candle_at);
    }

    fn train_activations_match_candle_at(level: KernelLevel) {
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
            let Some(got) = activation_train(xt, act).unwrap() else {
                assert_eq!(level, KernelLevel::Reference);
                return;
            };
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
        cpu::for_each_level(activations_match_candle_at);
    }

    fn activations_match_candle_at(level: KernelLevel) {
        let x = (Tensor::randn(0f32, 3.0, (7, 37), &Device::Cpu).unwrap() - 1.0).unwrap();
        for (act, reference) in [
            (FusedActivation::GeluTanh, x.gelu().unwrap()),
            (FusedActivation::Silu, x.silu().unwrap()),
        ] {
            let Some(got) = activation_fused(&x, act).unwrap() else {
                assert_eq!(level, KernelLevel::Reference);
                return;
            };
            let d = (&got - &reference)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d <= 2e-6, "{level} {act:?} f32: {d}");
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
            assert!(d <= 1.0 / 256.0, "{level} {act:?} bf16: relative {d}");
        }
    }
}
