//! The differentiable fast path of [`crate::Linear`] (training, f32 on the CPU): `x·wᵀ + b` as
//! one graph node, and the same product with the elementwise function before it fused in
//! (`act(a)·wᵀ + b`, `(silu(g)·u)·wᵀ`), whose input is recomputed in the backward instead of
//! kept.
//!
//! The product is candle's matmul call (the same gemm, strides and threads) and the bias is
//! added in a second pass, so the values are those of `broadcast_matmul` + `broadcast_add`.
//! candle's graph for that keeps four nodes (broadcast, transpose, product, sum) and its
//! `Matmul` backward computes both operands' gradients, a frozen weight's included (and keeps
//! it in the gradient store). Here the backward computes `dx = dy·w` only when `x` takes part in
//! a gradient, `dw = dyᵀ·x` only when `w` does, `db` only when `b` does.
//!
//! The fused forms keep the MLP's widest tensor out of the graph: SigLIP's `gelu(fc1(x))`
//! (4304 floats per token and layer) and Qwen2's `silu(gate)·up` (4864): 0.7 GiB each for a
//! 1.5k-token step. Their values are bit-identical to the activation op followed by the product.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::simd::{self, vectorized, FusedActivation};

/// Whether [`linear_train`] takes a tracked product: f32 on the CPU, any number of rows.
pub(crate) fn train_applies(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> bool {
    x.device().is_cpu()
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && b.is_none_or(|b| b.dtype() == DType::F32)
}

/// `x·wᵀ + b` as one differentiable op (see the module header).
///
/// # Shapes
/// `x`: (..., k), `w`: (n, k), `b`: n -> (..., n)
pub fn linear_train(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let dims = x.dims();
    let (k, n) = (dims[dims.len() - 1], w.dim(0)?);
    let x2 = x.reshape(((), k))?; // (m, k)
    let w = w.contiguous()?;
    let y = match b {
        Some(b) => x2.apply_op3(&w, &b.contiguous()?, LinearTrain)?,
        None => x2.apply_op2(&w, LinearTrain)?,
    };
    with_last(y, dims, n)
}

/// The elementwise function in front of a fused product.
#[derive(Debug, Clone, Copy)]
enum Pre {
    /// `act(a)`
    Act(FusedActivation),
    /// `silu(g)·u`
    SiluMul,
}

/// `act(a)·wᵀ + b` as one differentiable op, `act(a)` recomputed in the backward; `None` where
/// it does not apply (not f32, or the reference kernel level).
///
/// # Shapes
/// `a`: (..., k), `w`: (n, k), `b`: n -> (..., n)
pub fn act_linear_train(
    act: FusedActivation,
    a: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
) -> candle_core::Result<Option<Tensor>> {
    if !(vectorized() && train_applies(a, w, b)) {
        return Ok(None);
    }
    let dims = a.dims();
    let (k, n) = (dims[dims.len() - 1], w.dim(0)?);
    let a2 = a.reshape(((), k))?.contiguous()?;
    let op = PreLinearTrain(Pre::Act(act));
    let w = w.contiguous()?;
    let y = match b {
        Some(b) => a2.apply_op3(&w, &b.contiguous()?, op)?,
        None => a2.apply_op2(&w, op)?,
    };
    with_last(y, dims, n).map(Some)
}

/// `(silu(g)·u)·wᵀ` as one differentiable op, `silu(g)·u` recomputed in the backward; `None`
/// where it does not apply.
///
/// # Shapes
/// `g`, `u`: (..., k), `w`: (n, k) -> (..., n)
pub fn silu_mul_linear_train(
    g: &Tensor,
    u: &Tensor,
    w: &Tensor,
) -> candle_core::Result<Option<Tensor>> {
    if !(vectorized() && train_applies(g, w, None) && u.dtype() == DType::F32)
        || g.shape() != u.shape()
    {
        return Ok(None);
    }
    let dims = g.dims();
    let (k, n) = (dims[dims.len() - 1], w.dim(0)?);
    let g2 = g.reshape(((), k))?.contiguous()?;
    let u2 = u.reshape(((), k))?.contiguous()?;
    let y = g2.apply_op3(&u2, &w.contiguous()?, PreLinearTrain(Pre::SiluMul))?;
    with_last(y, dims, n).map(Some)
}

/// `y` (m, n) reshaped to `dims` with the last axis `n`.
fn with_last(y: Tensor, dims: &[usize], n: usize) -> candle_core::Result<Tensor> {
    let mut out = dims.to_vec();
    *out.last_mut().expect("the input has a last axis") = n;
    y.reshape(out)
}

/// A (rows, cols) f32 operand in a CPU storage: its elements from the layout's offset, and its
/// row stride (the column stride must be 1).
fn rows_of<'a>(
    s: &'a CpuStorage,
    l: &Layout,
) -> candle_core::Result<(&'a [f32], usize, usize, usize)> {
    let (m, k) = l.shape().dims2()?;
    let st = l.stride();
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("linear-train: f32 only");
    };
    if st[1] != 1 && k > 1 {
        candle_core::bail!(
            "linear-train: operand {:?} (strides {st:?}) is not row-major",
            l.shape()
        );
    }
    let data = &v[l.start_offset()..];
    if m > 0 && data.len() < (m - 1) * st[0] + k {
        candle_core::bail!("linear-train: operand storage too small");
    }
    Ok((data, m, k, st[0]))
}

