//! Weight-only quantization of the decoder's products for decoding (`--quantize`).
//!
//! Decoding reads every decoder weight once per token, so its speed is the weight bytes over
//! the memory bandwidth. A quantized copy (GGML's block formats, quantized by candle, multiplied
//! by our kernels in [`crate::quant_dot`]) cuts the bytes 4x (q8_0) to 7x (q4_0) against f32; the
//! original weights stay for the prefill and the vision tower, which are compute bound and keep
//! their f32/bf16 numerics.

use std::fmt;
use std::str::FromStr;

use candle_core::quantized::GgmlDType;

use crate::Error;

/// A block format for the decode-time copy of a weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantization {
    /// Blocks of 32 int8 with one f16 scale (8.5 bits per weight).
    Q8_0,
    /// Blocks of 32 4-bit values with one f16 scale (4.5 bits per weight).
    Q4_0,
}

impl Quantization {
    pub const ACCEPTED: &'static str = "q8_0, q4_0";

    pub fn ggml(self) -> GgmlDType {
        match self {
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q4_0 => GgmlDType::Q4_0,
        }
    }
}

impl FromStr for Quantization {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" => Ok(Self::Q8_0),
            "q4_0" => Ok(Self::Q4_0),
            _ => Err(Error::UnknownQuantization(s.to_string())),
        }
    }
}

impl fmt::Display for Quantization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
        })
    }
}
