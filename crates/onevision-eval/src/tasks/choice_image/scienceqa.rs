//! `scienceqa_img` (lmms_eval/tasks/scienceqa/scienceqa_img.yaml, utils.py): the question with
//! lettered choices, scored by LLaVA's own exact-letter rule.

use serde_json::{Map, Value};

use crate::doc::{Prompt, Row, Visual};
use crate::error::DocError;
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::pyrepr::py_str_value;
use crate::metrics::pystr;
use crate::task::{Context, DatasetSpec, MetricSpec, Task};

use super::field;

const POST_PROMPT: &str = "\nAnswer with the option's letter from the given choices directly.";

pub struct ScienceQaImg;

fn choices(doc: &Map<String, Value>) -> Result<Vec<String>, DocError> {
    field(doc, "choices")?
        .as_array()
        .map(|a| a.iter().map(py_str_value).collect())
        .ok_or_else(|| DocError::new("`choices` should be a list"))
}

/// The option letters A, B, ... for `n` choices (`chr(ord("A") + i)`).
fn letters(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| char::from_u32('A' as u32 + i as u32).map_or_else(String::new, String::from))
        .collect()
}

/// `sqa_doc_to_text(doc, default kwargs)`: `"Context: {hint}\n"` when the hint is non-empty
/// (a null hint prints as "None", as the f-string does), the question, `"A. choice"` lines.
pub fn sqa_doc_to_text(doc: &Map<String, Value>) -> Result<String, DocError> {
    let cs = choices(doc)?;
    let choices_str = letters(cs.len())
        .iter()
        .zip(&cs)
        .map(|(o, c)| format!("{o}. {c}"))
        .collect::<Vec<_>>()
        .join("\n");
    let context = match field(doc, "hint")? {
        Value::String(h) if !h.is_empty() => format!("Context: {h}\n"),
        Value::String(_) => String::new(),
        other => py_str_value(other),
    };
    let question = py_str_value(field(doc, "question")?);
    Ok(format!("{context}{question}\n{choices_str}{POST_PROMPT}"))
}

/// `sqa_doc_to_target`: the letter of `choices[answer]` (Python indexing: -1 is the last).
pub fn sqa_doc_to_target(doc: &Map<String, Value>) -> Result<String, DocError> {
    let n = choices(doc)?.len() as i64;
    let a = field(doc, "answer")?
        .as_i64()
        .ok_or_else(|| DocError::new("`answer` should be an integer"))?;
    let i = if a < 0 { a + n } else { a };
    if !(0..n).contains(&i) {
        return Err(DocError::new(format!(
            "answer {a} is out of range for {n} choices (IndexError)"
        )));
    }
    Ok(letters(n as usize)[i as usize].clone())
}

/// `sqa_process_results`: 1.0 when the stripped, lower-cased prediction is the target letter;
/// "how llava parses it" also accepts `X.` forms whose first character is upper case, which
/// after lower-casing can only be a character without a lower-case form, never the letter.
pub fn sqa_process_results(target: &str, pred: &str) -> f64 {
    let target = pystr::strip(target).to_lowercase();
    let pred = pystr::strip(pred).to_lowercase();
    if pred == target {
        return 1.0;
    }
    let c: Vec<char> = pred.chars().collect();
    if c.len() >= 2 && c[0].is_uppercase() && c[1] == '.' {
        return if c[0].to_string() == target { 1.0 } else { 0.0 };
    }
    0.0
}

impl Task for ScienceQaImg {
    fn name(&self) -> &str {
        "scienceqa_img"
    }

    fn dataset(&self) -> DatasetSpec {
        DatasetSpec {
            repo: "lmms-lab/ScienceQA".into(),
            config: Some("ScienceQA-IMG".into()),
            split: "test".into(),
            columns: ["image", "question", "choices", "answer", "hint"]
                .map(String::from)
                .to_vec(),
        }
    }

    fn max_new_tokens(&self) -> usize {
        16
    }

    /// `sqa_doc_to_visual`: the image, or none when the cell is null.
    fn prompt(&self, row: &Row, _ctx: &Context) -> Result<Prompt, DocError> {
        let images = row.images("image")?;
        Ok(Prompt {
            text: sqa_doc_to_text(&row.fields)?,
            visual: if images.is_empty() {
                Visual::None
            } else {
                Visual::Images(images[..1].to_vec())
            },
        })
    }

    fn target(&self, doc: &Map<String, Value>) -> Value {
        sqa_doc_to_target(doc).map_or(Value::Null, Value::from)
    }

    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        _rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError> {
        let target = sqa_doc_to_target(doc)?;
        Ok(vec![(
            "exact_match".into(),
            Value::from(sqa_process_results(&target, filtered)),
        )])
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![MetricSpec::mean("exact_match")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letter_rule() {
        assert_eq!(sqa_process_results("B", " b "), 1.0);
        assert_eq!(sqa_process_results("B", "B."), 0.0);
        assert_eq!(sqa_process_results("B", "(B)"), 0.0);
        // 'ϒ' has no lower-case form: the `X.` branch, which cannot match.
        assert_eq!(sqa_process_results("B", "ϒ."), 0.0);
    }
}
