//! Bilinear resizing of feature maps, bit-compatible in form with PyTorch's
//! `F.interpolate(mode="bilinear", align_corners=False)` given an explicit output size.
//!
//! Each axis is a sparse `[out, in]` matrix with two taps a row, applied with matmuls so the
//! operation stays differentiable. The taps follow ATen's `area_pixel_compute_source_index` and
//! `guard_index_and_lambda` in f32: `src = (in/out)·(d + 0.5) − 0.5` clamped at 0,
//! `i0 = floor(src)`, `i1 = min(i0 + 1, in − 1)`, `λ1 = src − i0`, `λ0 = 1 − λ1`.
//! Width is interpolated first, then height, in f32; the result is cast back once.

use candle_core::{DType, Device, Tensor};

/// The `[out, in]` interpolation matrix of one axis.
///
/// # Shapes
/// returns (out, in), f32
pub fn bilinear_matrix(
    in_size: usize,
    out_size: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let scale = in_size as f32 / out_size as f32;
    let mut m = vec![0f32; out_size * in_size];
    for d in 0..out_size {
        let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(in_size - 1);
        let i1 = if i0 < in_size - 1 { i0 + 1 } else { i0 };
        let l1 = (src - i0 as f32).clamp(0.0, 1.0);
        let l0 = 1.0 - l1;
        m[d * in_size + i0] += l0;
        m[d * in_size + i1] += l1;
    }
    Tensor::from_vec(m, (out_size, in_size), device)
}

/// Resizes a batch of channels-last maps.
///
/// # Shapes
/// `x`: (n, h, w, c) -> (n, out_h, out_w, c)
pub fn resize_bilinear(x: &Tensor, out_h: usize, out_w: usize) -> candle_core::Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    let dtype = x.dtype();
    let dev = x.device();
    let x = x.to_dtype(DType::F32)?;
    let rx = bilinear_matrix(w, out_w, dev)?;
    let ry = bilinear_matrix(h, out_h, dev)?;
    let x = x.reshape((n * h, w, c))?;
    let x = rx.broadcast_left(n * h)?.matmul(&x)?; // (n·h, out_w, c)
    let x = x.reshape((n, h, out_w * c))?;
    let x = ry.broadcast_left(n)?.matmul(&x)?; // (n, out_h, out_w·c)
    x.reshape((n, out_h, out_w, c))?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_when_sizes_match() -> candle_core::Result<()> {
        let m = bilinear_matrix(5, 5, &Device::Cpu)?;
        assert_eq!(
            m.to_vec2::<f32>()?,
            Tensor::eye(5, DType::F32, &Device::Cpu)?.to_vec2::<f32>()?
        );
        Ok(())
    }

    #[test]
    fn rows_sum_to_one_and_match_torch_taps() -> candle_core::Result<()> {
        // torch: F.interpolate(arange(27).view(1,1,1,27), size=(1,14), mode="bilinear")[0,0,0,:3]
        // = [0.4643, 2.3929, 4.3214, ..., 25.5357].
        let m = bilinear_matrix(27, 14, &Device::Cpu)?;
        let ramp = Tensor::arange(0f32, 27.0, &Device::Cpu)?.reshape((27, 1))?;
        let out = m.matmul(&ramp)?.flatten_all()?.to_vec1::<f32>()?;
        for (got, want) in out.iter().zip([0.464_285_7f32, 2.392_857, 4.321_428_5]) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
        assert!((out[13] - 25.535_715).abs() < 1e-5, "{}", out[13]);
        for row in m.to_vec2::<f32>()? {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        Ok(())
    }
}
