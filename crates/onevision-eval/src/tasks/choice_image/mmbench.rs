//! `mmbench_en_dev` (lmms_eval/tasks/mmbench/mmbench_en_dev.yaml,
//! _default_template_mmbench_en_yaml, en_utils.py, mmbench_evals.py): circular evaluation
//! with the rule-based matcher, scored as lmms-eval 0.2.1 scores it without a GPT judge.
//!
//! Without an API key (`OPENAI_API_KEY` unset: lmms-eval sends "YOUR_API_KEY" and gets a 401;
//! offline the request fails the same way) every judge request fails, so
//! `extract_answer_from_item` falls back, after its three retries, to
//! `rd.randint(0, num_options)` over `"ABCD"[:num_options] + "E"` (`num_options` counts the
//! A-D columns, all four present since process_results writes them), on Python's global
//! `random` that `eval_result` seeds with `rd.seed(2680)`; the draws happen in evaluation
//! order (main rows by index, each group's unmatched rows in index order, stopping at the
//! group's first wrong answer). [`mmbench_aggregate_dev_results_eval`] does exactly that with
//! [`PyRandom`]. The `submission` metric's aggregation only writes an xlsx and returns None;
//! it is not reproduced (its per-document value is).

use serde_json::{Map, Value};

use crate::doc::{Prompt, Row, Visual};
use crate::error::DocError;
use crate::metrics::choice::can_infer;
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::pyrepr::py_str_value;
use crate::metrics::pystr;
use crate::task::{Context, DatasetSpec, MetricSpec, Task};

use super::{dict, field, one_image};

const POST_PROMPT: &str = "\nAnswer with the option's letter from the given choices directly.";
/// mmbench.yaml `metadata.sys_prompt`.
const SYS_PROMPT: &str = "There are several options:";

pub struct MmbenchEnDev;

/// `pd.notna(x) and x != "nan"` for a cell (None is NaN to pandas).
fn present(v: Option<&Value>) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "nan" => None,
        Some(v) => Some(py_str_value(v)),
    }
}

/// `MMBench_Evaluator.create_options_prompt(doc, ["A".."E"])`: the options that are truthy,
/// not NaN and not "nan", sorted, as `"{sys_prompt}\nA. ..\nB. .."` with trailing newlines
/// stripped (`rstrip("\n")` also eats an option's own trailing newlines).
fn create_options_prompt(doc: &Map<String, Value>) -> String {
    let mut s = format!("{SYS_PROMPT}\n");
    for key in ["A", "B", "C", "D", "E"] {
        let truthy = match doc.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::String(x)) => !x.is_empty(),
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(_) => true,
        };
        if !truthy {
            continue;
        }
        if let Some(item) = present(doc.get(key)) {
            s.push_str(&format!("{key}. {item}\n"));
        }
    }
    s.trim_end_matches('\n').to_string()
}

/// `mmbench_doc_to_text(doc, {"pre_prompt": "", "post_prompt": POST_PROMPT})`.
pub fn mmbench_doc_to_text(doc: &Map<String, Value>) -> Result<String, DocError> {
    let question = py_str_value(field(doc, "question")?);
    let options = create_options_prompt(doc);
    let query = match present(doc.get("hint")) {
        Some(hint) => format!("{hint} {question} {options}"),
        None => format!("{question} {options}"),
    };
    Ok(format!("{query}\n{POST_PROMPT}"))
}

impl Task for MmbenchEnDev {
    fn name(&self) -> &str {
        "mmbench_en_dev"
    }

    fn group(&self) -> Option<&str> {
        Some("mmbench")
    }

