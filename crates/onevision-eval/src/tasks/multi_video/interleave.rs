//! The `llava_interleave_bench` group (lmms_eval/tasks/llava_interleave_bench/
//! {interleave_bench,in_domain,out_of_domain,multi_view_in_domain}.yaml, utils.py):
//! `llava_interleave_bench_in_domain`, `_out_domain` and `_multi_view` on
//! lmms-lab/LLaVA-NeXT-Interleave-Bench (configs in_domain, out_of_domain,
//! multi_view_in_domain; split test). Multiple-choice documents score by `mcq_acc`, open-ended
//! ones by ROUGE-L F (the `rouge` package); `overall_score` averages the documents of each
//! category of `utils.overall_score`'s table, then the categories (sub-tasks outside the table
//! count for nothing).
//!
//! Prompts: the default kwargs have empty post-prompts, so in/out-of-domain prompts are the
//! question as is; multi-view prompts are `json.dumps(doc["conversations"])`. In lmms-eval a
//! multi-view context with `<image>` markers is valid JSON, which llava_onevision unpacks into a
//! conversation (turn values alternating user/assistant); our [`Prompt`] has one user text, so
//! that case sends the single turn's value (several turns: their values joined by newlines),
//! markers stripped. Without markers lmms-eval sends the JSON text itself, and so do we.

use serde_json::{json, Map, Value};

use super::{field_str, strip_image_markers, Recipe};
use crate::doc::{Prompt, Row, Visual};
use crate::error::DocError;
use crate::metrics::mcq_acc::mcq_acc;
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::pyrepr::py_json_dumps;
use crate::metrics::rouge::rouge_l_f;
use crate::task::{Context, DatasetSpec, MetricSpec, Task};

const GROUP: &str = "llava_interleave_bench";
const METRIC: &str = "overall_score";

/// utils.py `overall_score`'s categories and their sub-tasks, in its order.
const CATEGORIES: [(&str, &[&str]); 18] = [
    (
        "Spot-the-Diff",
        &["Spot-the-Diff", "Birds-to-Words", "CLEVR-Change"],
    ),
    ("Image-Edit", &["IEdit", "HQ-Edit", "MagicBrush"]),
    (
        "Visual-Story-Telling",
        &["AESOP", "FlintstonesSV", "PororoSV", "VIST"],
    ),
    ("Visual-Cloze", &["COMICS_Dialogue", "RecipeQA_VisualCloze"]),
    ("Text-Rich-VQA", &["WebQA", "TQA", "OCR-VQA", "DocVQA"]),
    (
        "Multi-Image-VQA",
        &[
            "MIT-States_StateCoherence",
            "MIT-States_PropertyCoherence",
            "VISION",
            "RecipeQA_ImageCoherence",
        ],
    ),
    ("Puzzle", &["RAVEN"]),
    ("NLVR2", &["NLVR2_Mantis"]),
    ("QBench", &["QBench"]),
    ("ScanQA", &["ScanQA"]),
    ("ALFRED", &["ALFRED"]),
    ("nuscenes", &["nuscenes"]),
    ("ScanNet_chat", &["ScanNet_chat"]),
    ("ScanNet_task", &["ScanNet_task"]),
    ("BLINK", &["BLINK"]),
    ("MathVerse", &["MathVerse"]),
    ("SciVerse", &["SciVerse"]),
    ("Mantis", &["Mantis"]),
];

/// `doc_to_visual` looks at `image_0` .. `image_15`.
const MAX_VISUALS: usize = 16;

pub struct Interleave {
    name: &'static str,
    config: &'static str,
    /// multi_view_in_domain: `doc_to_text_conversation` instead of `doc_to_text`.
    conversation: bool,
}

pub fn tasks() -> Vec<Box<dyn Recipe>> {
    vec![
        Box::new(Interleave {
            name: "llava_interleave_bench_in_domain",
            config: "in_domain",
            conversation: false,
        }),
        Box::new(Interleave {
            name: "llava_interleave_bench_out_domain",
            config: "out_of_domain",
            conversation: false,
        }),
        Box::new(Interleave {
            name: "llava_interleave_bench_multi_view",
            config: "multi_view_in_domain",
            conversation: true,
        }),
    ]
}

/// utils.py `oe_rogue(answer, pred)`: 0 for an empty prediction, else the ROUGE-L F of the
/// prediction's first 512 characters against the answer.
pub fn oe_rogue(answer: &str, pred: &str) -> Result<Value, DocError> {
    if pred.is_empty() {
        return Ok(Value::from(0));
    }
    let pred: String = pred.chars().take(512).collect();
    rouge_l_f(&pred, answer)
        .map(Value::from)
        .map_err(DocError::new)
}

/// utils.py `overall_score`.
pub fn overall_score(values: &[Value]) -> Result<f64, String> {
    let mut category_scores = vec![];
    for (_, subtasks) in CATEGORIES {
        let mut score = 0.0;
        let mut count = 0usize;
        for v in values {
            let sub = v.get("sub_task").and_then(Value::as_str).unwrap_or("");
            if subtasks.contains(&sub) {
                count += 1;
                score += v
                    .get("score")
                    .and_then(Value::as_f64)
                    .ok_or_else(|| format!("an {METRIC} value without a numeric `score`: {v}"))?;
            }
        }
        if count > 0 {
            category_scores.push(score / count as f64);
        }
    }
    if category_scores.is_empty() {
        return Err(
            "No subtasks were matched in the results. Check if the subtask names are correct."
                .into(),
        );
    }
    let total: f64 = category_scores.iter().fold(0.0, |a, b| a + b);
    Ok(total / category_scores.len() as f64)
}

