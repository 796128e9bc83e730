//! What a benchmark recipe is: lmms-eval's task yaml + `utils.py` as one trait.
//!
//! The run loop calls, per document: [`Task::prompt`] (doc_to_text + doc_to_visual), the model,
//! [`Task::filter`] (the yaml's `filter_list`), [`Task::process`] (`process_results`); and at the
//! end, per metric, [`MetricSpec::aggregation`] over the values `process` returned. The values
//! are JSON, as lmms-eval's are Python objects: a number for `mean` metrics, a dict for the
//! custom aggregations (MME's `{question_id, category, score}`, MMBench's rows, ...). They are
//! written into the samples file, so `onevision eval score` can aggregate them again.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::doc::{Prompt, Row};
use crate::error::DocError;
use crate::metrics::pyrandom::PyRandom;

/// Where a task's data is on the Hub: `repo` (`lmms-lab/ai2d`), the dataset config
/// (`dataset_name` in the yaml; None for the default), the split, and the columns the recipe
/// reads (checked against each parquet file's schema before the run starts).
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSpec {
    pub repo: String,
    pub config: Option<String>,
    pub split: String,
    pub columns: Vec<String>,
}

/// How a metric's per-document values become one number.
#[derive(Clone, Copy)]
pub enum Aggregation {
    /// lmms-eval's `mean` over numbers; its stderr is `mean_stderr` (sample std / sqrt(n)).
    Mean,
    /// A task's own aggregation function (`!function utils.xxx`); lmms-eval reports its
    /// stderr as "N/A".
    Custom(fn(&[Value]) -> Result<f64, String>),
}

impl std::fmt::Debug for Aggregation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Aggregation::Mean => f.write_str("mean"),
            Aggregation::Custom(_) => f.write_str("custom"),
        }
    }
}

/// One entry of the yaml's `metric_list`.
#[derive(Debug, Clone)]
pub struct MetricSpec {
    /// lmms-eval's name, spelling included (`mme_percetion_score`).
    pub name: String,
    pub aggregation: Aggregation,
    pub higher_is_better: bool,
}

impl MetricSpec {
    pub fn mean(name: &str) -> Self {
        Self {
            name: name.into(),
            aggregation: Aggregation::Mean,
            higher_is_better: true,
        }
    }

    pub fn custom(name: &str, f: fn(&[Value]) -> Result<f64, String>) -> Self {
        Self {
            name: name.into(),
            aggregation: Aggregation::Custom(f),
            higher_is_better: true,
        }
    }
}

/// What a task may need beyond the row to build its media.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// `--video-dir`: where the video tasks' files are (each task documents its layout below it).
    pub video_dir: Option<PathBuf>,
    /// The dataset's directory (some datasets keep their media beside the parquet files).
    pub dataset_dir: Option<PathBuf>,
}

/// A task's documents when they do not come from a Hub dataset (the user's own data): their
/// count, and rows by doc_id. A row that cannot be read is a per-document failure.
pub trait Documents: Send {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn row(&mut self, doc_id: usize) -> Result<Row, DocError>;
}

/// One benchmark, as lmms-eval 0.2.1 defines it with its `default` prompt kwargs.
pub trait Task: Send + Sync {
    /// lmms-eval's task name (`ai2d`, `mmbench_en_dev`, `mvbench_action_count`, ...).
    fn name(&self) -> &str;

    /// The group it belongs to in lmms-eval (`mvbench`, `llava_interleave_bench`), if any.
    fn group(&self) -> Option<&str> {
        None
    }

    fn dataset(&self) -> DatasetSpec;

    /// Documents of the task's own (None: read `dataset()` from the Hub's parquet files).
    fn documents(&self) -> Option<Result<Box<dyn Documents>, crate::Error>> {
        None
    }

    /// `generation_kwargs.max_new_tokens` (lmms-eval's llava_onevision uses 1024 when unset).
    fn max_new_tokens(&self) -> usize {
        1024
    }

    /// `doc_to_text` + `doc_to_visual`. An error scores the document as failed.
    fn prompt(&self, row: &Row, ctx: &Context) -> Result<Prompt, DocError>;

    /// `doc_to_target`, as written to the samples file's `target`.
    fn target(&self, doc: &Map<String, Value>) -> Value;

    /// The name of the yaml's filter (`none` when it has none; `flexible-extract` for AI2D).
    fn filter_name(&self) -> &str {
        "none"
    }

    /// The filter applied to the stripped response (identity when the task has none).
    fn filter(&self, response: &str, _doc: &Map<String, Value>) -> String {
        response.to_string()
    }

    /// `process_results(doc, [filtered])`: each metric's per-document value. `rng` is Python's
    /// `random` as lmms-eval leaves it: seeded with 0 (the evaluator's `--seed 0,...`) once per
    /// task, then consumed by the documents in doc_id order (the run loop scores in that order,
    /// after generation, as lmms-eval does), for the parsers that fall back to
    /// `random.choice`.
    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError>;

    /// The yaml's `metric_list`, in its order.
    fn metrics(&self) -> Vec<MetricSpec>;

    /// `metadata.version` in the yaml (results.json's `versions`).
    fn version(&self) -> Value {
        Value::from(0.0)
    }

    /// Which fields of the row to keep in the samples file's `doc` (everything `process` and
    /// `target` read). Default: all non-image fields.
    fn doc_fields(&self, row: &Row) -> Map<String, Value> {
        row.fields.clone()
    }
}