    fn dataset(&self) -> DatasetSpec {
        DatasetSpec {
            repo: "lmms-lab/MMBench".into(),
            config: Some("en".into()),
            split: "dev".into(),
            columns: [
                "index",
                "question",
                "hint",
                "answer",
                "A",
                "B",
                "C",
                "D",
                "category",
                "image",
                "source",
                "L2-category",
                "split",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    fn max_new_tokens(&self) -> usize {
        1024
    }

    fn prompt(&self, row: &Row, _ctx: &Context) -> Result<Prompt, DocError> {
        Ok(Prompt {
            text: mmbench_doc_to_text(&row.fields)?,
            visual: Visual::Images(vec![one_image(row, "image")?]),
        })
    }

    fn target(&self, doc: &Map<String, Value>) -> Value {
        doc.get("answer").cloned().unwrap_or(Value::Null)
    }

    /// `mmbench_process_results`: the row for the circular evaluation, twice (the
    /// `gpt_eval_score` and `submission` values are the same dict).
    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        _rng: &mut PyRandom,
    ) -> Result<Vec<(String, Value)>, DocError> {
        let prediction = pystr::strip(filtered);
        let mut pairs = vec![("index", field(doc, "index")?.clone())];
        for key in ["question", "answer"] {
            pairs.push((key, field(doc, key)?.clone()));
        }
        pairs.push(("prediction", Value::from(prediction)));
        for key in ["hint", "source", "split", "category", "L2-category"] {
            pairs.push((key, field(doc, key)?.clone()));
        }
        for c in ["A", "B", "C", "D", "E"] {
            pairs.push((c, doc.get(c).cloned().unwrap_or_else(|| "nan".into())));
        }
        let row = dict(pairs);
        Ok(vec![
            ("gpt_eval_score".into(), row.clone()),
            ("submission".into(), row),
        ])
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        vec![MetricSpec::custom(
            "gpt_eval_score",
            mmbench_aggregate_dev_results_eval,
        )]
    }
}

/// One row of the evaluation frame (`pd.DataFrame(results)` in `eval_result`).
struct EvalRow {
    index: i64,
    answer: Option<String>,
    prediction: String,
    /// `build_choices`: the A-D cells that are not NaN (None), in that order.
    choices: Vec<(char, String)>,
}

fn eval_row(v: &Value) -> Result<EvalRow, String> {
    let m = v
        .as_object()
        .ok_or_else(|| format!("a gpt_eval_score value should be a dict, got {v}"))?;
    let index = match m.get("index") {
        Some(Value::Number(n)) => n.as_i64(),
        // An index stored as digits (one revision of the card types it as a string, with
        // which lmms-eval's `index < 1e6` would raise): read as the integer it spells.
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("a gpt_eval_score value without an integer `index`: {v}"))?;
    let answer = match m.get("answer") {
        None | Some(Value::Null) => None,
        Some(a) => Some(py_str_value(a)),
    };
    // data["prediction"] = [str(x) for x in data["prediction"]]
    let prediction = py_str_value(m.get("prediction").unwrap_or(&Value::Null));
    let mut choices = vec![];
    for ch in ['A', 'B', 'C', 'D'] {
        match m.get(&ch.to_string()) {
            None | Some(Value::Null) => {}
            Some(x) => choices.push((ch, py_str_value(x))),
        }
    }
    Ok(EvalRow {
        index,
        answer,
        prediction,
        choices,
    })
}

/// `eval_sub_data(sub_data, answer_map)`: 1 when every circular copy of a question is
/// answered right. Rows the matcher reads are checked first (a wrong one ends it at 0 before
/// any random draw); the others then take the no-judge fallback, one draw each, in order.
fn eval_sub_data(
    sub: &[&EvalRow],
    answer_of: &dyn Fn(i64) -> Option<String>,
    num_options: usize,
    rd: &mut PyRandom,
) -> Result<u32, String> {
    let mut gt = vec![];
    let mut pred = vec![];
    for item in sub {
        gt.push(answer_of(item.index));
        let p = can_infer(&item.prediction, &item.choices);
        if let Some(p) = p {
            if gt.last().cloned().flatten() != Some(p.to_string()) {
                return Ok(0);
            }
        }
        pred.push(p);
    }
    for (i, item) in sub.iter().enumerate() {
        if pred[i].is_some() {
            continue;
        }
        let ret = extract_answer_without_judge(item, num_options, rd)?;
        if gt[i] != Some(ret.to_string()) {
            return Ok(0);
        }
    }
    Ok(1)
}

/// `extract_answer_from_item` when every GPT request fails: the matcher once more (it failed
/// already), then `chars[rd.randint(0, num_options)]` with `chars = "ABCD"[:num_options] +
/// "E"`. With fewer than two option columns Python returns None and the unpacking raises.
fn extract_answer_without_judge(
    item: &EvalRow,
    num_options: usize,
    rd: &mut PyRandom,
) -> Result<char, String> {
    if let Some(c) = can_infer(&item.prediction, &item.choices) {
        return Ok(c);
    }
    if num_options < 2 {
        return Err(format!(
            "row {}: no judge and fewer than two option columns (lmms-eval raises here)",
            item.index
        ));
    }
    let chars: Vec<char> = "ABCD".chars().take(num_options).chain(['E']).collect();
    let tmp = rd.randint(0, num_options as i64) as usize;
    Ok(chars[tmp])
}

/// `mmbench_aggregate_dev_results_eval` → `MMBench_Evaluator.eval_result(results, "openai")`
/// without a judge: rows sorted by index; for each main row (index < 1e6) the rows with the
/// same `index % 1e6` are scored together by [`eval_sub_data`]; the overall hit rate of the
/// main rows × 100 (`overall_acc * 100`; NaN when there is no main row, as pandas' mean of
/// nothing). The per-category rates it prints and the json it writes do not change it.
pub fn mmbench_aggregate_dev_results_eval(values: &[Value]) -> Result<f64, String> {
    let mut rows: Vec<EvalRow> = values.iter().map(eval_row).collect::<Result<_, _>>()?;
    // data.sort_values(by="index") (quicksort: rows with equal indices may come in any order
    // in Python; a stable sort keeps them in document order).
    rows.sort_by_key(|r| r.index);
    // answer_map = {i: c for i, c in zip(data["index"], data["answer"])}: the last one wins.
    let answer_of = |idx: i64| {
        rows.iter()
            .rev()
            .find(|r| r.index == idx)
            .and_then(|r| r.answer.clone())
    };
    // num_options = sum(ch in item for ch in "ABCD"): the frame's columns.
    let num_options = ['A', 'B', 'C', 'D']
        .iter()
        .filter(|c| values.iter().any(|v| v.get(c.to_string()).is_some()))
        .count();
    let mut rd = PyRandom::seed(2680);
    let mut result: Vec<(i64, u32)> = vec![];
    let (mut hit, mut tot) = (0u64, 0u64);
    for main in rows.iter().filter(|r| r.index < 1_000_000) {
        let idx = main.index;
        let ret = match result.iter().find(|(i, _)| *i == idx) {
            Some((_, r)) => *r,
            None => {
                let sub: Vec<&EvalRow> = rows
                    .iter()
                    .filter(|r| r.index.rem_euclid(1_000_000) == idx)
                    .collect();
                let r = eval_sub_data(&sub, &answer_of, num_options, &mut rd)?;
                result.push((idx, r));
                r
            }
        };
        hit += ret as u64;
        tot += 1;
    }
    // data_main["hit"].mean() * 100
    Ok(hit as f64 / tot as f64 * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(index: i64, answer: &str, prediction: &str) -> Value {
        json!({"index": index, "answer": answer, "prediction": prediction,
               "A": "cat", "B": "dog", "C": "nan", "D": null, "E": "nan"})
    }

    #[test]
    fn circular_scoring() {
        // Values from lmms-eval's mmbench_aggregate_dev_results_eval (no judge).
        // Question 1: both copies right -> 1. Question 2: the copy is wrong -> 0.
        // Question 3: one copy unreadable -> rd.seed(2680); rd.randint(0, 4) == 4 -> "E".
        let mut rd = PyRandom::seed(2680);
        assert_eq!(rd.randint(0, 4), 4);
        let values = vec![
            row(1, "A", "A"),
            row(1_000_001, "B", "(B) dog"),
            row(2, "A", "A"),
            row(1_000_002, "B", "A."),
            row(3, "A", "cat"),
            row(1_000_003, "B", "no idea"),
        ];
        assert_eq!(
            mmbench_aggregate_dev_results_eval(&values).unwrap(),
            33.33333333333333
        );
        // The fallback's "E" is right when the answer is "E".
        let values = vec![
            row(1, "A", "A"),
            row(1_000_001, "E", "(B) dog"),
            row(3, "A", "cat"),
            row(1_000_003, "E", "no idea"),
        ];
        assert_eq!(mmbench_aggregate_dev_results_eval(&values).unwrap(), 50.0);
    }

    #[test]
    fn prompt_quirks() {
        let doc =
            json!({"question": "Q?", "hint": "", "A": "x", "B": "y\n", "C": "nan", "D": null});
        let doc = doc.as_object().unwrap();
        // An empty hint is kept (pd.notna("") and "" != "nan"), hence the leading space;
        // rstrip("\n") eats the last option's own newline.
        assert_eq!(
            mmbench_doc_to_text(doc).unwrap(),
            format!(" Q? {SYS_PROMPT}\nA. x\nB. y\n{POST_PROMPT}")
        );
    }
}
