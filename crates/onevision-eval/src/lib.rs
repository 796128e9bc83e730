//! `onevision eval`: LLaVA-OneVision scored the way the paper scored it, with lmms-eval's
//! protocol (the v0.2.2 tag, PyPI `lmms-eval==0.2.1`), on local copies of the datasets.
//!
//! The layers, top down:
//! - [`run`]: the loop over documents (resume, progress, failures), then [`results`];
//! - [`tasks`]: one recipe per benchmark, lmms-eval's `doc_to_text`, filters, `process_results`
//!   and aggregations, behind the [`task::Task`] trait; [`tasks::registry`] names them;
//! - [`metrics`]: the pure scoring functions, each named after the upstream function it follows;
//! - [`dataset`]: the Hub's parquet files found offline (`--data DIR` or the Hugging Face cache);
//! - [`backend`]: the model, in-process (the engine's greedy path) or an OpenAI-compatible server.

pub mod backend;
pub mod dataset;
pub mod doc;
pub mod error;
pub mod metrics;
pub mod results;
pub mod run;
pub mod samples;
pub mod task;
pub mod tasks;

pub use error::{Error, Result};
