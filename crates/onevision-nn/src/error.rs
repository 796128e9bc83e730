//! Errors of the layer and weight code. Messages say what was expected and what was found.

use std::path::PathBuf;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is not a valid safetensors file ({reason}); expected a checkpoint written by safetensors")]
    BadSafetensors { path: PathBuf, reason: String },

    #[error("{path} is not a valid shard index ({reason}); expected model.safetensors.index.json with a \"weight_map\" object")]
    BadIndex { path: PathBuf, reason: String },

    #[error("no weights in {dir}: expected model.safetensors, model.safetensors.index.json or *.safetensors files")]
    NoWeights { dir: PathBuf },

    #[error("the checkpoint lacks tensor `{name}` (stored under any of the accepted layouts: {layouts})")]
    MissingTensor { name: String, layouts: String },

    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("tensors `{first}` and `{second}` both map to `{canonical}`: the checkpoint mixes two naming layouts")]
    DuplicateTensor {
        first: String,
        second: String,
        canonical: String,
    },

    #[error("tensor `{name}` is stored as {dtype}; expected F32, F16 or BF16")]
    UnsupportedStoredDType { name: String, dtype: String },

    #[error("unknown dtype `{0}`; expected one of: f32, bf16, f16")]
    UnknownDType(String),

    #[error("unknown quantization `{0}`; expected one of: q8_0, q4_0")]
    UnknownQuantization(String),

    #[error("unknown CPU kernel level `{0}`; expected one of: reference, avx2, avx512")]
    UnknownKernelLevel(String),

    #[error(
        "CPU kernel level {asked} is not available on this CPU, which runs at most {detected}"
    )]
    KernelLevelUnavailable { asked: String, detected: String },

    #[error("ONEVISION_CPU_KERNELS: {0}")]
    KernelLevelEnv(Box<Error>),
}

pub type Result<T> = std::result::Result<T, Error>;