/// `y (m, n) = x (m, k)·wᵀ + b`: candle's gemm call for `x.matmul(&w.t())`, then the bias.
fn product(
    x: (&[f32], usize, usize, usize),
    w: (&CpuStorage, &Layout),
    b: Option<(&CpuStorage, &Layout)>,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (xd, m, k, x_rs) = x;
    let (wd, n, k2, w_rs) = rows_of(w.0, w.1)?;
    if k != k2 || (w_rs != k && n > 1) {
        candle_core::bail!(
            "linear-train: operands (m {m}, k {k}) and {:?} are not (m, k), (n, k) row-major",
            w.1.shape()
        );
    }
    let mut y = vec![0f32; m * n];
    let threads = candle_core::utils::get_num_threads();
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: sizes and strides checked by `rows_of` and above; `y` is (m, n) row-major.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            y.as_mut_ptr(),
            1,
            n as isize,
            false,
            xd.as_ptr(),
            1,
            x_rs as isize,
            wd.as_ptr(),
            k as isize,
            1,
            0f32,
            1f32,
            false,
            false,
            false,
            par,
        )
    };
    if let Some((bs, bl)) = b {
        let CpuStorage::F32(bd) = bs else {
            candle_core::bail!("linear-train: f32 only");
        };
        if bl.shape().dims() != [n] || !bl.is_contiguous() {
            candle_core::bail!("linear-train: bias {:?} is not ({n})", bl.shape());
        }
        let bd = &bd[bl.start_offset()..bl.start_offset() + n];
        y.par_chunks_mut(n * 64).for_each(|rows| {
            for row in rows.chunks_mut(n) {
                row.iter_mut().zip(bd).for_each(|(v, b)| *v += b);
            }
        });
    }
    Ok((CpuStorage::F32(y), Shape::from((m, n))))
}

/// `dx = dy·w`, `dw = dyᵀ·x`, each only when asked for.
fn product_grads(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    want_dx: bool,
    want_dw: bool,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
    let dx = if want_dx {
        Some(dy.matmul(&w.detach())?)
    } else {
        None
    };
    let dw = if want_dw {
        Some(dy.t()?.matmul(&x.detach())?)
    } else {
        None
    };
    Ok((dx, dw))
}

fn bias_grad(b: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
    if b.track_op() {
        Ok(Some(dy.sum(0)?))
    } else {
        Ok(None)
    }
}

/// The op behind [`linear_train`]: (m, k) x (n, k) [+ n] -> (m, n).
struct LinearTrain;

impl CustomOp2 for LinearTrain {
    fn name(&self) -> &'static str {
        "linear-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        product(rows_of(s1, l1)?, (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        product_grads(x, w, dy, x.track_op(), w.track_op())
    }
}

impl CustomOp3 for LinearTrain {
    fn name(&self) -> &'static str {
        "linear-train"
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
        product(rows_of(s1, l1)?, (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = product_grads(x, w, dy, x.track_op(), w.track_op())?;
        Ok((dx, dw, bias_grad(b, dy)?))
    }
}

/// Elements per parallel task of the elementwise passes.
const CHUNK: usize = 1 << 14;

/// The op behind [`act_linear_train`] (a, w [, b]) and [`silu_mul_linear_train`] (g, u, w).
struct PreLinearTrain(Pre);

impl PreLinearTrain {
    /// `act(a)` or `silu(g)·u`, contiguous (the inputs are).
    fn input(&self, a: &[f32], u: Option<&[f32]>) -> Vec<f32> {
        let mut h = a.to_vec();
        let act = match self.0 {
            Pre::Act(act) => act,
            Pre::SiluMul => FusedActivation::Silu,
        };
        h.par_chunks_mut(CHUNK).enumerate().for_each(|(i, c)| {
            // The constructors checked the level.
            simd::apply_in_place(act, c);
            if let Some(u) = u {
                c.iter_mut().zip(&u[i * CHUNK..]).for_each(|(v, b)| *v *= b);
            }
        });
        h
    }

