//! The differentiable fast path of [`crate::attention::attention`] (training, f32 on the CPU):
//! the forward is [`crate::attention_fused`]'s kernel, which also records each query row's
//! log-sum-exp, and the backward recomputes the probabilities block by block from it
//! (FlashAttention's backward), so no score matrix is ever kept.
//!
//! The reference path keeps about six `h × t × s` f32 matrices per layer in the graph (scores,
//! scaled, masked, shifted, exponentiated, normalized): 1.2 GiB per SigLIP layer for two tiles,
//! 0.8 GiB per Qwen2 layer at 1.5k tokens. Here a layer keeps its output and `b·h·t` floats.
//!
//! Backward, per query head and block of `QB` query rows `i`, against the keys they see:
//! `P = exp(scale·q·kᵀ - lse)`, `dV += Pᵀ·dO`, `dP = dO·vᵀ`, `dS = scale·P∘(dP - D)` with
//! `D_i = Σ dO_i∘O_i`, `dQ = dS·k`, `dK += dSᵀ·q`; a query head's `dK`, `dV` are summed over
//! the `h / kvh` heads of its group at the end. The products are candle's gemm.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::attention::Mask;
use crate::attention_fused::{run_views, Dims, View, MIN_QUERIES};
use crate::cpu;
use crate::gemm_nt::{self, SendPtr};
use crate::simd::exp;
use crate::vector::{self, F32s, Kernel};

/// Query rows per block of the backward.
const QB: usize = 128;

/// The attention as one differentiable op, or `None` where this path does not apply (not f32
/// on a CPU with AVX-512, or too few queries).
///
/// # Shapes
/// `q`: (b, h, t, d); `k`, `v`: (b, kvh, s, d), any strides with `d` contiguous -> (b, h, t, d)
/// (a transposed view of a contiguous (b, t, h, d) tensor)
pub fn attention_train(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Mask,
) -> candle_core::Result<Option<Tensor>> {
    let (_, h, t, _) = q.dims4()?;
    let (_, kvh, _, _) = k.dims4()?;
    let applies = q.device().is_cpu()
        && [q, k, v].iter().all(|x| x.dtype() == DType::F32)
        && gemm_nt::has_f32()
        && t >= MIN_QUERIES
        && kvh > 0
        && h % kvh == 0;
    if !applies {
        return Ok(None);
    }
    let op = AttentionTrain {
        scale,
        mask,
        lse: Mutex::new(Vec::new()),
    };
    Ok(Some(q.apply_op3(k, v, op)?.transpose(1, 2)?))
}

/// The op: (q, k, v) -> the output laid out (b, t, h, d); keeps the log-sum-exp of the forward.
struct AttentionTrain {
    scale: f64,
    mask: Mask,
    /// (b, h, t) log-sum-exp of each query row's scaled scores, written by the forward.
    lse: Mutex<Vec<f32>>,
}

fn dims_of(q: &Layout, k: &Layout) -> candle_core::Result<Dims> {
    let (b, h, t, d) = q.shape().dims4()?;
    let (b2, kvh, s, d2) = k.shape().dims4()?;
    if b != b2 || d != d2 || kvh == 0 || h % kvh != 0 {
        candle_core::bail!(
            "attention-train: q {:?} and k {:?} do not fit",
            q.shape(),
            k.shape()
        );
    }
    Ok(Dims { b, h, kvh, t, s, d })
}

