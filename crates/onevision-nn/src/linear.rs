//! A fully connected layer with PyTorch's `[out, in]` weight layout.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Module, Shape, Tensor};
use std::sync::Arc;

use crate::gemm_nt::{self, gemm_nt_bias};
use crate::linear_train::{act_linear_train, linear_train, silu_mul_linear_train, train_applies};
use crate::quant_dot::QuantizedWeight;
use crate::{Activation, Quantization, Result, Weights};

/// `y = x·Wᵀ + b`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor, // (out, in)
    bias: Option<Tensor>,
    /// The bias in f32, for the fused product (added before the output's one rounding).
    bias32: Option<Arc<Vec<f32>>>,
    /// A quantized copy of the weight for few-row products (decoding), if asked for.
    decode_weight: Option<Arc<QuantizedWeight>>,
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
        self.decode_weight = Some(Arc::new(QuantizedWeight::quantize(&self.weight, q)?));
        Ok(true)
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// `act(a)·Wᵀ + b`, the second layer of an MLP. Under a gradient (f32, AVX-512) one fused
    /// differentiable op that recomputes `act(a)` in its backward instead of keeping it (see
    /// [`crate::linear_train`]); otherwise `forward(act(a))`. The values are the same.
    ///
    /// # Shapes
    /// `a`: (..., in) -> (..., out)
    pub fn forward_after(&self, act: Activation, a: &Tensor) -> candle_core::Result<Tensor> {
        let tracking = a.track_op()
            || self.weight.track_op()
            || self.bias.as_ref().is_some_and(|b| b.track_op());
        if let (true, Some(f)) = (tracking, act.fused()) {
            if let Some(y) = act_linear_train(f, a, &self.weight, self.bias.as_ref())? {
                return Ok(y);
            }
        }
        self.forward(&act.forward(a)?)
    }

    /// `(act(gate)·up)·Wᵀ + b`, the down projection of a gated MLP. Under a gradient (f32,
    /// AVX-512, SiLU, no bias) one fused differentiable op that recomputes `silu(gate)·up` in
    /// its backward; otherwise `forward(act.gated(gate, up))`. The values are the same.
    ///
    /// # Shapes
    /// `gate`, `up`: (..., in) -> (..., out)
    pub fn forward_gated(
        &self,
        act: Activation,
        gate: &Tensor,
        up: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let tracking = gate.track_op() || up.track_op() || self.weight.track_op();
        if tracking && act == Activation::Silu && self.bias.is_none() {
            if let Some(y) = silu_mul_linear_train(gate, up, &self.weight)? {
                return Ok(y);
            }
        }
        self.forward(&act.gated(gate, up)?)
    }
}

/// Products of fewer rows than this (decode steps, batched) use the quantized decode weight;
/// prompts keep the compute dtype.
const QUANTIZED_MAX_ROWS: usize = 16;

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
            if !tracking && rows < QUANTIZED_MAX_ROWS {
                let bias = self.bias32.as_deref().map(Vec::as_slice);
                return quantized_forward(qw, x, bias)?.to_dtype(x.dtype());
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

/// `x·qᵀ (+ bias)` in f32 on the quantized kernel.
///
/// # Shapes
/// `x`: (..., k) -> (..., n)
fn quantized_forward(
    q: &QuantizedWeight,
    x: &Tensor,
    bias: Option<&[f32]>,
) -> candle_core::Result<Tensor> {
    let dims = x.dims();
    let k = q.k();
    if dims.last() != Some(&k) {
        candle_core::bail!(
            "linear ({}): input {:?} does not end in the weight's width {k}",
            q.format(),
            dims
        );
    }
    let a = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let m = a.len() / k.max(1);
    let mut c = vec![0f32; m * q.n()];
    q.product(m, &a, bias, &mut c);
    let mut out = dims.to_vec();
    *out.last_mut().expect("x has a last axis") = q.n();
    Tensor::from_vec(c, out, x.device())
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
            DType::F16 => gemm_nt::has_f32(),
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

/// `a·bᵀ (+ bias)` for the leading (m, k) of `a` and (n, k) of `b`, on [`gemm_nt_bias`].
fn product<T: gemm_nt::Element + gemm_nt::StoreF32>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    b: &[T],
    bias: Option<&[f32]>,
) -> candle_core::Result<Vec<T>> {
    let mut c = vec![T::zero(); m * n];
    if !gemm_nt_bias(m, n, k, &a[..m * k], &b[..n * k], bias, &mut c) {
        candle_core::bail!("matmul-nt: no kernel for this dtype at this CPU kernel level");
    }
    Ok(c)
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
                CpuStorage::F32(product(m, n, k, &a[o1..], &b[o2..], bias)?)
            }
            (CpuStorage::BF16(a), CpuStorage::BF16(b)) => {
                CpuStorage::BF16(product(m, n, k, &a[o1..], &b[o2..], bias)?)
            }
            (CpuStorage::F16(a), CpuStorage::F16(b)) => {
                CpuStorage::F16(product(m, n, k, &a[o1..], &b[o2..], bias)?)
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
        crate::cpu::for_each_level(|_| fast_path_matches_reference_and_differentiates_at());
    }

    fn fast_path_matches_reference_and_differentiates_at() {
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

    /// bf16 on the packed kernel (many rows) equals candle's bf16 matmul to bf16 rounding.
    #[test]
    fn bf16_fast_path_matches_reference() {
        crate::cpu::for_each_level(|_| bf16_fast_path_matches_reference_at());
    }

    fn bf16_fast_path_matches_reference_at() {
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

    /// With a bias, the fused product (f32 few rows, bf16 many rows, f16 both) equals matmul +
    /// bias.
    #[test]
    fn bias_inside_the_product_matches_reference() {
        crate::cpu::for_each_level(|_| bias_inside_the_product_matches_reference_at());
    }

    fn bias_inside_the_product_matches_reference_at() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (45, 70), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 45, &dev).unwrap();
        for (dt, rows, tol) in [
            (DType::F32, 3, 1e-4f32),
            (DType::BF16, 50, 1.0 / 64.0),
            (DType::F16, 50, 1.0 / 256.0),
            (DType::F16, 3, 1.0 / 256.0),
        ] {
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
