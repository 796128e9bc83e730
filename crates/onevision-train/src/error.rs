//! Errors of the training crate. Each message names the file, line or sample, what was expected
//! and what was found.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] onevision_models::Error),

    #[error(transparent)]
    Nn(#[from] onevision_nn::Error),

    #[error(transparent)]
    Processor(#[from] onevision_processor::Error),

    #[error(transparent)]
    Tensor(#[from] candle_core::Error),

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A problem with one sample or one line of a data file (see [`crate::data::Problem`]).
    #[error("{0}")]
    Data(String),

    /// Several data problems, found before any step ran.
    #[error("{count} problem(s) in the training data (pass --skip-bad-samples to skip those samples):\n{list}")]
    DataProblems { count: usize, list: String },

    /// A setting that cannot work (conflicting flags, an empty dataset, ...).
    #[error("{0}")]
    Config(String),

    /// A training-state directory that does not fit this run.
    #[error("cannot resume from {path}: {reason}")]
    Resume { path: PathBuf, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;
