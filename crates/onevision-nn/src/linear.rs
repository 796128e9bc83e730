//! A fully connected layer with PyTorch's `[out, in]` weight layout.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Module, Shape, Tensor};
use std::sync::Arc;

use half::bf16;

use candle_core::quantized::{QMatMul, QTensor};

use crate::gemm_nt::{self, gemm_nt_bias};
use crate::{Quantization, Result, Weights};

/// `y = x·Wᵀ + b`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor, // (out, in)
    bias: Option<Tensor>,
    /// The bias in f32, for the fused product (added before the output's one rounding).
    bias32: Option<Arc<Vec<f32>>>,
    /// A quantized copy of the weight for few-row products (decoding), if asked for.
    decode_weight: Option<Arc<QMatMul>>,
}

impl Linear {
    /// Loads `weight` (and `bias` when `bias` is true) from `w`.
    pub fn new(in_dim: usize, out_dim: usize, bias: bool, w: &Weights) -> Result<Self> {
        let weight = w.get((out_dim, in_dim), "weight")?;
        let bias = if bias {
            Some(w.get(out_dim, "bias")?)
        } else {
            None
        };
        Ok(Self::from_tensors(weight, bias)?)
    }

    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> candle_core::Result<Self> {
        let bias32 = match &bias {
            Some(b) => Some(Arc::new(b.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?)),
            None => None,
        };
        Ok(Self {
            weight,
            bias,
            bias32,
            decode_weight: None,
        })
    }

