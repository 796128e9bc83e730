//! `docvqa_val` (lmms_eval/tasks/docvqa/docvqa_val.yaml + _default_template_docvqa_yaml):
//! DocVQA validation, 5,349 questions on document pages, scored by ANLS as lmms-eval 0.2.1
//! applies it to a list of references (a document scores 1 when any reference reaches 0.5).

use serde_json::{Map, Value};

use super::{dataset, image_visual, strings, text};
use crate::doc::{Prompt, Row};
use crate::error::DocError;
use crate::metrics::anls::anls_any_reference;
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::pystr;
use crate::task::{Context, DatasetSpec, MetricSpec, Task};

/// The template's `default` post_prompt (pre_prompt is empty).
const POST_PROMPT: &str = "\nAnswer the question using a single word or phrase.";

pub struct DocVqaVal;

impl Task for DocVqaVal {
    fn name(&self) -> &str {
        "docvqa_val"
    }

    fn dataset(&self) -> DatasetSpec {
        dataset(
            "lmms-lab/DocVQA",
            Some("DocVQA"),
            "validation",
            &["question", "answers", "image"],
        )
    }

    fn max_new_tokens(&self) -> usize {
        32
    }

    /// `docvqa_doc_to_text`: `f"{pre_prompt}{question}{post_prompt}"`.
    fn prompt(&self, row: &Row, _ctx: &Context) -> Result<Prompt, DocError> {
        Ok(Prompt {
            text: format!("{}{POST_PROMPT}", text(&row.fields, "question")?),
            visual: image_visual(row)?,
        })
    }

    /// `doc_to_target: "answers"` (the list).
    fn target(&self, doc: &Map<String, Value>) -> Value {
        doc.get("answers").cloned().unwrap_or(Value::Null)
    }

    /// ConfigurableTask.process_results without a task function, `multiple_target` set (the
    /// first document's target is a list): `anls` per reference, 1.0 if any is non-zero
    /// ([`anls_any_reference`]), not the best ANLS.
    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        _rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError> {
        let answers = strings(doc, "answers")?;
        let refs: Vec<&str> = answers.iter().map(String::as_str).collect();
        let v = anls_any_reference(&refs, pystr::strip(filtered));
        Ok(vec![("anls".into(), Value::from(v))])
    }

    /// The yaml has no `metadata` (lmms-eval 0.2.1's results.json writes
    /// ConfigurableTask.VERSION, "Yaml", for every task anyway).
    fn version(&self) -> Value {
        Value::Null
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![MetricSpec::mean("anls")]
    }
}
