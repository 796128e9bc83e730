//! `egoschema_subset` (lmms_eval/tasks/egoschema/{egoschema_subset.yaml,_default_template_yaml,
//! utils.py}): lmms-lab/egoschema (config Subset, split test, the 500 questions with public
//! answers); the question, its five options and the option-letter post-prompt; egoschema's own
//! `parse_multi_choice_response` (random fallback) mapped to an index 0-4 (-1 otherwise);
//! `score` = the share of documents whose index, as text, equals `str(answer)`.
//!
//! The yaml's other metric, `submission`, aggregates with `egoschema_aggregate_mc`, which writes
//! the EgoSchema server's submission file and returns None (results.json gets
//! `"submission,none": null`). It carries no score, so it is not among [`Task::metrics`]; the
//! per-document `submission` values (`{video_idx: index}`) are still written to the samples.

use serde_json::{json, Map, Value};

use super::{field_str_list, first_existing, video_dir, Recipe};
use crate::doc::{field_str, Prompt, Row, Visual};
use crate::error::DocError;
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::pyrepr::py_str_value;
use crate::metrics::pystr;
use crate::metrics::video_choice::egoschema_parse_multi_choice_response;
use crate::task::{Context, DatasetSpec, MetricSpec, Task};

const OPTIONS: [&str; 5] = ["A", "B", "C", "D", "E"];
const POST_PROMPT: &str = "\nAnswer with the option's letter from the given choices directly.";

pub struct EgoSchemaSubset;

/// utils.py `egoschema_aggregate_score`: `str(ground_truth) == str(pred)`, averaged.
pub fn egoschema_aggregate_score(values: &[Value]) -> Result<f64, String> {
    if values.is_empty() {
        return Err("no documents (division by zero)".into());
    }
    let mut yes = 0usize;
    for v in values {
        let (Some(gt), Some(pred)) = (v.get("ground_truth"), v.get("pred")) else {
            return Err(format!(
                "a score value without `ground_truth` and `pred`: {v}"
            ));
        };
        if py_str_value(gt) == py_str_value(pred) {
            yes += 1;
        }
    }
    Ok(yes as f64 / values.len() as f64)
}

impl Recipe for EgoSchemaSubset {
    /// utils.py `egoschema_doc_to_text` (the default pre/post prompts are empty; a document
    /// with `option` gets the option-letter post-prompt).
    fn doc_to_text(&self, doc: &Map<String, Value>) -> Result<String, DocError> {
        let mut question = field_str(doc, "question")?.to_string();
        let mut post = "";
        if doc.contains_key("option") {
            for op in field_str_list(doc, "option")? {
                question.push('\n');
                question.push_str(&op);
            }
            post = POST_PROMPT;
        }
        Ok(format!("{question}{post}"))
    }
}

impl Task for EgoSchemaSubset {
    fn name(&self) -> &str {
        "egoschema_subset"
    }

    fn dataset(&self) -> DatasetSpec {
        DatasetSpec {
            repo: "lmms-lab/egoschema".into(),
            config: Some("Subset".into()),
            split: "test".into(),
            columns: ["video_idx", "question", "option", "answer"]
                .map(String::from)
                .to_vec(),
        }
    }

    /// `egoschema_doc_to_visual`: `$HF_HOME/egoschema/videos/<video_idx>.mp4`, then `.MP4`;
    /// below `--video-dir DIR`: `DIR/videos/<video_idx>.mp4`.
    fn prompt(&self, row: &Row, ctx: &Context) -> Result<Prompt, DocError> {
        let text = self.doc_to_text(&row.fields)?;
        let dir = video_dir(ctx, self.name(), "DIR/videos/<video_idx>.mp4")?.join("videos");
        let id = row.str("video_idx")?;
        let path = first_existing(
            self.name(),
            vec![dir.join(format!("{id}.mp4")), dir.join(format!("{id}.MP4"))],
        )?;
        Ok(Prompt {
            text,
            visual: Visual::Video(path),
        })
    }

    fn target(&self, doc: &Map<String, Value>) -> Value {
        doc.get("answer").cloned().unwrap_or(Value::Null)
    }

    /// utils.py `egoschema_process_results_generation`.
    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError> {
        let option = field_str_list(doc, "option")?;
        if option.len() < 5 {
            return Err(DocError::new(format!(
                "egoschema: {} options, five expected",
                option.len()
            )));
        }
        let index2ans: Vec<(String, String)> = OPTIONS
            .iter()
            .zip(&option)
            .map(|(l, o)| (l.to_string(), pystr::strip(o).to_string()))
            .collect();
        let all_choices: Vec<String> = OPTIONS.iter().map(|s| s.to_string()).collect();
        let parsed =
            egoschema_parse_multi_choice_response(filtered, &all_choices, &index2ans, rng)?;
        let index = OPTIONS
            .iter()
            .position(|l| *l == parsed)
            .map(|i| i as i64)
            .unwrap_or(-1);
        let video = field_str(doc, "video_idx")?;
        let answer = doc
            .get("answer")
            .cloned()
            .ok_or_else(|| DocError::new("the document has no `answer` field"))?;
        Ok(vec![
            ("submission".into(), json!({ video: index })),
            (
                "score".into(),
                json!({"pred": index, "ground_truth": answer}),
            ),
        ])
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![MetricSpec::custom("score", egoschema_aggregate_score)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_compares_as_text() {
        let v = vec![
            json!({"pred": 3, "ground_truth": "3"}),
            json!({"pred": 3, "ground_truth": 3}),
            json!({"pred": -1, "ground_truth": "0"}),
        ];
        assert_eq!(egoschema_aggregate_score(&v).unwrap(), 2.0 / 3.0);
    }
}
