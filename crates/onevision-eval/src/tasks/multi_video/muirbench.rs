//! `muirbench` (lmms_eval/tasks/muirbench/{muirbench.yaml,utils.py}): MUIRBENCH/MUIRBENCH test,
//! options lettered A.., the yaml's `flexible-extract` filter (utils.py's own
//! `MultiChoiceRegexFilter`: a leading `X.` -> `X`, else the whole response), and
//! `muir_aggregation`: the share of documents whose filtered response equals the answer
//! letter, both lowercased and stripped (a fraction, not x100).

use serde_json::{json, Map, Value};

use super::{field_str_list, field_string, strip_image_markers, Recipe};
use crate::doc::{field_str, Prompt, Row, Visual};
use crate::error::DocError;
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::pystr;
use crate::task::{Context, DatasetSpec, MetricSpec, Task};

const POST_PROMPT: &str = "\nAnswer with the option's letter from the given choices directly.";
const METRIC: &str = "muirbench_score_overall";

pub struct MuirBench;

/// muirbench/utils.py `MultiChoiceRegexFilter.apply`: `re.match(r"^\s*([A-Z])\.", resp)`'s
/// letter, else the response unchanged.
pub fn muir_multi_choice_regex_filter(resp: &str) -> String {
    let t = resp.trim_start_matches(pystr::is_py_space);
    let mut it = t.chars();
    match (it.next(), it.next()) {
        (Some(c @ 'A'..='Z'), Some('.')) => c.to_string(),
        _ => resp.to_string(),
    }
}

/// muirbench/utils.py `muir_aggregation`.
pub fn muir_aggregation(values: &[Value]) -> Result<f64, String> {
    if values.is_empty() {
        return Err("no documents (division by zero)".into());
    }
    let mut score = 0usize;
    for v in values {
        let get = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("a {METRIC} value without a string `{k}`: {v}"))
        };
        let norm = |s: &str| pystr::strip(&s.to_lowercase()).to_string();
        if norm(get("pred")?) == norm(get("answer")?) {
            score += 1;
        }
    }
    Ok(score as f64 / values.len() as f64)
}

impl Recipe for MuirBench {
    /// muirbench/utils.py `muir_doc_to_text` (pre_prompt "", the yaml's post_prompt).
    fn doc_to_text(&self, doc: &Map<String, Value>) -> Result<String, DocError> {
        let question = field_str(doc, "question")?;
        let choices = field_str_list(doc, "options")?;
        if choices.len() > 26 {
            return Err(DocError::new("muirbench: more than 26 options"));
        }
        let lines: Vec<String> = choices
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{}. {c}", (b'A' + i as u8) as char))
            .collect();
        Ok(format!("{question}\n{}{POST_PROMPT}", lines.join("\n")))
    }
}

impl Task for MuirBench {
    fn name(&self) -> &str {
        "muirbench"
    }

    fn dataset(&self) -> DatasetSpec {
        DatasetSpec {
            repo: "MUIRBENCH/MUIRBENCH".into(),
            config: None,
            split: "test".into(),
            columns: [
                "idx",
                "task",
                "image_relation",
                "image_type",
                "question",
                "options",
                "answer",
                "image_list",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    fn max_new_tokens(&self) -> usize {
        16
    }

    /// `muir_doc_to_visual`: the `image_list` images, in order (several -> the pad path).
    fn prompt(&self, row: &Row, _ctx: &Context) -> Result<Prompt, DocError> {
        let text = strip_image_markers(&self.doc_to_text(&row.fields)?);
        Ok(Prompt {
            text,
            visual: Visual::Images(row.images("image_list")?.to_vec()),
        })
    }

    fn target(&self, doc: &Map<String, Value>) -> Value {
        doc.get("answer").cloned().unwrap_or(Value::Null)
    }

    fn filter_name(&self) -> &str {
        "flexible-extract"
    }

    fn filter(&self, response: &str, _doc: &Map<String, Value>) -> String {
        muir_multi_choice_regex_filter(response)
    }

    /// `muir_process_results`: the row's identifiers with the prediction, for the aggregation.
    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        _rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError> {
        let get = |k: &str| crate::doc::field(doc, k).cloned();
        field_string(doc, "answer")?;
        let v = json!({
            "pred": filtered,
            "task": get("task")?,
            "idx": get("idx")?,
            "image_relation": get("image_relation")?,
            "answer": get("answer")?,
            "image_type": get("image_type")?,
        });
        Ok(vec![(METRIC.into(), v)])
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![MetricSpec::custom(METRIC, muir_aggregation)]
    }

    fn version(&self) -> Value {
        Value::from(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_and_aggregation() {
        assert_eq!(muir_multi_choice_regex_filter("B. cat"), "B");
        assert_eq!(muir_multi_choice_regex_filter("b. cat"), "b. cat");
        assert_eq!(muir_multi_choice_regex_filter("(B)"), "(B)");
        let v = vec![
            json!({"pred": "b", "answer": "B"}),
            json!({"pred": " C ", "answer": "c"}),
            json!({"pred": "(A)", "answer": "A"}),
        ];
        assert_eq!(muir_aggregation(&v).unwrap(), 2.0 / 3.0);
    }
}