impl CustomOp3 for AttentionTrain {
    fn name(&self) -> &'static str {
        "attention-train"
    }

    fn cpu_fwd(
        &self,
        sq: &CpuStorage,
        lq: &Layout,
        sk: &CpuStorage,
        lk: &Layout,
        sv: &CpuStorage,
        lv: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = dims_of(lq, lk)?;
        if lv.shape() != lk.shape() {
            candle_core::bail!("attention-train: v {:?} is not k's shape", lv.shape());
        }
        let (qv, kv, vv) = (
            View::<f32>::from_parts(sq, lq)?,
            View::<f32>::from_parts(sk, lk)?,
            View::<f32>::from_parts(sv, lv)?,
        );
        let mut lse = vec![0f32; dims.b * dims.h * dims.t];
        let out = run_views(&qv, &kv, &vv, dims, self.scale, self.mask, Some(&mut lse));
        *self
            .lse
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned".into()))? = lse;
        let Dims { b, h, t, d, .. } = dims;
        Ok((CpuStorage::F32(out), Shape::from((b, t, h, d))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        dout: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let lse = self
            .lse
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned".into()))?;
        let (dq, dk, dv) = backward(q, k, v, out, dout, &lse, self.scale, self.mask)?;
        Ok((
            q.track_op().then_some(dq),
            k.track_op().then_some(dk),
            v.track_op().then_some(dv),
        ))
    }
}

/// Reads a CPU f32 tensor's storage as a view (4-d, last axis contiguous).
fn with_f32<R>(
    x: &Tensor,
    f: impl FnOnce(View<'_, f32>) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let (storage, layout) = x.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(cpu) => f(View::from_parts(cpu, layout)?),
        _ => candle_core::bail!("attention-train: not a CPU tensor"),
    }
}

/// `dst (m, n) (+)= lhs (m, k) · rhs (k, n)`, each operand as a pointer and (row, column)
/// strides; single-threaded (the caller runs one task per head).
///
/// # Safety
/// Every addressed element lies inside its allocation; `dst` is not aliased.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_f32(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const f32,
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: *const f32,
    (rhs_rs, rhs_cs): (usize, usize),
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs,
        lhs_cs as isize,
        lhs_rs as isize,
        rhs,
        rhs_cs as isize,
        rhs_rs as isize,
        1f32,
        1f32,
        false,
        false,
        false,
        gemm::Parallelism::None,
    )
}

