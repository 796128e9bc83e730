//! Rotary position embedding, "rotate half" (non-interleaved) form, as in transformers' Qwen2.

use candle_core::{DType, Device, Tensor, D};

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

/// `x·cos + rotate_half(x)·sin`, with `rotate_half(x) = cat(-x[d/2:], x[:d/2])`.
///
/// # Shapes
/// `x`: (b, h, t, d); `cos`, `sin`: (t, d) -> (b, h, t, d)
pub fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?
}
