//! Single-image recipes with open or letter answers scored by string metrics: ai2d, chartqa,
//! docvqa_val, textvqa_val, pope, mme (lmms-eval 0.2.1's yamls and utils.py, `default`
//! prompt kwargs). Each module follows one lmms_eval/tasks/<name>/ directory.
//!
//! What lmms-eval's evaluator does around every recipe here: the response is the model's
//! output `.strip()`ed (llava_onevision), the yaml's filter (or the implicit `take_first`)
//! runs, then ConfigurableTask.process_results strips `results[0]` again and calls the task's
//! `process_results`, or, with none in the yaml (ai2d, docvqa_val), scores the yaml's metric
//! against `doc_to_target` itself.

mod ai2d;
mod chartqa;
mod docvqa;
mod mme;
mod pope;
mod textvqa;

use serde_json::{Map, Value};

use crate::doc::{field_str, Row, Visual};
use crate::error::DocError;
use crate::task::{DatasetSpec, Task};

pub use ai2d::Ai2d;
pub use chartqa::ChartQa;
pub use docvqa::DocVqaVal;
pub use mme::Mme;
pub use pope::Pope;
pub use textvqa::TextVqaVal;

/// The tasks of this module, in lmms-eval's names.
pub fn tasks() -> Vec<Box<dyn Task>> {
    vec![
        Box::new(Ai2d),
        Box::new(ChartQa),
        Box::new(DocVqaVal),
        Box::new(TextVqaVal),
        Box::new(Pope),
        Box::new(Mme),
    ]
}

/// `DatasetSpec` from the yaml's `dataset_path` / `dataset_name` / `test_split`.
fn dataset(repo: &str, config: Option<&str>, split: &str, columns: &[&str]) -> DatasetSpec {
    DatasetSpec {
        repo: repo.into(),
        config: config.map(Into::into),
        split: split.into(),
        columns: columns.iter().map(|c| c.to_string()).collect(),
    }
}

/// `[doc["image"].convert("RGB")]`, the doc_to_visual of every task here (a missing image
/// fails the document, as `None.convert` does upstream).
fn image_visual(row: &Row) -> Result<Visual, DocError> {
    let images = row.images("image")?;
    match images.first() {
        Some(img) => Ok(Visual::Images(vec![img.clone()])),
        None => Err(DocError::new("the `image` cell is empty")),
    }
}

/// A string field, as `doc[key]` where the recipe formats or compares it.
fn text<'a>(doc: &'a Map<String, Value>, key: &str) -> Result<&'a str, DocError> {
    field_str(doc, key)
}

/// A field that must be there (`doc[key]`), any type.
use crate::doc::field as value;

/// A list of strings (`answers`, `options`).
fn strings(doc: &Map<String, Value>, key: &str) -> Result<Vec<String>, DocError> {
    match value(doc, key)? {
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(DocError::new(format!(
                    "`{key}` should hold strings, got {other}"
                ))),
            })
            .collect(),
        other => Err(DocError::new(format!(
            "`{key}` should be a list of strings, got {other}"
        ))),
    }
}

/// `1.0 if ok else 0.0`, as the recipes return their scores.
fn score(ok: bool) -> Value {
    Value::from(if ok { 1.0 } else { 0.0 })
}
