//! LayerNorm and RMSNorm, with the dtype handling of the transformers modules they replace.

use candle_core::{DType, Module, Tensor, D};

use crate::{Result, Weights};

/// `nn.LayerNorm` with weight and bias over the last axis. Statistics are computed in f32 for
/// half-precision inputs (as PyTorch's CPU and CUDA kernels do), then cast back.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(dim: usize, eps: f64, w: &Weights) -> Result<Self> {
        Ok(Self {
            weight: w.get(dim, "weight")?,
            bias: w.get(dim, "bias")?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    /// # Shapes
    /// `x`: (..., d) -> (..., d)
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
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

/// Qwen2's RMSNorm: `x·rsqrt(mean(x²) + eps)` in f32, cast back to the input dtype, *then*
/// multiplied by the weight (transformers `Qwen2RMSNorm`; the order matters in half precision).
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(dim: usize, eps: f64, w: &Weights) -> Result<Self> {
        Ok(Self {
            weight: w.get(dim, "weight")?,
            eps,
        })
    }
}

impl Module for RmsNorm {
    /// # Shapes
    /// `x`: (..., d) -> (..., d)
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = x.dtype();
        let x32 = x.to_dtype(DType::F32)?;
        let ms = x32.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = x32.broadcast_mul(&(ms + self.eps)?.sqrt()?.recip()?)?;
        normed.to_dtype(dtype)?.broadcast_mul(&self.weight)
    }
}
