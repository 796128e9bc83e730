//! `realworldqa` (lmms_eval/tasks/realworldqa/realworldqa.yaml, utils.py): the dataset's
//! question as it is, the `flexible-extract` filter (the yaml's only filter:
//! `NumberWordsToDigitsFilter`, then realworldqa's own `MultiChoiceRegexFilter`, whose
//! `apply` ignores the yaml's `regex_pattern`), then lmms-eval's default `exact_match` (HF
//! evaluate, ignore_case and ignore_punctuation): the yaml names no process_results, so
//! `realworldqa_process_results` in utils.py is never called.

use regex::Regex;
use serde_json::{Map, Value};

use crate::doc::{Prompt, Row, Visual};
use crate::error::DocError;
use crate::metrics::exact::exact_match_hf_evaluate;
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::pyre;
use crate::metrics::pyrepr::py_str_value;
use crate::metrics::pystr;
use crate::task::{Context, DatasetSpec, MetricSpec, Task};

use super::{field, one_image, str_of};

pub struct RealWorldQa;

/// `realworldqa_doc_to_text(doc, default kwargs)`: pre- and post-prompt are empty, so the
/// stripped question (REPLACE_PROMPT is only removed when there is a post-prompt).
pub fn realworldqa_doc_to_text(doc: &Map<String, Value>) -> Result<String, DocError> {
    Ok(pystr::strip(str_of(doc, "question")?).to_string())
}

/// `NumberWordsToDigitsFilter`: a response that is, lower-cased, one of "zero".."ten" becomes
/// its digits.
pub fn number_words_to_digits_filter(resp: &str) -> String {
    const WORDS: [&str; 11] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    ];
    let lower = resp.to_lowercase();
    match WORDS.iter().position(|w| *w == lower) {
        Some(i) => i.to_string(),
        None => resp.to_string(),
    }
}

/// `re.compile(r"\b([A-Z])\.\s+([^\n]*)").findall(question)`: (letter, rest of line) pairs,
/// scanned by hand with Python's `\b` and `\s`.
fn option_lines(question: &str) -> Vec<String> {
    let c: Vec<char> = question.chars().collect();
    let mut out = vec![];
    let mut i = 0;
    while i < c.len() {
        let starts = c[i].is_ascii_uppercase()
            && pyre::is_boundary(&c, i)
            && c.get(i + 1) == Some(&'.')
            && c.get(i + 2).is_some_and(|&s| pyre::is_space(s));
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i + 2;
        while j < c.len() && pyre::is_space(c[j]) {
            j += 1;
        }
        let mut k = j;
        while k < c.len() && c[k] != '\n' {
            k += 1;
        }
        out.push(c[j..k].iter().collect());
        i = k;
    }
    out
}

/// realworldqa's `MultiChoiceRegexFilter.apply` for one response: the options' texts are read
/// from the question (lettered A, B, ... in the order found, whatever letters the question
/// uses; a repeated text keeps the later letter); the response loses every character that
/// is neither `\w` nor `\s` (Python's classes) and is stripped; the first option text found
/// in it (leftmost, then the earlier option: Python's alternation, which Rust's regex shares)
/// gives its letter, else the cleaned response is returned.
pub fn realworldqa_multi_choice_regex_filter(resp: &str, question: &str) -> String {
    let mut choice_to_alpha: Vec<(String, char)> = vec![];
    let mut fallback = vec![];
    for (next_alpha, line) in ('A' as u32..).zip(option_lines(question)) {
        let text = pystr::strip(&line).to_string();
        fallback.push(regex::escape(&text));
        let alpha = char::from_u32(next_alpha).unwrap_or('?');
        match choice_to_alpha.iter_mut().find(|(t, _)| *t == text) {
            Some((_, a)) => *a = alpha,
            None => choice_to_alpha.push((text, alpha)),
        }
    }
    let cleaned: String = resp
        .chars()
        .filter(|&c| pyre::is_word(c) || pyre::is_space(c))
        .collect();
    let cleaned = pystr::strip(&cleaned).to_string();
    // re.compile("|".join(...)): with no options, the empty pattern, which matches "" at 0;
    // "" is then not an option text (unless an option's text is empty).
    let found = Regex::new(&fallback.join("|"))
        .ok()
        .and_then(|re| re.find(&cleaned).map(|m| m.as_str().to_string()));
    if let Some(m) = found {
        if let Some((_, a)) = choice_to_alpha.iter().find(|(t, _)| *t == m) {
            return a.to_string();
        }
    }
    cleaned
}

impl Task for RealWorldQa {
    fn name(&self) -> &str {
        "realworldqa"
    }

    fn dataset(&self) -> DatasetSpec {
        DatasetSpec {
            repo: "lmms-lab/RealWorldQA".into(),
            config: None,
            split: "test".into(),
            columns: ["image", "question", "answer"].map(String::from).to_vec(),
        }
    }

    fn max_new_tokens(&self) -> usize {
        16
    }

    fn prompt(&self, row: &Row, _ctx: &Context) -> Result<Prompt, DocError> {
        Ok(Prompt {
            text: realworldqa_doc_to_text(&row.fields)?,
            visual: Visual::Images(vec![one_image(row, "image")?]),
        })
    }

    fn target(&self, doc: &Map<String, Value>) -> Value {
        doc.get("answer").cloned().unwrap_or(Value::Null)
    }

    fn filter_name(&self) -> &str {
        "flexible-extract"
    }

    fn filter(&self, response: &str, doc: &Map<String, Value>) -> String {
        let question = doc.get("question").and_then(Value::as_str).unwrap_or("");
        realworldqa_multi_choice_regex_filter(&number_words_to_digits_filter(response), question)
    }

    /// ConfigurableTask.process_results for generate_until: the stripped result against
    /// `str(doc_to_target(doc))` with HF evaluate's exact_match.
    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        _rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError> {
        let gold = py_str_value(field(doc, "answer")?);
        let score = exact_match_hf_evaluate(pystr::strip(filtered), &gold, true, true);
        Ok(vec![("exact_match".into(), Value::from(score))])
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![MetricSpec::mean("exact_match")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_known_answers() {
        let q = "Which way?\nA. Left\nB. Straight\nC. Right\nPlease answer directly.";
        assert_eq!(realworldqa_multi_choice_regex_filter("Right.", q), "C");
        assert_eq!(realworldqa_multi_choice_regex_filter("(B)", q), "B");
        assert_eq!(realworldqa_multi_choice_regex_filter("left", q), "left");
        assert_eq!(
            realworldqa_multi_choice_regex_filter("a, b!", "no options"),
            "a b"
        );
        assert_eq!(number_words_to_digits_filter("TWO"), "2");
        assert_eq!(number_words_to_digits_filter("two."), "two.");
    }
}
