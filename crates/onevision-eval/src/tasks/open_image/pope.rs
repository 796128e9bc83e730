//! `pope` (lmms_eval/tasks/pope/pope.yaml + utils.py): POPE test, 9,000 yes/no object
//! questions (adversarial, popular, random); exact yes/no match, precision, recall, F1 and
//! the ground truth's yes ratio.

use serde_json::{Map, Value};

use super::{dataset, image_visual, text, value};
use crate::doc::{Prompt, Row};
use crate::error::DocError;
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::pystr;
use crate::metrics::yesno::{
    pope_aggregate_accuracy, pope_aggregate_f1_score, pope_aggregate_precision,
    pope_aggregate_recall, pope_aggregate_yes_ratio,
};
use crate::task::{Context, DatasetSpec, MetricSpec, Task};

const METRICS: [&str; 5] = [
    "pope_accuracy",
    "pope_precision",
    "pope_recall",
    "pope_f1_score",
    "pope_yes_ratio",
];

pub struct Pope;

impl Task for Pope {
    fn name(&self) -> &str {
        "pope"
    }

    fn dataset(&self) -> DatasetSpec {
        dataset(
            "lmms-lab/POPE",
            None,
            "test",
            &["question_id", "question", "answer", "image"],
        )
    }

    fn max_new_tokens(&self) -> usize {
        128
    }

    /// `pope_doc_to_text` (the yaml has no prompt kwargs).
    fn prompt(&self, row: &Row, _ctx: &Context) -> Result<Prompt, DocError> {
        let question = pystr::strip(text(&row.fields, "question")?);
        Ok(Prompt {
            text: format!("{question}\nAnswer the question using a single word or phrase."),
            visual: image_visual(row)?,
        })
    }

    /// `doc_to_target: "answer"`.
    fn target(&self, doc: &Map<String, Value>) -> Value {
        doc.get("answer").cloned().unwrap_or(Value::Null)
    }

    /// `pope_process_results`: the lower-cased, stripped prediction against the ground truth
    /// (which must be yes or no), the same record under all five metrics.
    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        _rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError> {
        let pred_lower = filtered.to_lowercase();
        let pred = pystr::strip(&pred_lower);
        let gt_lower = text(doc, "answer")?.to_lowercase();
        let gt = pystr::strip(&gt_lower);
        if gt != "yes" && gt != "no" {
            return Err(DocError::new(format!(
                "POPE's answer should be yes or no, got {gt:?}"
            )));
        }
        let mut record = Map::new();
        record.insert("question_id".into(), value(doc, "question_id")?.clone());
        record.insert("score".into(), super::score(pred == gt));
        record.insert("prediction".into(), Value::from(pred));
        record.insert("ground_truth".into(), Value::from(gt));
        let record = Value::Object(record);
        Ok(METRICS
            .iter()
            .map(|m| (m.to_string(), record.clone()))
            .collect())
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::custom("pope_accuracy", pope_aggregate_accuracy),
            MetricSpec::custom("pope_precision", pope_aggregate_precision),
            MetricSpec::custom("pope_recall", pope_aggregate_recall),
            MetricSpec::custom("pope_f1_score", pope_aggregate_f1_score),
            MetricSpec::custom("pope_yes_ratio", pope_aggregate_yes_ratio),
        ]
    }
}
