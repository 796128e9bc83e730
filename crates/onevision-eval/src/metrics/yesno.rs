//! Yes/no benchmarks: MME's answer parser and score (lmms_eval/tasks/mme/utils.py
//! `parse_pred_ans`, `mme_aggregate_results`) and POPE's aggregations
//! (lmms_eval/tasks/pope/utils.py `pope_aggregate_*`).

use serde_json::Value;

use crate::metrics::pystr;

/// What `parse_pred_ans` makes of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YesNo {
    Yes,
    No,
    Other,
}

impl YesNo {
    /// The label as upstream writes it (`"yes"`, `"no"`, `"other"`).
    pub fn as_str(self) -> &'static str {
        match self {
            YesNo::Yes => "yes",
            YesNo::No => "no",
            YesNo::Other => "other",
        }
    }
}

/// mme/utils.py `parse_pred_ans` ("brought from Otter Eval"): `pred.lower().strip()` without
/// periods is `yes`/`no` as is; one character `y`/`n`; otherwise its first four characters
/// containing `yes` (then `no`) decide, so `"nope"` is no and `"not sure"` is no too.
pub fn parse_pred_ans(pred_ans: &str) -> YesNo {
    let lowered = pred_ans.to_lowercase();
    let p = pystr::strip(&lowered).replace('.', "");
    match p.as_str() {
        "yes" => return YesNo::Yes,
        "no" => return YesNo::No,
        _ => {}
    }
    if p.chars().count() == 1 {
        return match p.as_str() {
            "y" => YesNo::Yes,
            "n" => YesNo::No,
            _ => YesNo::Other,
        };
    }
    let prefix: String = p.chars().take(4).collect();
    if prefix.contains("yes") {
        YesNo::Yes
    } else if prefix.contains("no") {
        YesNo::No
    } else {
        YesNo::Other
    }
}

fn field<'a>(v: &'a Value, key: &str) -> Result<&'a Value, String> {
    v.get(key)
        .ok_or_else(|| format!("a value without `{key}`: {v}"))
}

fn number(v: &Value, key: &str) -> Result<f64, String> {
    crate::metrics::aggregate::as_number(field(v, key)?)
        .ok_or_else(|| format!("`{key}` should be a number: {v}"))
}

fn string<'a>(v: &'a Value, key: &str) -> Result<&'a str, String> {
    field(v, key)?
        .as_str()
        .ok_or_else(|| format!("`{key}` should be a string: {v}"))
}

/// One MME category's images, each with its questions' scores, in first-seen order.
type Questions = Vec<(Value, Vec<f64>)>;

/// `mme_aggregate_results`: per category (in order of first appearance, as Python's dicts
/// keep them), the mean over its images of `acc + acc_plus`, where an image's two questions
/// give `acc = sum/2 * 100` and `acc_plus = 100` when both are right; the categories' scores
/// summed. Each image (`question_id`) must have exactly two questions in its category
/// (upstream asserts it).
pub fn mme_aggregate_results(values: &[Value]) -> Result<f64, String> {
    // category -> [(question_id, scores)], both in first-seen order.
    let mut categories: Vec<(String, Questions)> = vec![];
    for v in values {
        let qid = field(v, "question_id")?;
        let score = number(v, "score")?;
        let category = string(v, "category")?;
        let idx = match categories.iter().position(|(c, _)| c == category) {
            Some(i) => i,
            None => {
                categories.push((category.to_string(), vec![]));
                categories.len() - 1
            }
        };
        let questions = &mut categories[idx].1;
        match questions.iter_mut().find(|(q, _)| q == qid) {
            Some((_, scores)) => scores.push(score),
            None => questions.push((qid.clone(), vec![score])),
        }
    }
    let mut total = 0.0;
    for (category, questions) in &categories {
        let mut total_score = 0.0;
        for (qid, scores) in questions {
            if scores.len() != 2 {
                return Err(format!(
                    "MME only supports pairwise evaluation: {category} {qid} has {} questions",
                    scores.len()
                ));
            }
            let sum = 0.0 + scores[0] + scores[1];
            let acc = sum / 2.0 * 100.0;
            let acc_plus = if sum == 2.0 { 100.0 } else { 0.0 };
            total_score += acc_plus + acc;
        }
        total += total_score / questions.len() as f64;
    }
    Ok(total)
}

/// `pope_aggregate_accuracy`: the mean of the scores, summed in order.
pub fn pope_aggregate_accuracy(values: &[Value]) -> Result<f64, String> {
    if values.is_empty() {
        return Err("no values to average".into());
    }
    let mut total = 0.0;
    for v in values {
        total += number(v, "score")?;
    }
    Ok(total / values.len() as f64)
}

