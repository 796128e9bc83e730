//! Errors of the model crate. Messages name the offending key, tensor or input, what was
//! expected, and what was found.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Nn(#[from] onevision_nn::Error),

    #[error(transparent)]
    Tensor(#[from] candle_core::Error),

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is not valid JSON: {reason}")]
    BadJson { path: PathBuf, reason: String },

    #[error("config `{key}` = {found}: unsupported; accepted: {accepted}")]
    Unsupported {
        key: String,
        found: String,
        accepted: String,
    },

    #[error("config `{key}` is missing or has the wrong type ({reason})")]
    BadConfig { key: String, reason: String },

    #[error("{what}: the prompt holds {tokens} placeholder tokens (id {token_id}) but the media give {features} feature rows; expand each placeholder to the media's token count")]
    PlaceholderMismatch {
        what: &'static str,
        token_id: u32,
        tokens: usize,
        features: usize,
    },

    #[error("invalid input: {0}")]
    Input(String),
}

pub type Result<T> = std::result::Result<T, Error>;
