//! `mlvu` as lmms-eval 0.2.1 has it (lmms_eval/tasks/mlvu/{mlvu.yaml,utils.py}; later versions
//! renamed it `mlvu_dev` and changed prompt, parser and averaging): sy1998/temp, split test; the
//! question (its options are part of it) between a leading newline and "Best option: (";
//! `extract_characters_regex`: the character before the first `)`; `mlvu_aggregate_results`:
//! the micro accuracy x100 over the nine task types (the per-type lines are only logged).

use serde_json::{json, Map, Value};

use super::{first_existing, video_dir, Recipe};
use crate::doc::{field_str, Prompt, Row, Visual};
use crate::error::DocError;
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::video_choice::mlvu_extract_characters_regex;
use crate::task::{Context, DatasetSpec, MetricSpec, Task};

const METRIC: &str = "mlvu_percetion_score";
const TASK_TYPES: [&str; 9] = ["TR", "AR", "VS", "NQA", "ER", "PQA", "SSC", "AO", "AC"];

pub struct Mlvu;

/// utils.py `mlvu_aggregate_results`: `100 * correct / answered`; a task type outside
/// `TASK_TYPES` is an error, as its KeyError is upstream.
pub fn mlvu_aggregate_results(values: &[Value]) -> Result<f64, String> {
    let (mut correct, mut answered) = (0usize, 0usize);
    for v in values {
        let tt = v
            .get("task_type")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("a {METRIC} value without a string `task_type`: {v}"))?;
        if !TASK_TYPES.contains(&tt) {
            return Err(format!(
                "KeyError: task type {tt:?} is not one of {TASK_TYPES:?}"
            ));
        }
        answered += 1;
        if v.get("pred_answer") == v.get("answer") {
            correct += 1;
        }
    }
    Ok(if answered > 0 {
        (100 * correct) as f64 / answered as f64
    } else {
        0.0
    })
}

impl Recipe for Mlvu {
    /// utils.py `mlvu_doc_to_text`.
    fn doc_to_text(&self, doc: &Map<String, Value>) -> Result<String, DocError> {
        let question = field_str(doc, "question")?;
        Ok(format!(
            "\n{question}\nOnly give the best option.\n\nBest option: ("
        ))
    }
}

impl Task for Mlvu {
    fn name(&self) -> &str {
        "mlvu"
    }

    fn dataset(&self) -> DatasetSpec {
        DatasetSpec {
            repo: "sy1998/temp".into(),
            config: None,
            split: "test".into(),
            columns: ["video_name", "question", "answer", "task_type"]
                .map(String::from)
                .to_vec(),
        }
    }

    fn max_new_tokens(&self) -> usize {
        16
    }

    /// `mlvu_doc_to_visual`: `$HF_HOME/mlvu/<video_name>`; below `--video-dir DIR`:
    /// `DIR/<video_name>`.
    fn prompt(&self, row: &Row, ctx: &Context) -> Result<Prompt, DocError> {
        let text = self.doc_to_text(&row.fields)?;
        let dir = video_dir(ctx, self.name(), "DIR/<video_name>")?;
        let path = first_existing(self.name(), vec![dir.join(row.str("video_name")?)])?;
        Ok(Prompt {
            text,
            visual: Visual::Video(path),
        })
    }

    fn target(&self, doc: &Map<String, Value>) -> Value {
        doc.get("answer").cloned().unwrap_or(Value::Null)
    }

    /// utils.py `mlvu_process_results` (its `question_id` is the question text).
    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        _rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError> {
        let get = |k: &str| crate::doc::field(doc, k).cloned();
        let v = json!({
            "question_id": get("question")?,
            "task_type": get("task_type")?,
            "pred_answer": mlvu_extract_characters_regex(filtered),
            "answer": get("answer")?,
        });
        Ok(vec![(METRIC.into(), v)])
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![MetricSpec::custom(METRIC, mlvu_aggregate_results)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregation_is_micro_accuracy() {
        let v = vec![
            json!({"task_type": "TR", "pred_answer": "A", "answer": "A"}),
            json!({"task_type": "AC", "pred_answer": "", "answer": "B"}),
        ];
        assert_eq!(mlvu_aggregate_results(&v).unwrap(), 50.0);
        assert!(mlvu_aggregate_results(&[
            json!({"task_type": "XX", "pred_answer": "", "answer": ""})
        ])
        .is_err());
    }
}
