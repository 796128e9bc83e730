//! `textvqa_val` (lmms_eval/tasks/textvqa/textvqa_val.yaml + _default_template_textvqa_yaml +
//! utils.py): TextVQA validation, 5,000 questions on scene text, VQA accuracy after
//! EvalAIAnswerProcessor. The default prompt has no OCR tokens (`ocr: false`).

use serde_json::{Map, Value};

use super::{dataset, image_visual, strings, text, value};
use crate::doc::{Prompt, Row};
use crate::error::DocError;
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::pystr;
use crate::metrics::vqa::{eval_ai_answer_processor, vqa_leave_one_out_accuracy};
use crate::task::{Context, DatasetSpec, MetricSpec, Task};

/// The template's `default` post_prompt (pre_prompt is empty, `ocr: false`).
const POST_PROMPT: &str = "\nAnswer the question using a single word or phrase.";

pub struct TextVqaVal;

impl Task for TextVqaVal {
    fn name(&self) -> &str {
        "textvqa_val"
    }

    fn dataset(&self) -> DatasetSpec {
        dataset(
            "lmms-lab/textvqa",
            None,
            "validation",
            &["question_id", "question", "answers", "image"],
        )
    }

    /// The yaml sets only `until: ["ASSISTANT:"]`, which lmms-eval's llava_onevision drops;
    /// it then generates up to its default 1024 tokens.
    fn max_new_tokens(&self) -> usize {
        1024
    }

    /// `textvqa_doc_to_text`: `f"{pre_prompt}{doc['question'].capitalize()}{ocr_ref}{post_prompt}"`
    /// (Python's `capitalize` lower-cases all but the first character).
    fn prompt(&self, row: &Row, _ctx: &Context) -> Result<Prompt, DocError> {
        let question = pystr::capitalize(text(&row.fields, "question")?);
        Ok(Prompt {
            text: format!("{question}{POST_PROMPT}"),
            visual: image_visual(row)?,
        })
    }

    /// `doc_to_target: "answer"`: there is no `answer` column, so lmms-eval renders the string
    /// as a jinja template, which gives `"answer"` itself.
    fn target(&self, doc: &Map<String, Value>) -> Value {
        doc.get("answer")
            .cloned()
            .unwrap_or_else(|| Value::from("answer"))
    }

    /// `textvqa_process_results`: `exact_match` is the leave-one-out VQA accuracy (0 without
    /// `answers`), `submission` the question id and the processed answer.
    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        _rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError> {
        let result = pystr::strip(filtered);
        let accuracy = match doc.get("answers") {
            None | Some(Value::Null) => 0.0,
            Some(_) => {
                let answers = strings(doc, "answers")?;
                vqa_leave_one_out_accuracy(&answers, result).ok_or_else(|| {
                    DocError::new("`answers` is empty (statistics.mean of no values)")
                })?
            }
        };
        let mut submission = Map::new();
        submission.insert("question_id".into(), value(doc, "question_id")?.clone());
        submission.insert(
            "answer".into(),
            Value::from(eval_ai_answer_processor(result)),
        );
        Ok(vec![
            ("exact_match".into(), Value::from(accuracy)),
            ("submission".into(), Value::Object(submission)),
        ])
    }

    /// The yaml has no `metadata` (lmms-eval 0.2.1's results.json writes
    /// ConfigurableTask.VERSION, "Yaml", for every task anyway).
    fn version(&self) -> Value {
        Value::Null
    }

    /// `exact_match` (mean). The yaml's second metric, `submission`, is aggregated by
    /// `textvqa_aggregate_submissions`, which writes the answers to a submission file and
    /// returns None (lmms-eval reports `submission,none: null`); it has no score, so it is
    /// not listed here, while its per-document values stay in the samples file.
    fn metrics(&self) -> Vec<MetricSpec> {
        vec![MetricSpec::mean("exact_match")]
    }
}