/// Counts of (ground truth, prediction) pairs: (yes/yes, no/yes, yes/no, gt yes, gt no).
fn pope_counts(values: &[Value]) -> Result<[usize; 5], String> {
    let mut c = [0usize; 5];
    for v in values {
        let pred = string(v, "prediction")?;
        let gt = string(v, "ground_truth")?;
        match (gt, pred) {
            ("yes", "yes") => c[0] += 1,
            ("no", "yes") => c[1] += 1,
            ("yes", "no") => c[2] += 1,
            _ => {}
        }
        match gt {
            "yes" => c[3] += 1,
            "no" => c[4] += 1,
            _ => {}
        }
    }
    Ok(c)
}

fn ratio(a: usize, b: usize) -> f64 {
    if a + b > 0 {
        a as f64 / (a + b) as f64
    } else {
        0.0
    }
}

/// `pope_aggregate_precision`: yes/yes over predicted yes (answers other than yes/no do not
/// count), 0 when nothing was predicted yes.
pub fn pope_aggregate_precision(values: &[Value]) -> Result<f64, String> {
    let c = pope_counts(values)?;
    Ok(ratio(c[0], c[1]))
}

/// `pope_aggregate_recall`: yes/yes over yes/yes + yes/no (an answer that is neither is not a
/// false negative upstream).
pub fn pope_aggregate_recall(values: &[Value]) -> Result<f64, String> {
    let c = pope_counts(values)?;
    Ok(ratio(c[0], c[2]))
}

/// `pope_aggregate_f1_score`: `2pr / (p + r)`, 0 when both are 0.
pub fn pope_aggregate_f1_score(values: &[Value]) -> Result<f64, String> {
    let p = pope_aggregate_precision(values)?;
    let r = pope_aggregate_recall(values)?;
    Ok(if p + r > 0.0 {
        2.0 * (p * r) / (p + r)
    } else {
        0.0
    })
}

/// `pope_aggregate_yes_ratio`: the share of *ground-truth* yes (upstream counts the answers
/// key, not the predictions).
pub fn pope_aggregate_yes_ratio(values: &[Value]) -> Result<f64, String> {
    let c = pope_counts(values)?;
    Ok(ratio(c[3], c[4]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_pred_ans_known_answers() {
        let p = |s| parse_pred_ans(s).as_str();
        assert_eq!(p("Yes."), "yes");
        assert_eq!(p(" NO "), "no");
        assert_eq!(p("y"), "yes");
        assert_eq!(p("N."), "no");
        assert_eq!(p("x"), "other");
        assert_eq!(p("Yes, it is."), "yes");
        assert_eq!(p("nope"), "no");
        assert_eq!(p("not sure"), "no");
        assert_eq!(p("I don't know"), "other");
        assert_eq!(p("know"), "no");
        assert_eq!(p("y.e.s"), "yes");
        assert_eq!(p(""), "other");
        assert_eq!(p("...."), "other");
    }

    #[test]
    fn mme_pairs() {
        let v = |q: &str, c: &str, s: f64| json!({"question_id": q, "category": c, "score": s});
        let vals = vec![
            v("a/1.png", "OCR", 1.0),
            v("a/1.png", "OCR", 1.0),
            v("a/2.png", "OCR", 1.0),
            v("a/2.png", "OCR", 0.0),
            v("b/1.png", "code_reasoning", 0.0),
            v("b/1.png", "code_reasoning", 0.0),
        ];
        // OCR: (200 + 50) / 2 = 125; code_reasoning: 0.
        assert_eq!(mme_aggregate_results(&vals), Ok(125.0));
        assert!(mme_aggregate_results(&vals[..3]).is_err());
    }

    #[test]
    fn pope_aggregates() {
        let v = |p: &str, g: &str| json!({"question_id": "1", "score": if p == g { 1.0 } else { 0.0 }, "prediction": p, "ground_truth": g});
        let vals = vec![
            v("yes", "yes"),
            v("yes", "no"),
            v("no", "yes"),
            v("maybe", "yes"),
        ];
        assert_eq!(pope_aggregate_accuracy(&vals), Ok(0.25));
        assert_eq!(pope_aggregate_precision(&vals), Ok(0.5));
        assert_eq!(pope_aggregate_recall(&vals), Ok(0.5));
        assert_eq!(pope_aggregate_f1_score(&vals), Ok(0.5));
        assert_eq!(pope_aggregate_yes_ratio(&vals), Ok(0.75));
        assert_eq!(pope_aggregate_precision(&[]), Ok(0.0));
    }
}
