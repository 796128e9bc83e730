//! Layers, weights and tensor helpers for onevision. Nothing here knows about a particular model:
//! checkpoint layouts, configs and architectures live in `onevision-models`.
//!
//! Every layer is written with differentiable candle ops (no fused inference-only kernels), so a
//! later trainer can take gradients through the reference path.

pub mod activation;
pub mod attention;
pub mod attention_fused;
pub mod attention_grad;
pub mod cpu;
pub mod dtype;
pub mod error;
pub mod gemm_nt;
pub mod interpolate;
pub mod kv_cache;
pub mod linear;
pub mod linear_train;
pub mod norm;
pub mod quant;
pub mod quant_dot;
pub mod rope;
pub mod simd;
#[cfg(test)]
mod test_util;
mod vector;
pub mod weights;

pub use activation::Activation;
pub use dtype::ComputeDType;
pub use error::{Error, Result};
pub use kv_cache::KvCache;
pub use linear::Linear;
pub use norm::{LayerNorm, RmsNorm};
pub use quant::Quantization;
pub use weights::{RenameTable, WeightFiles, Weights};