    /// Keeps a copy of the weight in `q` for products of fewer than
    /// [`MIN_ROWS_PACKED`](gemm_nt::MIN_ROWS_PACKED) rows (decoding), outside gradient
    /// tracking. The weight itself stays for everything else. A weight whose input width is not
    /// a multiple of the format's block (32) cannot be quantized and stays as it is: returns
    /// whether it was quantized.
    pub fn quantize_for_decode(&mut self, q: Quantization) -> candle_core::Result<bool> {
        let block = q.ggml().block_size();
        if self.weight.dim(1)? % block != 0 {
            return Ok(false);
        }
        let w = self.weight.to_dtype(DType::F32)?;
        let qt = QTensor::quantize(&w, q.ggml())?;
        self.decode_weight = Some(Arc::new(QMatMul::from_qtensor(qt)?));
        Ok(true)
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for Linear {
    /// `x·Wᵀ` runs on [`gemm_nt`](crate::gemm_nt)'s AVX-512 kernels when the CPU has them
    /// (bf16 always, f32 for a few rows), else on candle's matmul; both are differentiable.
    /// Without gradient tracking the bias is added inside the fast product.
    ///
    /// # Shapes
    /// `x`: (..., in) -> (..., out)
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let tracking = x.track_op()
            || self.weight.track_op()
            || self.bias.as_ref().is_some_and(|b| b.track_op());
        if let Some(qw) = &self.decode_weight {
            let rows = x.elem_count() / x.dim(candle_core::D::Minus1)?.max(1);
            if !tracking && rows < gemm_nt::MIN_ROWS_PACKED {
                let y = qw.forward(&x.to_dtype(DType::F32)?)?;
                let y = match &self.bias {
                    Some(b) => y.broadcast_add(&b.to_dtype(DType::F32)?)?,
                    None => y,
                };
                return y.to_dtype(x.dtype());
            }
        }
        if tracking && train_applies(x, &self.weight, self.bias.as_ref()) {
            return linear_train(x, &self.weight, self.bias.as_ref());
        }
        if self.bias32.is_some() && !tracking && fast_applies(x, &self.weight)? {
            return apply_nt(
                x,
                &self.weight,
                MatmulNt {
                    bias: self.bias32.clone(),
                },
            );
        }
        let y = matmul_nt(x, &self.weight)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// Whether [`linear_train`] takes a tracked product: f32 on the CPU, any number of rows.
fn train_applies(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> bool {
    x.device().is_cpu()
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && b.is_none_or(|b| b.dtype() == DType::F32)
}

/// `x·wᵀ + b` as one differentiable op (training, f32): the product is candle's matmul call
/// (the same gemm, strides and threads) and the bias is added in a second pass, so the values
/// are those of `broadcast_matmul` + `broadcast_add`. The graph keeps one node and one output
/// instead of four (broadcast, transpose, product, sum), and the backward computes only the
/// gradients that are needed: `dx = dy·w` when `x` takes part in a gradient, `dw = dyᵀ·x`
/// when `w` does (a frozen layer skips its weight product, a third of its backward), `db`.
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
    let mut out = dims.to_vec();
    *out.last_mut().expect("x has a last axis") = n;
    y.reshape(out)
}

/// The op behind [`linear_train`]: (m, k) x (n, k) [+ n] -> (m, n).
struct LinearTrain;

impl LinearTrain {
    fn forward(
        &self,
        x: (&CpuStorage, &Layout),
        w: (&CpuStorage, &Layout),
        b: Option<(&CpuStorage, &Layout)>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, k) = x.1.shape().dims2()?;
        let (n, k2) = w.1.shape().dims2()?;
        let (xs, ws) = (x.1.stride(), w.1.stride());
        if k != k2 || ws != [k, 1] || xs[1] != 1 {
            candle_core::bail!(
                "linear-train: operands {:?} (strides {xs:?}) and {:?} (strides {ws:?}) are not (m, k), (n, k) row-major",
                x.1.shape(),
                w.1.shape()
            );
        }
        let (CpuStorage::F32(xd), CpuStorage::F32(wd)) = (x.0, w.0) else {
            candle_core::bail!("linear-train: f32 only");
        };
        let xd = &xd[x.1.start_offset()..];
        let wd = &wd[w.1.start_offset()..w.1.start_offset() + n * k];
        if m > 0 && xd.len() < (m - 1) * xs[0] + k {
            candle_core::bail!("linear-train: input storage too small");
        }
        let mut y = vec![0f32; m * n];
        let threads = candle_core::utils::get_num_threads();
        let par = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: sizes and strides checked above; `y` is (m, n) row-major. This is the call
        // candle's matmul makes for `x.matmul(&w.t())`.
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
                xs[0] as isize,
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
            use rayon::prelude::*;
            y.par_chunks_mut(n * 64).for_each(|rows| {
                for row in rows.chunks_mut(n) {
                    row.iter_mut().zip(bd).for_each(|(v, b)| *v += b);
                }
            });
        }
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }

    /// `dx = dy·w`, `dw = dyᵀ·x`, each only where its operand takes part in a gradient.
    fn backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = if x.track_op() {
            Some(dy.matmul(&w.detach())?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(dy.t()?.matmul(&x.detach())?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

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
        self.forward((s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        self.backward(x, w, dy)
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
        let (dx, dw) = self.backward(x, w, dy)?;
        let db = if b.track_op() { Some(dy.sum(0)?) } else { None };
        Ok((dx, dw, db))
    }
}

/// `x·wᵀ`, on the fast kernels where they apply.
///
/// # Shapes
/// `x`: (..., k), `w`: (n, k) -> (..., n)
pub fn matmul_nt(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    if !fast_applies(x, w)? {
        return x.broadcast_matmul(&w.t()?);
    }
    apply_nt(x, w, MatmulNt { bias: None })
}

/// Whether `x·wᵀ` goes to our kernels. f32: candle's gemm is as fast as ours on many rows
/// (measured by the gemm_bench example: 0.86-1.0x); ours wins on the few-row products of
/// decoding (1.0-1.9x).
fn fast_applies(x: &Tensor, w: &Tensor) -> candle_core::Result<bool> {
    let k = x.dim(candle_core::D::Minus1)?;
    let rows = x.elem_count() / k.max(1);
    Ok(x.device().is_cpu()
        && x.dtype() == w.dtype()
        && match x.dtype() {
            DType::F32 => gemm_nt::has_f32() && rows < gemm_nt::MIN_ROWS_PACKED,
            DType::BF16 => gemm_nt::has_bf16(),
            _ => false,
        })
}

/// # Shapes
/// `x`: (..., k), `w`: (n, k) -> (..., n)
fn apply_nt(x: &Tensor, w: &Tensor, op: MatmulNt) -> candle_core::Result<Tensor> {
    let dims = x.dims();
    let (k, n) = (dims[dims.len() - 1], w.dim(0)?);
    let x2 = x.reshape(((), k))?.contiguous()?;
    let y = match op.bias {
        // The bias is not a graph input: only for tensors outside any gradient (checked by
        // the caller).
        Some(_) => x2.apply_op2_no_bwd(&w.contiguous()?, &op)?,
        None => x2.apply_op2(&w.contiguous()?, op)?,
    };
    let mut out = dims.to_vec();
    *out.last_mut().expect("x has a last axis") = n;
    y.reshape(out)
}

/// The custom op behind [`matmul_nt`]: (m, k) x (n, k) (+ bias) -> (m, n), contiguous
/// operands.
struct MatmulNt {
    bias: Option<Arc<Vec<f32>>>,
}

impl CustomOp2 for MatmulNt {
    fn name(&self) -> &'static str {
        "matmul-nt"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, k) = l1.shape().dims2()?;
        let (n, k2) = l2.shape().dims2()?;
        if k != k2 || !l1.is_contiguous() || !l2.is_contiguous() {
            candle_core::bail!(
                "matmul-nt: operands {:?} and {:?} are not (m, k), (n, k) contiguous",
                l1.shape(),
                l2.shape()
            );
        }
        let (o1, o2) = (l1.start_offset(), l2.start_offset());
        let bias = self.bias.as_deref().map(|b| b.as_slice());
        let storage = match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => {
                let mut c = vec![0f32; m * n];
                if !gemm_nt_bias(
                    m,
                    n,
                    k,
                    &a[o1..o1 + m * k],
                    &b[o2..o2 + n * k],
                    bias,
                    &mut c,
                ) {
                    candle_core::bail!("matmul-nt: this CPU has no AVX-512");
                }
                CpuStorage::F32(c)
            }
            (CpuStorage::BF16(a), CpuStorage::BF16(b)) => {
                let mut c = vec![bf16::ZERO; m * n];
                if !gemm_nt_bias(
                    m,
                    n,
                    k,
                    &a[o1..o1 + m * k],
                    &b[o2..o2 + n * k],
                    bias,
                    &mut c,
                ) {
                    candle_core::bail!("matmul-nt: this CPU has no AVX512-BF16");
                }
                CpuStorage::BF16(c)
            }
            _ => candle_core::bail!(
                "matmul-nt: unsupported dtypes {:?}, {:?}",
                s1.dtype(),
                s2.dtype()
            ),
        };
        Ok((storage, Shape::from((m, n))))
    }

    /// `dx = dy·w`, `dw = dyᵀ·x`, with candle's reference matmul.
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(dy.matmul(w)?), Some(dy.t()?.matmul(x)?)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;
    use crate::test_util::{max_abs, max_abs_diff};

    /// The fast path equals candle's matmul (forward) and gives the same gradients (3 rows:
    /// the f32 fast path).
    #[test]
    fn fast_path_matches_reference_and_differentiates() {
        let dev = Device::Cpu;
        let x = Var::randn(0f32, 1.0, (1, 3, 40), &dev).unwrap();
        let w = Var::randn(0f32, 1.0, (33, 40), &dev).unwrap();
        let fast = matmul_nt(x.as_tensor(), w.as_tensor()).unwrap();
        let reference = x
            .as_tensor()
            .broadcast_matmul(&w.as_tensor().t().unwrap())
            .unwrap();
        let diff = max_abs_diff(&fast, &reference);
        assert!(diff < 1e-4, "{diff}");
        let g_fast = fast.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let g_ref = reference
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in [&x, &w] {
            let (a, b) = (g_fast.get(v).unwrap(), g_ref.get(v).unwrap());
            let d = max_abs_diff(a, b);
            assert!(d < 1e-3, "gradient differs by {d}");
        }
    }

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

    /// bf16 on the packed kernel (many rows) equals candle's bf16 matmul to bf16 rounding.
    #[test]
    fn bf16_fast_path_matches_reference() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (3, 50, 70), &dev)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        let w = Tensor::randn(0f32, 1.0, (45, 70), &dev)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        let fast = matmul_nt(&x, &w).unwrap().to_dtype(DType::F32).unwrap();
        let reference = x
            .broadcast_matmul(&w.t().unwrap())
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let scale = max_abs(&reference);
        let diff = max_abs_diff(&fast, &reference);
        assert!(diff <= scale / 128.0, "{diff} vs scale {scale}");
    }

    /// With a bias, the fused product (f32 few rows, bf16 many rows) equals matmul + bias.
    #[test]
    fn bias_inside_the_product_matches_reference() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (45, 70), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 45, &dev).unwrap();
        for (dt, rows, tol) in [(DType::F32, 3, 1e-4f32), (DType::BF16, 50, 1.0 / 64.0)] {
            let x = Tensor::randn(0f32, 1.0, (2, rows, 70), &dev)
                .unwrap()
                .to_dtype(dt)
                .unwrap();
            let (w, b) = (w.to_dtype(dt).unwrap(), b.to_dtype(dt).unwrap());
            let layer = Linear::from_tensors(w.clone(), Some(b.clone())).unwrap();
            let got = layer.forward(&x).unwrap().to_dtype(DType::F32).unwrap();
            let want = x
                .broadcast_matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(&b)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            let scale = max_abs(&want);
            let diff = max_abs_diff(&got, &want);
            assert!(diff <= tol * scale, "{dt:?}: {diff} vs scale {scale}");
        }
    }
}
