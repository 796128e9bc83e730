//! `chartqa` (lmms_eval/tasks/chartqa/chartqa.yaml + utils.py): ChartQA test, 1,250 human and
//! 1,250 augmented questions; relaxed accuracy (5 % for numbers), overall and per split.

use serde_json::{Map, Value};

use super::{dataset, image_visual, score, text, value};
use crate::doc::{Prompt, Row};
use crate::error::DocError;
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::pystr;
use crate::metrics::relaxed::relaxed_correctness;
use crate::task::{Context, DatasetSpec, MetricSpec, Task};

/// The yaml's `default` post_prompt (pre_prompt is empty).
const POST_PROMPT: &str = "\nAnswer the question with a single word.";

pub struct ChartQa;

impl Task for ChartQa {
    fn name(&self) -> &str {
        "chartqa"
    }

    fn dataset(&self) -> DatasetSpec {
        dataset(
            "lmms-lab/ChartQA",
            None,
            "test",
            &["type", "question", "answer", "image"],
        )
    }

    fn max_new_tokens(&self) -> usize {
        16
    }

    /// `chartqa_doc_to_text`: `f"{pre_prompt}{question}{post_prompt}"`.
    fn prompt(&self, row: &Row, _ctx: &Context) -> Result<Prompt, DocError> {
        Ok(Prompt {
            text: format!("{}{POST_PROMPT}", text(&row.fields, "question")?),
            visual: image_visual(row)?,
        })
    }

    /// `doc_to_target: "answer"`.
    fn target(&self, doc: &Map<String, Value>) -> Value {
        doc.get("answer").cloned().unwrap_or(Value::Null)
    }

    /// `chartqa_process_results`: relaxed_correctness as 1.0/0.0 under `relaxed_overall` and
    /// under `relaxed_human_split` (type `human_test`) or `relaxed_augmented_split` (any
    /// other type).
    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        _rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError> {
        let pred = pystr::strip(filtered);
        let human = value(doc, "type")?.as_str() == Some("human_test");
        let s = score(relaxed_correctness(pred, text(doc, "answer")?, 0.05));
        let split = if human {
            "relaxed_human_split"
        } else {
            "relaxed_augmented_split"
        };
        Ok(vec![
            ("relaxed_overall".into(), s.clone()),
            (split.into(), s),
        ])
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![
            MetricSpec::mean("relaxed_overall"),
            MetricSpec::mean("relaxed_human_split"),
            MetricSpec::mean("relaxed_augmented_split"),
        ]
    }
}
