//! `seedbench` (lmms_eval/tasks/seedbench/seedbench.yaml, utils.py): every row of SEED-Bench's
//! test split, the image questions and the video ones alike (the yaml keeps both; a video
//! row's frames are its `image` list, given to the model as images), scored on the first
//! character of the answer: `seed_image`, `seed_video` and `seed_all`.

use serde_json::{Map, Value};

use crate::doc::{Prompt, Row, Visual};
use crate::error::DocError;
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::pyrepr::py_str_value;
use crate::metrics::pystr;
use crate::task::{Context, DatasetSpec, MetricSpec, Task};

use super::{dict, field};

pub struct SeedBench;

/// `seed_doc_to_text`: the question, `A. ..` to `D. ..`, the letter instruction.
pub fn seed_doc_to_text(doc: &Map<String, Value>) -> Result<String, DocError> {
    let q = py_str_value(field(doc, "question")?);
    let c = |k: &str| field(doc, k).map(py_str_value);
    Ok(format!(
        "{q}\nA. {}\nB. {}\nC. {}\nD. {}\nAnswer with the option's letter from the given choices directly.",
        c("choice_a")?,
        c("choice_b")?,
        c("choice_c")?,
        c("choice_d")?
    ))
}

impl Task for SeedBench {
    fn name(&self) -> &str {
        "seedbench"
    }

    fn dataset(&self) -> DatasetSpec {
        DatasetSpec {
            repo: "lmms-lab/SEED-Bench".into(),
            config: None,
            split: "test".into(),
            columns: [
                "question",
                "choice_a",
                "choice_b",
                "choice_c",
                "choice_d",
                "answer",
                "data_type",
                "question_id",
                "image",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    /// No `max_new_tokens` in the yaml (its `until` is dropped by the model wrapper, its
    /// `image_aspect_ratio` ignored): the wrapper's 1024.
    fn max_new_tokens(&self) -> usize {
        1024
    }

    /// `seed_doc_to_visual`: every image of the row, in order.
    fn prompt(&self, row: &Row, _ctx: &Context) -> Result<Prompt, DocError> {
        Ok(Prompt {
            text: seed_doc_to_text(&row.fields)?,
            visual: Visual::Images(row.images("image")?.to_vec()),
        })
    }

    fn target(&self, doc: &Map<String, Value>) -> Value {
        doc.get("answer").cloned().unwrap_or(Value::Null)
    }

    /// `seed_process_result`: the first character of the stripped response, under
    /// `seed_{data_type}` and `seed_all`.
    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        _rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError> {
        let pred = pystr::strip(filtered);
        let pred: String = if pred.chars().count() > 1 {
            pred.chars().take(1).collect()
        } else {
            pred.to_string()
        };
        let data_type = py_str_value(field(doc, "data_type")?);
        let v = dict(vec![
            ("pred", Value::from(pred)),
            ("answer", field(doc, "answer")?.clone()),
            ("question_id", field(doc, "question_id")?.clone()),
        ]);
        let key = format!("seed_{data_type}");
        let mut out = vec![(key.clone(), v.clone())];
        if key != "seed_all" {
            out.push(("seed_all".into(), v));
        }
        Ok(out)
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        ["seed_image", "seed_video", "seed_all"]
            .iter()
            .map(|m| MetricSpec::custom(m, seed_aggregation_result))
            .collect()
    }
}

/// `seed_aggregation_result`: the fraction whose `pred.lower().strip()` equals
/// `answer.lower().strip()`.
pub fn seed_aggregation_result(values: &[Value]) -> Result<f64, String> {
    let norm = |v: &Value, k: &str| -> Result<String, String> {
        match v.get(k) {
            Some(Value::String(s)) => Ok(pystr::strip(&s.to_lowercase()).to_string()),
            _ => Err(format!("a seedbench value without a string `{k}`: {v}")),
        }
    };
    let mut correct = 0usize;
    for v in values {
        if norm(v, "pred")? == norm(v, "answer")? {
            correct += 1;
        }
    }
    if values.is_empty() {
        return Err("no values to average (ZeroDivisionError)".into());
    }
    Ok(correct as f64 / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn first_character() {
        let doc = json!({"answer": "B", "data_type": "video", "question_id": "7"});
        let mut rng = PyRandom::seed(0);
        let out = SeedBench
            .process(doc.as_object().unwrap(), " b. dog ", &mut rng)
            .unwrap();
        assert_eq!(out[0].0, "seed_video");
        assert_eq!(out[1].0, "seed_all");
        assert_eq!(seed_aggregation_result(&[out[0].1.clone()]).unwrap(), 1.0);
    }
}