/// The gradients of q, k and v (see the module header).
///
/// # Shapes
/// `q`: (b, h, t, d), `k`, `v`: (b, kvh, s, d), `out`, `dout`: (b, t, h, d), `lse`: b·h·t ->
/// `dq` (b, h, t, d), `dk`, `dv` (b, kvh, s, d)
#[allow(clippy::too_many_arguments)]
fn backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    out: &Tensor,
    dout: &Tensor,
    lse: &[f32],
    scale: f64,
    mask: Mask,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let (b, h, t, d) = q.dims4()?;
    let (_, kvh, s, _) = k.dims4()?;
    let rep = h / kvh;
    if lse.len() != b * h * t {
        candle_core::bail!("attention-train: backward without its forward's log-sum-exp");
    }
    let (out, dout) = (out.contiguous()?, dout.contiguous()?);
    let (o, dov) = (out.flatten_all()?.to_vec1::<f32>()?, dout.flatten_all()?);
    let dov = dov.to_vec1::<f32>()?;
    let scale = scale as f32;
    let visible = |pos: usize| mask.visible_keys(pos, s);
    // Per query head: its dq rows (written into (b, t, h, d) in place) and its own dk, dv.
    let mut dq = vec![0f32; b * t * h * d];
    let mut dk_part = vec![0f32; b * h * s * d];
    let mut dv_part = vec![0f32; b * h * s * d];
    let dqp = SendPtr(dq.as_mut_ptr());
    with_f32(q, |qv| {
        with_f32(k, |kv| {
            with_f32(v, |vv| {
                dk_part
                    .par_chunks_mut(s * d)
                    .zip(dv_part.par_chunks_mut(s * d))
                    .enumerate()
                    .for_each(|(bh, (dk, dv))| {
                        let (bi, hq) = (bh / h, bh % h);
                        let g = hq / rep;
                        let (qs, ks, vs) = (qv.stride[2], kv.stride[2], vv.stride[2]);
                        let qp = qv.data[qv.row(bi, hq, 0)..].as_ptr();
                        let kp = kv.data[kv.row(bi, g, 0)..].as_ptr();
                        let vp = vv.data[vv.row(bi, g, 0)..].as_ptr();
                        let row = |i: usize| ((bi * t + i) * h + hq) * d; // in (b, t, h, d)
                        let ors = h * d;
                        // D_i = Σ dO_i·O_i
                        let dsum: Vec<f32> = (0..t)
                            .map(|i| {
                                let at = row(i);
                                o[at..at + d]
                                    .iter()
                                    .zip(&dov[at..at + d])
                                    .map(|(a, b)| a * b)
                                    .sum()
                            })
                            .collect();
                        let lse = &lse[bh * t..(bh + 1) * t];
                        let mut p = Vec::new();
                        let mut dp = Vec::new();
                        for q0 in (0..t).step_by(QB) {
                            let qb = QB.min(t - q0);
                            let sv = visible(q0 + qb - 1);
                            p.clear();
                            p.resize(qb * sv, 0f32);
                            dp.clear();
                            dp.resize(qb * sv, 0f32);
                            // SAFETY: q rows q0..q0+qb and key rows 0..sv lie in their views
                            // (`visible` <= s); the buffers are qb × sv.
                            unsafe {
                                let qb_p = qp.add(q0 * qs);
                                let do_p = dov.as_ptr().add(row(q0));
                                // S = q·kᵀ, then P = exp(scale·S - lse), 0 past each row's keys.
                                gemm_f32(
                                    (qb, sv, d),
                                    p.as_mut_ptr(),
                                    sv,
                                    false,
                                    qb_p,
                                    (qs, 1),
                                    kp,
                                    (1, ks),
                                );
                                for i in 0..qb {
                                    let vis = visible(q0 + i);
                                    let r = &mut p[i * sv..(i + 1) * sv];
                                    exp_scaled_shifted(&mut r[..vis], scale, lse[q0 + i]);
                                    r[vis..].fill(0.0);
                                }
                                // dV += Pᵀ·dO
                                gemm_f32(
                                    (sv, d, qb),
                                    dv.as_mut_ptr(),
                                    d,
                                    true,
                                    p.as_ptr(),
                                    (1, sv),
                                    do_p,
                                    (ors, 1),
                                );
                                // dP = dO·vᵀ
                                gemm_f32(
                                    (qb, sv, d),
                                    dp.as_mut_ptr(),
                                    sv,
                                    false,
                                    do_p,
                                    (ors, 1),
                                    vp,
                                    (1, vs),
                                );
                                // dS = scale·P∘(dP - D), into dp
                                for i in 0..qb {
                                    let di = dsum[q0 + i];
                                    let (pr, dr) =
                                        (&p[i * sv..(i + 1) * sv], &mut dp[i * sv..(i + 1) * sv]);
                                    for (x, &pv) in dr.iter_mut().zip(pr) {
                                        *x = scale * (pv * (*x - di));
                                    }
                                }
                                // dQ = dS·k, straight into this head's rows of dq
                                gemm_f32(
                                    (qb, d, sv),
                                    dqp.get().add(row(q0)),
                                    ors,
                                    false,
                                    dp.as_ptr(),
                                    (sv, 1),
                                    kp,
                                    (ks, 1),
                                );
                                // dK += dSᵀ·q
                                gemm_f32(
                                    (sv, d, qb),
                                    dk.as_mut_ptr(),
                                    d,
                                    true,
                                    dp.as_ptr(),
                                    (1, sv),
                                    qb_p,
                                    (qs, 1),
                                );
                            }
                        }
                    });
                Ok(())
            })
        })
    })?;
    // Each key/value head's gradient: the sum over its query heads.
    let group = |part: &[f32]| -> Vec<f32> {
        let mut acc = vec![0f32; b * kvh * s * d];
        acc.par_chunks_mut(s * d).enumerate().for_each(|(bg, dst)| {
            let (bi, g) = (bg / kvh, bg % kvh);
            for r in 0..rep {
                let src = &part[(bi * h + g * rep + r) * s * d..][..s * d];
                dst.iter_mut().zip(src).for_each(|(a, x)| *a += x);
            }
        });
        acc
    };
    let dev = q.device();
    let dq = Tensor::from_vec(dq, (b, t, h, d), dev)?.transpose(1, 2)?;
    let dk = Tensor::from_vec(group(&dk_part), (b, kvh, s, d), dev)?;
    let dv = Tensor::from_vec(group(&dv_part), (b, kvh, s, d), dev)?;
    Ok((dq, dk, dv))
}