    fn contiguous<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
        match (s, l.contiguous_offsets()) {
            (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
            _ => candle_core::bail!("pre-linear-train: inputs must be contiguous f32"),
        }
    }

    fn forward(
        &self,
        a: (&CpuStorage, &Layout),
        u: Option<(&CpuStorage, &Layout)>,
        w: (&CpuStorage, &Layout),
        b: Option<(&CpuStorage, &Layout)>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, k) = a.1.shape().dims2()?;
        let ad = Self::contiguous(a.0, a.1)?;
        let ud = match u {
            Some((s, l)) => {
                if l.shape() != a.1.shape() {
                    candle_core::bail!("pre-linear-train: gate and up differ in shape");
                }
                Some(Self::contiguous(s, l)?)
            }
            None => None,
        };
        let h = self.input(ad, ud);
        product((&h, m, k, k), w, b)
    }

    /// The gradients of the inputs of the elementwise function from `dh`, each when asked for.
    fn backward(
        &self,
        a: &Tensor,
        u: Option<&Tensor>,
        w: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let want_a = a.track_op();
        let want_u = u.is_some_and(|u| u.track_op());
        let av = a.flatten_all()?.to_vec1::<f32>()?;
        let uv = match u {
            Some(u) => Some(u.flatten_all()?.to_vec1::<f32>()?),
            None => None,
        };
        let h = Tensor::from_vec(self.input(&av, uv.as_deref()), a.shape(), a.device())?;
        let (dh, dw) = product_grads(&h, w, dy, want_a || want_u, w.track_op())?;
        drop(h);
        let Some(dh) = dh else {
            return Ok((None, None, dw));
        };
        let dh = dh.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let mut da = vec![0f32; av.len()];
        let mut du = vec![0f32; if uv.is_some() { av.len() } else { 0 }];
        let act = self.0;
        match (&uv, act) {
            (Some(uv), _) => da
                .par_chunks_mut(CHUNK)
                .zip(du.par_chunks_mut(CHUNK))
                .enumerate()
                .for_each(|(i, (dg, du))| {
                    let (lo, hi) = (i * CHUNK, i * CHUNK + dg.len());
                    simd::silu_mul_grad_in(&av[lo..hi], &uv[lo..hi], &dh[lo..hi], dg, du);
                }),
            (None, Pre::Act(f)) => da.par_chunks_mut(CHUNK).enumerate().for_each(|(i, o)| {
                let (lo, hi) = (i * CHUNK, i * CHUNK + o.len());
                simd::activation_grad_in(f, &av[lo..hi], &dh[lo..hi], o);
            }),
            (None, Pre::SiluMul) => candle_core::bail!("pre-linear-train: silu·u without u"),
        }
        let dev = a.device();
        let da = want_a
            .then(|| Tensor::from_vec(da, a.shape(), dev))
            .transpose()?;
        let du = match u {
            Some(u) if want_u => Some(Tensor::from_vec(du, u.shape(), dev)?),
            _ => None,
        };
        Ok((da, du, dw))
    }
}

impl CustomOp2 for PreLinearTrain {
    fn name(&self) -> &'static str {
        "pre-linear-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.forward((s1, l1), None, (s2, l2), None)
    }

    fn bwd(
        &self,
        a: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (da, _, dw) = self.backward(a, None, w, dy)?;
        Ok((da, dw))
    }
}

