//! `mmmu_val` (lmms_eval/tasks/mmmu/mmmu_val.yaml, _default_template_yaml, utils.py): MMMU's
//! validation split with `interleaved_format: false`, so the `<image N>` placeholders stay in
//! the text and the images referenced in it (question and options) go before it, in the
//! sorted order of their column names; answers parsed by MMMU's rules
//! ([`crate::metrics::mmmu`]), accuracy per subject, then over all of them.

use serde_json::{Map, Value};

use crate::doc::{Prompt, Row, Visual};
use crate::error::DocError;
use crate::metrics::mmmu::{
    mmmu_aggregate_results, parse_multi_choice_response, parse_open_response, OpenPred,
};
use crate::metrics::pylit::literal_eval_str_list;
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::pyre;
use crate::metrics::pystr;
use crate::task::{Context, DatasetSpec, MetricSpec, Task};

use super::{dict, field, one_image, str_of};

const MULTI_CHOICE_PROMPT: &str =
    "Answer with the option's letter from the given choices directly.";
const OPEN_ENDED_PROMPT: &str = "Answer the question using a single word or phrase.";

pub struct MmmuVal;

fn options(doc: &Map<String, Value>) -> Result<Vec<String>, DocError> {
    // "Weirdly, data["options"] is a string in MMMU Huggingface dataset": ast.literal_eval.
    literal_eval_str_list(str_of(doc, "options")?).map_err(DocError::new)
}

fn is_multiple_choice(doc: &Map<String, Value>) -> Result<bool, DocError> {
    Ok(str_of(doc, "question_type")? == "multiple-choice")
}

fn letters(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| char::from_u32('A' as u32 + i as u32).map_or_else(String::new, String::from))
        .collect()
}

/// `construct_prompt(doc)`: multiple choice -> `question\nA. opt\nB. opt\n\n` + the letter
/// instruction; open -> `question\n\n` + the short-answer instruction.
pub fn mmmu_doc_to_text(doc: &Map<String, Value>) -> Result<String, DocError> {
    let question = str_of(doc, "question")?;
    if is_multiple_choice(doc)? {
        let opts = options(doc)?;
        let parsed: Vec<String> = letters(opts.len())
            .iter()
            .zip(&opts)
            .map(|(l, o)| format!("{l}. {o}"))
            .collect();
        Ok(format!(
            "{question}\n{}\n\n{MULTI_CHOICE_PROMPT}",
            parsed.join("\n")
        ))
    } else {
        Ok(format!("{question}\n\n{OPEN_ENDED_PROMPT}"))
    }
}