/// `x = exp(scale·x - shift)` over a row.
fn exp_scaled_shifted(x: &mut [f32], scale: f32, shift: f32) {
    // SAFETY: no requirement beyond the level's.
    if unsafe { vector::run(cpu::level(), ExpScaledShifted { x, scale, shift }) }.is_none() {
        x.iter_mut().for_each(|v| *v = (*v * scale - shift).exp());
    }
}

struct ExpScaledShifted<'a> {
    x: &'a mut [f32],
    scale: f32,
    shift: f32,
}

impl Kernel for ExpScaledShifted<'_> {
    type Output = ();
    #[inline(always)]
    unsafe fn run<S: F32s>(self) {
        let (n, l) = (self.x.len(), S::LANES);
        let p = self.x.as_mut_ptr();
        let (sc, sh) = (S::splat(self.scale), S::splat(self.shift));
        let mut i = 0;
        while i + l <= n {
            let v = S::sub(S::mul(S::load(p.add(i)), sc), sh);
            S::store(p.add(i), exp::<S>(v));
            i += l;
        }
        if i < n {
            let v = S::sub(S::mul(S::load_n(p.add(i), n - i), sc), sh);
            S::store_n(p.add(i), exp::<S>(v), n - i);
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;
    use crate::attention::attention_reference;
    use crate::test_util::{max_abs, max_abs_diff};

    /// Forward and the gradients of q, k and v equal the reference path's: causal and full
    /// masks, GQA groups, query counts that leave partial blocks (of the forward and of the
    /// backward), queries as a transposed view.
    #[test]
    fn gradients_match_reference() {
        cpu::for_each_level(|level| {
            if level > cpu::KernelLevel::Reference {
                gradients_match_reference_at(level);
            }
        });
    }

    fn gradients_match_reference_at(level: cpu::KernelLevel) {
        let dev = Device::Cpu;
        for (t, causal, h, kvh) in [(70, true, 6, 2), (53, false, 4, 4), (300, true, 4, 1)] {
            let (b, d) = (2, 40);
            let qbuf = Var::randn(0f32, 1.0, (b, t, h, d), &dev).unwrap();
            let k = Var::randn(0f32, 1.0, (b, kvh, t, d), &dev).unwrap();
            let v = Var::randn(0f32, 1.0, (b, kvh, t, d), &dev).unwrap();
            let q = qbuf.as_tensor().transpose(1, 2).unwrap();
            let mask = if causal {
                Mask::Causal { offset: 0 }
            } else {
                Mask::None
            };
            let got = attention_train(&q, k.as_tensor(), v.as_tensor(), 0.3, mask)
                .unwrap()
                .expect("applies");
            let want = attention_reference(&q, k.as_tensor(), v.as_tensor(), 0.3, mask).unwrap();
            let f = max_abs_diff(&got, &want);
            assert!(f <= 1e-5, "{level} t {t}: forward differs by {f}");
            let mix = Tensor::randn(0f32, 1.0, (b, h, t, d), &dev).unwrap();
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
            for (name, var) in [("q", &qbuf), ("k", &k), ("v", &v)] {
                let (a, e) = (g1.get(var).unwrap(), g2.get(var).unwrap());
                let diff = max_abs_diff(a, e);
                let scale = max_abs(e);
                assert!(
                    diff <= 1e-5 * scale,
                    "{level} t {t} causal {causal}: d{name} differs by {diff} (scale {scale})"
                );
                println!("t {t} causal {causal}: d{name} max diff {diff:e} of {scale}");
            }
        }
    }
}