impl CustomOp3 for PreLinearTrain {
    fn name(&self) -> &'static str {
        "pre-linear-train"
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
        match self.0 {
            // (g, u, w)
            Pre::SiluMul => self.forward((s1, l1), Some((s2, l2)), (s3, l3), None),
            // (a, w, b)
            Pre::Act(_) => self.forward((s1, l1), None, (s2, l2), Some((s3, l3))),
        }
    }

    fn bwd(
        &self,
        t1: &Tensor,
        t2: &Tensor,
        t3: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        match self.0 {
            Pre::SiluMul => self.backward(t1, Some(t2), t3, dy),
            Pre::Act(_) => {
                let (da, _, dw) = self.backward(t1, None, t2, dy)?;
                Ok((da, dw, bias_grad(t3, dy)?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;
    use crate::test_util::{max_abs, max_abs_diff};

    /// The training op equals `broadcast_matmul` + `broadcast_add` (forward and every
    /// gradient), with and without a bias, and leaves a frozen weight without a gradient.
    #[test]
    fn train_op_matches_reference() {
        let dev = Device::Cpu;
        let x = Var::randn(0f32, 1.0, (2, 37, 40), &dev).unwrap();
        let w = Var::randn(0f32, 1.0, (33, 40), &dev).unwrap();
        let b = Var::randn(0f32, 1.0, 33, &dev).unwrap();
        let (xt, wt, bt) = (x.as_tensor(), w.as_tensor(), b.as_tensor());
        for bias in [false, true] {
            let y = linear_train(xt, wt, bias.then_some(bt)).unwrap();
            let r = xt.broadcast_matmul(&wt.t().unwrap()).unwrap();
            let r = if bias {
                r.broadcast_add(bt).unwrap()
            } else {
                r
            };
            assert_eq!(max_abs_diff(&y, &r), 0.0, "forward, bias {bias}");
            // A loss that weights every output differently.
            let mix = Tensor::randn(0f32, 1.0, y.dims(), &dev).unwrap();
            let gy = (&y * &mix).unwrap().sum_all().unwrap().backward().unwrap();
            let gr = (&r * &mix).unwrap().sum_all().unwrap().backward().unwrap();
            let mut vars = vec![&x, &w];
            if bias {
                vars.push(&b);
            }
            for v in vars {
                let (a, e) = (gy.get(v).unwrap(), gr.get(v).unwrap());
                let d = max_abs_diff(a, e);
                assert!(d <= 1e-5 * max_abs(e), "gradient differs by {d}");
            }
        }
        // A frozen weight (a plain tensor): no weight product, the input gradient unchanged.
        let frozen = wt.detach();
        let y = linear_train(xt, &frozen, None).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        assert!(g.get(&frozen).is_none());
        let want = Tensor::ones((2, 37, 33), DType::F32, &dev)
            .unwrap()
            .broadcast_matmul(&frozen)
            .unwrap();
        assert!(max_abs_diff(g.get(&x).unwrap(), &want) <= 1e-5 * max_abs(&want));
    }

    /// The fused forms equal the activation op followed by the product, bit for bit in the
    /// forward, to f32 rounding in every gradient.
    #[test]
    fn fused_forms_match_activation_then_product() {
        crate::cpu::for_each_level(|level| {
            if level > crate::cpu::KernelLevel::Reference {
                fused_forms_match_at();
            }
        });
    }

    fn fused_forms_match_at() {
        let dev = Device::Cpu;
        let a = Var::from_tensor(
            &(Tensor::randn(0f32, 2.0, (2, 37, 40), &dev).unwrap() - 0.5).unwrap(),
        )
        .unwrap();
        let u = Var::randn(0f32, 1.0, (2, 37, 40), &dev).unwrap();
        let w = Var::randn(0f32, 1.0, (33, 40), &dev).unwrap();
        let b = Var::randn(0f32, 1.0, 33, &dev).unwrap();
        let (at, ut, wt, bt) = (a.as_tensor(), u.as_tensor(), w.as_tensor(), b.as_tensor());
        let mix = Tensor::randn(0f32, 1.0, (2, 37, 33), &dev).unwrap();
        let check = |got: Tensor, want: Tensor, vars: &[&Var], what: &str| {
            assert_eq!(max_abs_diff(&got, &want), 0.0, "{what}: forward");
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
            for v in vars {
                let (x, e) = (g1.get(v).unwrap(), g2.get(v).unwrap());
                let d = max_abs_diff(x, e);
                assert!(d <= 1e-5 * max_abs(e), "{what}: gradient differs by {d}");
            }
        };
        for act in [FusedActivation::GeluTanh, FusedActivation::Silu] {
            let h = crate::simd::activation_train(at, act).unwrap().unwrap();
            check(
                act_linear_train(act, at, wt, Some(bt)).unwrap().unwrap(),
                linear_train(&h, wt, Some(bt)).unwrap(),
                &[&a, &w, &b],
                "act",
            );
        }
        let h = crate::simd::silu_mul_train(at, ut).unwrap().unwrap();
        check(
            silu_mul_linear_train(at, ut, wt).unwrap().unwrap(),
            linear_train(&h, wt, None).unwrap(),
            &[&a, &u, &w],
            "silu·u",
        );
        // Frozen weight: no weight gradient.
        let frozen = wt.detach();
        let y = silu_mul_linear_train(at, ut, &frozen).unwrap().unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        assert!(g.get(&frozen).is_none() && g.get(&a).is_some());
    }
}
