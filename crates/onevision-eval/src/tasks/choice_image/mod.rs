//! Single-image (and image-sequence) multiple-choice recipes, as lmms-eval 0.2.1 defines them
//! with their `default` prompt kwargs: mmbench_en_dev, scienceqa_img, mmstar, realworldqa,
//! seedbench, mmmu_val. Each file follows its task's yaml and `utils.py`
//! (lmms_eval/tasks/<task>/), quirks included.

mod mmbench;
mod mmmu;
mod mmstar;
mod realworldqa;
mod scienceqa;
mod seedbench;

use serde_json::{Map, Value};

use crate::doc::{EncodedImage, Row};
use crate::error::DocError;
use crate::task::Task;

pub use mmbench::{mmbench_aggregate_dev_results_eval, MmbenchEnDev};
pub use mmmu::{extract_subset_name, MmmuVal};
pub use mmstar::{mmstar_aggregate_results, mmstar_exact_match, Mmstar};
pub use realworldqa::{
    number_words_to_digits_filter, realworldqa_multi_choice_regex_filter, RealWorldQa,
};
pub use scienceqa::{sqa_process_results, ScienceQaImg};
pub use seedbench::{seed_aggregation_result, SeedBench};

/// The tasks of this module, in lmms-eval's names.
pub fn tasks() -> Vec<Box<dyn Task>> {
    vec![
        Box::new(MmbenchEnDev),
        Box::new(ScienceQaImg),
        Box::new(Mmstar),
        Box::new(RealWorldQa),
        Box::new(SeedBench),
        Box::new(MmmuVal),
    ]
}

/// `doc[column].convert("RGB")` of a single-image column: its image (an error when the cell
/// is null, where Python's `None.convert` raises).
fn one_image(row: &Row, column: &str) -> Result<EncodedImage, DocError> {
    row.images(column)?
        .first()
        .cloned()
        .ok_or_else(|| DocError::new(format!("the `{column}` image is missing (null)")))
}

/// A document field every recipe here needs (Python's KeyError otherwise).
use crate::doc::field;

fn str_of<'a>(doc: &'a Map<String, Value>, key: &str) -> Result<&'a str, DocError> {
    crate::doc::field_str(doc, key)
}

/// `Value` of a per-document dict, keys in insertion order.
fn dict(pairs: Vec<(&str, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}
