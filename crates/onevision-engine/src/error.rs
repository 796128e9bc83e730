//! Engine errors: the layer below's errors, unchanged, plus request-level problems.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] onevision_models::Error),
    #[error(transparent)]
    Processor(#[from] onevision_processor::Error),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    /// The request cannot be run as given.
    #[error("{0}")]
    Request(String),
    #[error("{what}: {reason}")]
    Checkpoint { what: String, reason: String },
    /// A bug: something that should not happen did (a panic caught in the generation loop).
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;
