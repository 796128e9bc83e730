//! `mme` (lmms_eval/tasks/mme/mme.yaml + utils.py): MME test, 2,374 yes/no questions, two per
//! image; per category acc + acc+, summed into the perception (10 categories, max 2000) and
//! cognition (4 categories, max 800) scores.

use serde_json::{Map, Value};

use super::{dataset, image_visual, text, value};
use crate::doc::{Prompt, Row};
use crate::error::DocError;
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::pystr;
use crate::metrics::yesno::{mme_aggregate_results, parse_pred_ans, YesNo};
use crate::task::{Context, DatasetSpec, MetricSpec, Task};

/// The yaml's `default` post_prompt (pre_prompt is empty).
const POST_PROMPT: &str = "\nAnswer the question using a single word or phrase.";

/// `replace_prompt`, taken out of the question when a post_prompt is set.
const REPLACE_PROMPT: &str = " Please answer yes or no.";

/// `eval_type_dict["Perception"]`; every other category counts as cognition.
const PERCEPTION: [&str; 10] = [
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
];

pub struct Mme;

impl Task for Mme {
    fn name(&self) -> &str {
        "mme"
    }

    fn dataset(&self) -> DatasetSpec {
        dataset(
            "lmms-lab/MME",
            None,
            "test",
            &["question_id", "question", "answer", "category", "image"],
        )
    }

    fn max_new_tokens(&self) -> usize {
        16
    }

    /// `mme_doc_to_text`: the stripped question without " Please answer yes or no.", then the
    /// post_prompt.
    fn prompt(&self, row: &Row, _ctx: &Context) -> Result<Prompt, DocError> {
        let question = pystr::strip(text(&row.fields, "question")?).replace(REPLACE_PROMPT, "");
        Ok(Prompt {
            text: format!("{question}{POST_PROMPT}"),
            visual: image_visual(row)?,
        })
    }

    /// `doc_to_target: "answer"`.
    fn target(&self, doc: &Map<String, Value>) -> Value {
        doc.get("answer").cloned().unwrap_or(Value::Null)
    }

    /// `mme_process_results`: parse_pred_ans against the ground truth (lower-cased,
    /// stripped, periods removed; must be yes or no), under the perception or cognition key
    /// by category.
    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        _rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError> {
        let pred = parse_pred_ans(pystr::strip(filtered));
        let gt_lower = text(doc, "answer")?.to_lowercase();
        let gt = pystr::strip(&gt_lower).replace('.', "");
        let gt = match gt.as_str() {
            "yes" => YesNo::Yes,
            "no" => YesNo::No,
            _ => {
                return Err(DocError::new(format!(
                    "MME's answer should be yes or no, got {gt:?}"
                )))
            }
        };
        let category = value(doc, "category")?;
        let perception = category.as_str().is_some_and(|c| PERCEPTION.contains(&c));
        let key = if perception {
            "mme_percetion_score"
        } else {
            "mme_cognition_score"
        };
        let mut record = Map::new();
        record.insert("question_id".into(), value(doc, "question_id")?.clone());
        record.insert("category".into(), category.clone());
        record.insert("score".into(), super::score(pred == gt));
        Ok(vec![(key.into(), Value::Object(record))])
    }

    /// Spelled as upstream (`percetion`).
    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::custom("mme_percetion_score", mme_aggregate_results),
            MetricSpec::custom("mme_cognition_score", mme_aggregate_results),
        ]
    }
}
