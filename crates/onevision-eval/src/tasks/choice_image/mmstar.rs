//! `mmstar` (lmms_eval/tasks/mmstar/mmstar.yaml, utils.py): the question as the dataset has
//! it (options inline), MMStar's own letter matcher, scores per category (six metrics) and
//! `average`, each the mean over its L2 categories.

use serde_json::{Map, Value};

use crate::doc::{Prompt, Row, Visual};
use crate::error::DocError;
use crate::metrics::aggregate::{as_number, py_mean};
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::pystr;
use crate::task::{Context, DatasetSpec, MetricSpec, Task};

use super::{dict, field, one_image, str_of};

const POST_PROMPT: &str = "\nAnswer with the option's letter from the given choices directly";
const REPLACE_PROMPT: &str = " Please answer yes or no.";

/// The yaml's metric_list: the six categories, then `average`.
const METRICS: [&str; 7] = [
    "coarse perception",
    "fine-grained perception",
    "instance reasoning",
    "logical reasoning",
    "science & technology",
    "math",
    "average",
];

pub struct Mmstar;

/// `mmstar_doc_to_text(doc, default kwargs)`: the stripped question, " Please answer yes or
/// no." removed (post_prompt is non-empty), then the post-prompt.
pub fn mmstar_doc_to_text(doc: &Map<String, Value>) -> Result<String, DocError> {
    let question = pystr::strip(str_of(doc, "question")?).replace(REPLACE_PROMPT, "");
    Ok(format!("{question}{POST_PROMPT}"))
}

/// `exact_match(pred, gt)` of mmstar/utils.py ("Brought from MMStar"): the answer letter
/// equals the prediction's first character, or the one after `(`, `option ` or
/// `the answer is ` (both lower-cased, stripped, newlines made spaces); an index past the
/// end is 0.0, as the IndexError it raises is caught.
pub fn mmstar_exact_match(pred: &str, gt: &str) -> f64 {
    let answer = pystr::strip(&gt.to_lowercase()).replace('\n', " ");
    let predict: Vec<char> = pystr::strip(&pred.to_lowercase())
        .replace('\n', " ")
        .chars()
        .collect();
    let at = |i: usize| predict.get(i).map(|c| c.to_string());
    let starts = |p: &str| {
        predict
            .iter()
            .take(p.chars().count())
            .copied()
            .eq(p.chars())
    };
    let Some(first) = at(0) else { return 0.0 };
    if answer == first {
        return 1.0;
    }
    let checks = [("(", 1), ("option ", 7), ("the answer is ", 14)];
    for (prefix, i) in checks {
        if starts(prefix) {
            match at(i) {
                None => return 0.0,
                Some(c) if c == answer => return 1.0,
                Some(_) => {}
            }
        }
    }
    0.0
}

impl Task for Mmstar {
    fn name(&self) -> &str {
        "mmstar"
    }

    fn dataset(&self) -> DatasetSpec {
        DatasetSpec {
            repo: "Lin-Chen/MMStar".into(),
            config: None,
            split: "val".into(),
            columns: [
                "index",
                "question",
                "image",
                "answer",
                "category",
                "l2_category",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    fn prompt(&self, row: &Row, _ctx: &Context) -> Result<Prompt, DocError> {
        Ok(Prompt {
            text: mmstar_doc_to_text(&row.fields)?,
            visual: Visual::Images(vec![one_image(row, "image")?]),
        })
    }

    fn target(&self, doc: &Map<String, Value>) -> Value {
        doc.get("answer").cloned().unwrap_or(Value::Null)
    }

    /// `mmstar_process_results`: `{category: v, "average": v}` with
    /// `v = {question_id: index, l2_category, score}`.
    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        _rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError> {
        let score = mmstar_exact_match(pystr::strip(filtered), str_of(doc, "answer")?);
        let category = str_of(doc, "category")?.to_string();
        let v = dict(vec![
            ("question_id", field(doc, "index")?.clone()),
            ("l2_category", field(doc, "l2_category")?.clone()),
            ("score", Value::from(score)),
        ]);
        let mut out = vec![(category.clone(), v.clone())];
        if category != "average" {
            out.push(("average".into(), v));
        }
        Ok(out)
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        METRICS
            .iter()
            .map(|m| MetricSpec::custom(m, mmstar_aggregate_results))
            .collect()
    }
}

/// `mmstar_aggregate_results`: the mean score per L2 category (first-seen order), then the
/// mean of those means (`sum(...) / len(...)`, summed left to right).
pub fn mmstar_aggregate_results(values: &[Value]) -> Result<f64, String> {
    let mut per_l2: Vec<(String, Vec<f64>)> = vec![];
    for v in values {
        let score = v
            .get("score")
            .and_then(as_number)
            .ok_or_else(|| format!("an mmstar value without a numeric `score`: {v}"))?;
        let l2 = match v.get("l2_category") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => return Err(format!("an mmstar value without `l2_category`: {v}")),
        };
        match per_l2.iter_mut().find(|(k, _)| *k == l2) {
            Some((_, s)) => s.push(score),
            None => per_l2.push((l2, vec![score])),
        }
    }
    if per_l2.is_empty() {
        return Err("no values to average".into());
    }
    let means: Vec<f64> = per_l2.iter().map(|(_, s)| py_mean(s)).collect();
    Ok(py_mean(&means))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_known_answers() {
        assert_eq!(mmstar_exact_match("B", "B"), 1.0);
        assert_eq!(mmstar_exact_match("(b) dog", "B"), 1.0);
        assert_eq!(mmstar_exact_match("Option C.", "C"), 1.0);
        assert_eq!(mmstar_exact_match("The answer is D", "D"), 1.0);
        assert_eq!(mmstar_exact_match("The answer is (A)", "A"), 0.0);
        assert_eq!(mmstar_exact_match("option ", "A"), 0.0);
        assert_eq!(mmstar_exact_match("", "A"), 0.0);
    }
}
