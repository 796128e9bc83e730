//! The floating-point type the model computes in.

use std::fmt;
use std::str::FromStr;

use candle_core::DType;

use crate::Error;

/// The dtype activations and weights are held in during compute. Stored weights of any float
/// type are converted to it once, at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ComputeDType {
    /// The reference dtype on CPU; matches transformers run in float32.
    #[default]
    F32,
    BF16,
    F16,
}

impl ComputeDType {
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::BF16 => DType::BF16,
            Self::F16 => DType::F16,
        }
    }
}

impl FromStr for ComputeDType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::BF16),
            "f16" | "float16" | "half" => Ok(Self::F16),
            _ => Err(Error::UnknownDType(s.to_string())),
        }
    }
}

impl fmt::Display for ComputeDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::BF16 => "bf16",
            Self::F16 => "f16",
        })
    }
}