/// `mmmu_doc_to_visual`'s columns: `re.findall(r"<image \d+>", prompt)` (Python's `\d`), each
/// as `image_N`, deduplicated and sorted as strings.
pub fn mmmu_image_columns(prompt: &str) -> Vec<String> {
    let c: Vec<char> = prompt.chars().collect();
    let open: Vec<char> = "<image ".chars().collect();
    let mut out: Vec<String> = vec![];
    let mut i = 0;
    while i + open.len() < c.len() {
        if c[i..i + open.len()] != open[..] {
            i += 1;
            continue;
        }
        let d0 = i + open.len();
        let mut d = d0;
        while d < c.len() && pyre::is_digit(c[d]) {
            d += 1;
        }
        if d > d0 && c.get(d) == Some(&'>') {
            out.push(format!("image_{}", c[d0..d].iter().collect::<String>()));
            i = d + 1;
        } else {
            i += 1;
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `extract_subset_name(id)`: the subject between the split (`id.split("_")[0]`) and the
/// trailing `_<number>`, as `re.compile(rf"^{split}_(.+?)_\d+$")` finds it (the shortest
/// subject; `$` also before a final newline; `.` not across newlines).
pub fn extract_subset_name(id: &str) -> Result<String, DocError> {
    let no_match = || DocError::new(format!("No match found in \"{id}\""));
    let split = id.split('_').next().unwrap_or("");
    let rest = id
        .strip_prefix(split)
        .and_then(|r| r.strip_prefix('_'))
        .ok_or_else(no_match)?;
    let c: Vec<char> = rest.chars().collect();
    // (.+?) grows one character at a time; it cannot take a newline.
    for end in 1..c.len() {
        if c[end - 1] == '\n' {
            break;
        }
        if c[end] != '_' {
            continue;
        }
        let tail = &c[end + 1..];
        let tail = match tail.last() {
            Some('\n') => &tail[..tail.len() - 1],
            _ => tail,
        };
        if !tail.is_empty() && tail.iter().all(|&d| pyre::is_digit(d)) {
            return Ok(c[..end].iter().collect());
        }
    }
    Err(no_match())
}

impl Task for MmmuVal {
    fn name(&self) -> &str {
        "mmmu_val"
    }

    fn dataset(&self) -> DatasetSpec {
        let mut columns: Vec<String> = ["id", "question", "options", "answer", "question_type"]
            .map(String::from)
            .to_vec();
        columns.extend((1..=7).map(|i| format!("image_{i}")));
        DatasetSpec {
            repo: "lmms-lab/MMMU".into(),
            config: None,
            split: "validation".into(),
            columns,
        }
    }

    /// `_default_template_yaml`: `max_new_tokens: 16` in lmms-eval 0.2.1 (later versions use
    /// 128).
    fn max_new_tokens(&self) -> usize {
        16
    }

    fn prompt(&self, row: &Row, _ctx: &Context) -> Result<Prompt, DocError> {
        let text = mmmu_doc_to_text(&row.fields)?;
        let images = mmmu_image_columns(&text)
            .iter()
            .map(|col| one_image(row, col))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Prompt {
            text,
            visual: Visual::Images(images),
        })
    }

    fn target(&self, doc: &Map<String, Value>) -> Value {
        doc.get("answer").cloned().unwrap_or(Value::Null)
    }

    /// `mmmu_process_results`: `mmmu_acc` = {id, subdomain, question_type, answer,
    /// parsed_pred}, and `submission` = {id: response} (returned, but not in metric_list).
    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError> {
        let pred = pystr::strip(filtered);
        let parsed_pred = if is_multiple_choice(doc)? {
            let opts = options(doc)?;
            let all_choices = letters(opts.len());
            let index2ans: Vec<(String, String)> = all_choices
                .iter()
                .cloned()
                .zip(opts.iter().cloned())
                .collect();
            Value::from(parse_multi_choice_response(
                pred,
                &all_choices,
                &index2ans,
                rng,
            )?)
        } else {
            Value::Array(
                parse_open_response(pred)
                    .iter()
                    .map(OpenPred::to_json)
                    .collect(),
            )
        };
        let id = str_of(doc, "id")?;
        let acc = dict(vec![
            ("id", Value::from(id)),
            ("subdomain", Value::from(extract_subset_name(id)?)),
            ("question_type", field(doc, "question_type")?.clone()),
            ("answer", field(doc, "answer")?.clone()),
            ("parsed_pred", parsed_pred),
        ]);
        let mut submission = Map::new();
        submission.insert(id.to_string(), Value::from(pred));
        Ok(vec![
            ("mmmu_acc".into(), acc),
            ("submission".into(), Value::Object(submission)),
        ])
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![MetricSpec::custom("mmmu_acc", mmmu_aggregate_results)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_names() {
        assert_eq!(
            extract_subset_name("validation_Art_Theory_12").unwrap(),
            "Art_Theory"
        );
        assert_eq!(extract_subset_name("validation_A_1_2").unwrap(), "A_1");
        assert!(extract_subset_name("validation_Art").is_err());
        assert!(extract_subset_name("validation__12").is_err());
    }

    #[test]
    fn image_columns() {
        assert_eq!(
            mmmu_image_columns("<image 2> and <image 1>, <image 2>; <image x> <image 10>"),
            vec!["image_1", "image_10", "image_2"]
        );
    }
}
