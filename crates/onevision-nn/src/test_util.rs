//! Helpers shared by the unit tests of the fast paths.

use candle_core::{DType, Tensor};

/// `max |a - b|`, both read as f32.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.to_dtype(DType::F32).unwrap();
    let b = b.to_dtype(DType::F32).unwrap();
    max_abs(&(a - b).unwrap())
}

/// `max |x|`, read as f32.
pub fn max_abs(x: &Tensor) -> f32 {
    x.to_dtype(DType::F32)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
