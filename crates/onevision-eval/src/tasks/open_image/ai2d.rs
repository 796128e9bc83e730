//! `ai2d` (lmms_eval/tasks/ai2d/ai2d.yaml + utils.py): AI2D test, 3,088 diagram questions with
//! lettered options; the `flexible-extract` filter keeps a leading `X.` letter, and exact
//! match (case and ASCII punctuation ignored) against the answer's letter.

use serde_json::{Map, Value};

use super::{dataset, image_visual, strings, text};
use crate::doc::{Prompt, Row};
use crate::error::DocError;
use crate::metrics::exact::exact_match_hf_evaluate;
use crate::metrics::filters::ai2d_multi_choice_regex_filter;
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::{pyre, pystr};
use crate::task::{Context, DatasetSpec, MetricSpec, Task};

/// The yaml's `default` post_prompt (pre_prompt is empty, prompt_format `mcq`).
const POST_PROMPT: &str = "\nAnswer with the option's letter from the given choices directly.";

/// `chr(ord("A") + i)`.
fn letter(i: usize) -> Result<char, DocError> {
    u32::try_from(i)
        .ok()
        .and_then(|i| char::from_u32(u32::from(b'A') + i))
        .ok_or_else(|| DocError::new(format!("no option letter for index {i}")))
}

/// Python's `int(s)` for a string: surrounding whitespace, a sign, digits of any script with
/// single underscores between them.
fn py_int(s: &str) -> Option<i64> {
    let t = pystr::strip(s);
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let mut n: i64 = 0;
    let mut prev_digit = false;
    let mut any = false;
    for c in digits.chars() {
        if c == '_' {
            if !prev_digit {
                return None;
            }
            prev_digit = false;
            continue;
        }
        let d = pyre::digit_value(c)?;
        n = n.checked_mul(10)?.checked_add(i64::from(d))?;
        prev_digit = true;
        any = true;
    }
    if !any || !prev_digit {
        return None;
    }
    Some(if neg { -n } else { n })
}

/// `ai2d_doc_to_target(doc, "mcq")`: `options[int(doc["answer"])]`'s letter (a negative
/// index counts from the end, as Python's does).
fn target_letter(doc: &Map<String, Value>) -> Result<String, DocError> {
    let n = strings(doc, "options")?.len();
    let answer = match doc.get("answer") {
        Some(Value::String(s)) => py_int(s),
        Some(Value::Number(x)) => x.as_i64(),
        _ => None,
    }
    .ok_or_else(|| {
        DocError::new(format!(
            "`answer` should be an option index, got {:?}",
            doc.get("answer")
        ))
    })?;
    let idx = if answer < 0 {
        i64::try_from(n).ok().map(|n| n + answer)
    } else {
        Some(answer)
    };
    match idx.and_then(|i| usize::try_from(i).ok()).filter(|&i| i < n) {
        Some(i) => Ok(letter(i)?.to_string()),
        None => Err(DocError::new(format!(
            "answer index {answer} is out of range for {n} options"
        ))),
    }
}

pub struct Ai2d;

impl Task for Ai2d {
    fn name(&self) -> &str {
        "ai2d"
    }

    fn dataset(&self) -> DatasetSpec {
        dataset(
            "lmms-lab/ai2d",
            None,
            "test",
            &["question", "options", "answer", "image"],
        )
    }

    fn max_new_tokens(&self) -> usize {
        16
    }

    /// `ai2d_doc_to_text` (mcq): `f"{question}\n{A. opt\nB. opt...}{post_prompt}"`.
    fn prompt(&self, row: &Row, _ctx: &Context) -> Result<Prompt, DocError> {
        let question = text(&row.fields, "question")?;
        let options = strings(&row.fields, "options")?;
        let mut lines = Vec::with_capacity(options.len());
        for (i, o) in options.iter().enumerate() {
            lines.push(format!("{}. {o}", letter(i)?));
        }
        Ok(Prompt {
            text: format!("{question}\n{}{POST_PROMPT}", lines.join("\n")),
            visual: image_visual(row)?,
        })
    }

    fn target(&self, doc: &Map<String, Value>) -> Value {
        target_letter(doc).map(Value::from).unwrap_or(Value::Null)
    }

    fn filter_name(&self) -> &str {
        "flexible-extract"
    }

    fn filter(&self, response: &str, _doc: &Map<String, Value>) -> String {
        ai2d_multi_choice_regex_filter(response)
    }

    /// ConfigurableTask.process_results without a task function: `exact_match` (the yaml's
    /// ignore_case + ignore_punctuation) of the stripped filtered answer against the letter.
    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        _rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError> {
        let gold = target_letter(doc)?;
        let result = pystr::strip(filtered);
        let em = exact_match_hf_evaluate(result, &gold, true, true);
        Ok(vec![("exact_match".into(), Value::from(em))])
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![MetricSpec::mean("exact_match")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_int_and_target() {
        assert_eq!(py_int(" 2 "), Some(2));
        assert_eq!(py_int("1_0"), Some(10));
        assert_eq!(py_int("\u{663}"), Some(3));
        assert_eq!(py_int("1_"), None);
        assert_eq!(py_int("_1"), None);
        assert_eq!(py_int(""), None);
        assert_eq!(py_int("-1"), Some(-1));
        let doc = |a: Value| {
            json!({"question": "q", "options": ["x", "y", "z"], "answer": a})
                .as_object()
                .cloned()
                .unwrap()
        };
        assert_eq!(Ai2d.target(&doc(json!("1"))), json!("B"));
        assert_eq!(Ai2d.target(&doc(json!("-1"))), json!("C"));
        assert_eq!(Ai2d.target(&doc(json!("3"))), Value::Null);
    }
}
