use std::path::PathBuf;

/// Everything that can stop an evaluation. Per-document problems (an undecodable image, a
/// failed request) are [`DocError`]s: the document is scored as failed and the run goes on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown task `{name}`; known tasks: {known}")]
    UnknownTask { name: String, known: String },
    #[error(
        "dataset {repo} not found: looked in {} and {}; download it with \
         `huggingface-cli download --repo-type dataset {repo}` or lay its parquet files out as \
         --data DIR/{repo}/",
        data_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "--data (not given)".into()),
        hf_cache.display()
    )]
    DatasetNotFound {
        repo: String,
        data_dir: Option<PathBuf>,
        hf_cache: PathBuf,
    },
    #[error("{what}: {reason}")]
    Dataset { what: String, reason: String },
    #[error(
        "{path}: missing columns {missing:?} (this task needs {needed:?}; the file has {found:?})"
    )]
    MissingColumns {
        path: String,
        missing: Vec<String>,
        needed: Vec<String>,
        found: Vec<String>,
    },
    #[error("{what}: {reason}")]
    Samples { what: String, reason: String },
    #[error("backend: {0}")]
    Backend(String),
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why one document could not be evaluated (it is scored as failed, counted and reported).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct DocError(pub String);

impl DocError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

impl Error {
    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            source,
        }
    }
}