impl Recipe for Interleave {
    /// utils.py `doc_to_text` (empty post-prompts: the question) or
    /// `doc_to_text_conversation` (`json.dumps` of a list, a string as is).
    fn doc_to_text(&self, doc: &Map<String, Value>) -> Result<String, DocError> {
        if self.conversation {
            return match doc.get("conversations") {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(v @ Value::Array(_)) => Ok(py_json_dumps(v)),
                Some(v) => Err(DocError::new(format!(
                    "`conversations` should be a list of turns, got {v}"
                ))),
                None => Err(DocError::new("the document has no `conversations` field")),
            };
        }
        field_str(doc, "question").map(String::from)
    }
}

impl Interleave {
    /// What our single user message carries for lmms-eval's context (see the module doc).
    fn model_text(&self, context: &str) -> String {
        if self.conversation && context.contains("<image>") {
            if let Ok(Value::Array(turns)) = serde_json::from_str::<Value>(context) {
                let values: Vec<String> = turns
                    .iter()
                    .map(|t| match t.get("value") {
                        Some(Value::String(s)) => s.clone(),
                        _ => String::new(),
                    })
                    .collect();
                return strip_image_markers(&values.join("\n"));
            }
        }
        strip_image_markers(context)
    }
}

impl Task for Interleave {
    fn name(&self) -> &str {
        self.name
    }

    fn group(&self) -> Option<&str> {
        Some(GROUP)
    }

    fn dataset(&self) -> DatasetSpec {
        let text = if self.conversation {
            "conversations"
        } else {
            "question"
        };
        DatasetSpec {
            repo: "lmms-lab/LLaVA-NeXT-Interleave-Bench".into(),
            config: Some(self.config.into()),
            split: "test".into(),
            columns: [
                "sample_id",
                "sub_task",
                text,
                "answer",
                "question_type",
                "image_0",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    fn max_new_tokens(&self) -> usize {
        16
    }

    /// `doc_to_visual`: `image_0` .. `image_15` where present and not null, in order.
    fn prompt(&self, row: &Row, _ctx: &Context) -> Result<Prompt, DocError> {
        let text = self.model_text(&self.doc_to_text(&row.fields)?);
        let mut images = vec![];
        for i in 0..MAX_VISUALS {
            if let Some(imgs) = row.images.get(&format!("image_{i}")) {
                images.extend(imgs.iter().cloned());
            }
        }
        Ok(Prompt {
            text,
            visual: Visual::Images(images),
        })
    }

    fn target(&self, doc: &Map<String, Value>) -> Value {
        doc.get("answer").cloned().unwrap_or(Value::Null)
    }

    /// utils.py `interleave_process_results`.
    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        _rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError> {
        let get = |k: &str| crate::doc::field(doc, k).cloned();
        let sample_id = get("sample_id")?;
        let answer = field_str(doc, "answer")?;
        let question_type = field_str(doc, "question_type")?;
        let score = match question_type {
            "multi-choice" => Value::from(mcq_acc(answer, filtered)),
            "open-ended" => oe_rogue(answer, filtered)?,
            other => return Err(DocError::new(format!("Unknown question type: {other}"))),
        };
        let v = json!({
            "sample_id": sample_id,
            "sub_task": get("sub_task")?,
            "question_type": question_type,
            "answer": answer,
            "parsed_pred": filtered,
            "score": score,
        });
        Ok(vec![(METRIC.into(), v)])
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![MetricSpec::custom(METRIC, overall_score)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overall_score_averages_categories() {
        let v = vec![
            json!({"sub_task": "IEdit", "score": 1}),
            json!({"sub_task": "HQ-Edit", "score": 0.5}),
            json!({"sub_task": "RAVEN", "score": 0}),
            json!({"sub_task": "not-listed", "score": 1}),
        ];
        assert_eq!(overall_score(&v).unwrap(), 0.75 / 2.0);
        assert!(overall_score(&[json!({"sub_task": "x", "score": 1})]).is_err());
    }

    #[test]
    fn open_ended_errors_like_rouge() {
        assert_eq!(oe_rogue("a cat", "").unwrap(), Value::from(0));
        assert!(oe_rogue("a cat", "...").is_err());
    }

    #[test]
    fn multi_view_text() {
        let t = &tasks()[2];
        let doc: Map<String, Value> = serde_json::from_value(json!({
            "conversations": [{"from": "human", "value": "<image>\n<image>\nWhat color?"}]
        }))
        .unwrap();
        let ctx = t.doc_to_text(&doc).unwrap();
        assert_eq!(
            ctx,
            r#"[{"from": "human", "value": "<image>\n<image>\nWhat color?"}]"#
        );
        let row = Row {
            fields: doc,
            ..Default::default()
        };
        assert_eq!(
            t.prompt(&row, &Context::default()).unwrap().text,
            "What color?"
        );
    }
}
