//! The processor's error type. Every message says what was wrong with the input and what was
//! expected, so a CLI or server can show it to the user as is.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The bytes are not an image we can decode (unknown format, truncated, corrupt).
    #[error("cannot decode image {what}: {reason}")]
    ImageDecode { what: String, reason: String },
    /// The header announces more pixels than allowed; nothing was decoded.
    #[error(
        "image {what} is {width}x{height} = {pixels} pixels, over the limit of {limit} pixels; \
         resize it first or raise the limit"
    )]
    ImageTooLarge {
        what: String,
        width: u64,
        height: u64,
        pixels: u64,
        limit: u64,
    },
    /// A video that cannot be opened, decoded, or that has no frames.
    #[error("cannot read video {what}: {reason}")]
    Video { what: String, reason: String },
    /// A checkpoint file of the processor (configs, tokenizer, chat template) is missing or wrong.
    #[error("processor config {what}: {reason}")]
    Config { what: String, reason: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    /// The conversation does not fit what the prompt format can express.
    #[error("prompt: {0}")]
    Prompt(String),
}

pub type Result<T> = std::result::Result<T, Error>;
