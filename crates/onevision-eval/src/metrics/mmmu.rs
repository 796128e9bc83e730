//! MMMU's answer parsers and judges, as lmms-eval 0.2.1 copies them from the official MMMU
//! repository (lmms_eval/tasks/mmmu/utils.py, "Helper functions written by official MMMU
//! repo", MMMU eval/eval_utils.py @51ce7f3). egoschema and nextqa reuse
//! [`parse_multi_choice_response`].

use serde_json::{Map, Value};

use crate::error::DocError;
use crate::metrics::pylit::{py_float, py_round};
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::pyre;
use crate::metrics::pystr;

/// `parse_multi_choice_response(response, all_choices, index2ans)`: the predicted option
/// letter. `index2ans` is the Python dict as (letter, option text) pairs in insertion order;
/// its keys are distinct. In order: `(A)` forms, then `A ` (a letter followed by a space, the
/// response padded with spaces), then `A.`, then, for responses of more than five words, the
/// option texts (case-insensitive substrings); several candidates -> the one found last;
/// none -> `random.choice(all_choices)` on `rng` (lmms-eval's global `random`, seeded once by
/// the evaluator). An empty `all_choices` is an error (Python's IndexError).
pub fn parse_multi_choice_response(
    response: &str,
    all_choices: &[String],
    index2ans: &[(String, String)],
    rng: &mut PyRandom,
) -> Result<String, DocError> {
    let mut r = response;
    for ch in [',', '.', '!', '?', ';', ':', '\''] {
        r = r.trim_matches(ch);
    }
    let response = format!(" {r} ");

    let mut index_ans = true;
    let mut ans_with_brack = false;
    let mut candidates: Vec<String> = vec![];
    for choice in all_choices {
        if response.contains(&format!("({choice})")) {
            candidates.push(choice.clone());
            ans_with_brack = true;
        }
    }
    if candidates.is_empty() {
        for choice in all_choices {
            if response.contains(&format!("{choice} ")) {
                candidates.push(choice.clone());
            }
        }
    }
    if candidates.is_empty() {
        for choice in all_choices {
            if response.contains(&format!("{choice}.")) {
                candidates.push(choice.clone());
            }
        }
    }
    let lower = response.to_lowercase();
    if candidates.is_empty() && pystr::split_whitespace(&response).len() > 5 {
        for (index, ans) in index2ans {
            if lower.contains(&ans.to_lowercase()) {
                candidates.push(index.clone());
                index_ans = false;
            }
        }
    }

    if candidates.is_empty() {
        return rng.choice(all_choices).cloned().ok_or_else(|| {
            DocError::new("parse_multi_choice_response: no choices to pick from (IndexError)")
        });
    }
    if candidates.len() == 1 {
        return Ok(candidates.swap_remove(0));
    }
    // Byte offsets order the same way as Python's character offsets; -1 when absent.
    let pos = |hay: &str, needle: &str| hay.rfind(needle).map_or(-1, |i| i as i64);
    let mut start_indexes = vec![];
    for can in &candidates {
        let i = if index_ans {
            if ans_with_brack {
                pos(&response, &format!("({can})"))
            } else {
                pos(&response, &format!(" {can} "))
            }
        } else {
            let ans = index2ans
                .iter()
                .find(|(k, _)| k == can)
                .map(|(_, v)| v.to_lowercase())
                .unwrap_or_default();
            pos(&lower, &ans)
        };
        start_indexes.push(i);
    }
    // np.argmax: the first of the largest.
    let mut best = 0;
    for (k, &i) in start_indexes.iter().enumerate() {
        if i > start_indexes[best] {
            best = k;
        }
    }
    Ok(candidates.swap_remove(best))
}

/// One element of `parse_open_response`'s list: a normalised string or a number
/// (`normalize_str` rounds numbers to 2 decimals).
#[derive(Debug, Clone, PartialEq)]
pub enum OpenPred {
    Str(String),
    Num(f64),
}

impl OpenPred {
    /// As lmms-eval's JSON has it: a string or a float (non-finite floats, which JSON cannot
    /// hold, become null).
    pub fn to_json(&self) -> Value {
        match self {
            OpenPred::Str(s) => Value::from(s.clone()),
            OpenPred::Num(x) => Value::from(*x),
        }
    }

    /// Back from JSON: null is read as NaN (equal to nothing, as Python's NaN).
    pub fn from_json(v: &Value) -> Option<Self> {
        match v {
            Value::String(s) => Some(OpenPred::Str(s.clone())),
            Value::Number(n) => n.as_f64().map(OpenPred::Num),
            Value::Null => Some(OpenPred::Num(f64::NAN)),
            _ => None,
        }
    }
}

/// `check_is_number`: `float(string.replace(",", ""))` succeeds.
pub fn check_is_number(s: &str) -> bool {
    py_float(&s.replace(',', "")).is_some()
}

/// `normalize_str`: numbers (commas removed) -> `[round(float, 2)]`; strings lower-cased, a
/// one-character string padded as `[" " + s, s + " "]` to avoid trivial matches.
pub fn normalize_str(s: &str) -> Vec<OpenPred> {
    let s = pystr::strip(s);
    if let Some(x) = py_float(&s.replace(',', "")) {
        return vec![OpenPred::Num(py_round(x, 2))];
    }
    let s = s.to_lowercase();
    if s.chars().count() == 1 {
        return vec![
            OpenPred::Str(format!(" {s}")),
            OpenPred::Str(format!("{s} ")),
        ];
    }
    vec![OpenPred::Str(s)]
}

/// `extract_numbers`: numbers with thousands commas (`-?\b\d{1,3}(?:,\d{3})+\b`), then
/// scientific notation (`-?\d+(?:\.\d+)?[eE][+-]?\d+`), then simple numbers
/// (`-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])`), each `re.findall`'s matches in
/// order. Written out by hand: Rust's regex has no lookahead, and `\d`/`\b` follow Python's
/// classes ([`pyre`]).
pub fn extract_numbers(s: &str) -> Vec<String> {
    let c: Vec<char> = s.chars().collect();
    let mut out = findall(&c, match_commas);
    out.extend(findall(&c, match_scientific));
    out.extend(findall(&c, match_simple));
    out
}

/// `re.findall` for a pattern given as a matcher at a start position (end of the match, the
/// matches here are never empty).
fn findall(c: &[char], m: fn(&[char], usize) -> Option<usize>) -> Vec<String> {
    let mut out = vec![];
    let mut i = 0;
    while i < c.len() {
        match m(c, i) {
            Some(end) if end > i => {
                out.push(c[i..end].iter().collect());
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

fn digits_from(c: &[char], i: usize) -> usize {
    c[i.min(c.len())..]
        .iter()
        .take_while(|&&d| pyre::is_digit(d))
        .count()
}

/// `-?` then `rest`, trying the minus first as the greedy `?` does.
fn with_minus(c: &[char], i: usize, rest: impl Fn(usize) -> Option<usize>) -> Option<usize> {
    if c.get(i) == Some(&'-') {
        if let Some(e) = rest(i + 1) {
            return Some(e);
        }
    }
    rest(i)
}

/// `-?\b\d{1,3}(?:,\d{3})+\b`
fn match_commas(c: &[char], i: usize) -> Option<usize> {
    with_minus(c, i, |q| {
        if !pyre::is_boundary(c, q) {
            return None;
        }
        let n = digits_from(c, q).min(3);
        // \d{1,3} backtracks from 3 down to 1; (?:,\d{3})+ greedy, then backtracks groups.
        for k in (1..=n).rev() {
            let mut ends = vec![];
            let mut p = q + k;
            while c.get(p) == Some(&',') && digits_from(c, p + 1) >= 3 {
                p += 4;
                ends.push(p);
            }
            for &e in ends.iter().rev() {
                if pyre::is_boundary(c, e) {
                    return Some(e);
                }
            }
        }
        None
    })
}

/// `[eE][+-]?\d+` at `p`: its end (greedy \d+).
fn exponent(c: &[char], p: usize) -> Option<usize> {
    if !matches!(c.get(p), Some('e' | 'E')) {
        return None;
    }
    let mut q = p + 1;
    if matches!(c.get(q), Some('+' | '-')) {
        q += 1;
    }
    let n = digits_from(c, q);
    (n > 0).then_some(q + n)
}

/// `-?\d+(?:\.\d+)?[eE][+-]?\d+`
fn match_scientific(c: &[char], i: usize) -> Option<usize> {
    with_minus(c, i, |q| {
        let n = digits_from(c, q);
        // \d+ backtracking cannot help: [.eE] must follow the digits.
        if n == 0 {
            return None;
        }
        let p = q + n;
        if c.get(p) == Some(&'.') {
            let f = digits_from(c, p + 1);
            if f > 0 {
                if let Some(e) = exponent(c, p + 1 + f) {
                    return Some(e);
                }
            }
        }
        exponent(c, p)
    })
}

/// `-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])`
fn match_simple(c: &[char], i: usize) -> Option<usize> {
    let tail_ok = |e: usize| {
        exponent(c, e).is_none() && !matches!(c.get(e), Some(&d) if d == ',' || pyre::is_digit(d))
    };
    with_minus(c, i, |q| {
        let n = digits_from(c, q);
        // \d+\.\d+ (each \d+ backtracking; only the longest runs can satisfy the lookahead)
        for k in (1..=n).rev() {
            if c.get(q + k) == Some(&'.') {
                let f = digits_from(c, q + k + 1);
                for j in (1..=f).rev() {
                    if tail_ok(q + k + 1 + j) {
                        return Some(q + k + 1 + j);
                    }
                }
            }
        }
        // \.\d+
        if c.get(q) == Some(&'.') {
            let f = digits_from(c, q + 1);
            for j in (1..=f).rev() {
                if tail_ok(q + 1 + j) {
                    return Some(q + 1 + j);
                }
            }
        }
        // \d+\b
        for k in (1..=n).rev() {
            if pyre::is_boundary(c, q + k) && tail_ok(q + k) {
                return Some(q + k);
            }
        }
        None
    })
}

/// `get_key_subresponses` of `parse_open_response`: the tails after the answer indicators.
fn get_key_subresponses(response: &str) -> Vec<String> {
    let response = pystr::strip(response).trim_matches('.').to_lowercase();
    // re.split(r"\.\s(?=[A-Z])|\n", ...) on a lower-cased string: [A-Z] never follows any
    // more, so only newlines split.
    let sub_responses: Vec<&str> = response.split('\n').collect();
    let mut indicators = vec![
        "could be ",
        "so ",
        "is ",
        "thus ",
        "therefore ",
        "final ",
        "answer ",
        "result ",
    ];
    let mut key_responses = vec![];
    for (index, resp) in sub_responses.iter().enumerate() {
        if index == sub_responses.len() - 1 {
            indicators.push("=");
        }
        let mut shortest: Option<String> = None;
        for ind in &indicators {
            if resp.contains(ind) {
                let tail = pystr::strip(resp.split(ind).last().unwrap_or("")).to_string();
                // `if not shortest_key_response`: an empty tail is replaced by the next one.
                match &shortest {
                    Some(s) if !s.is_empty() => {
                        if tail.chars().count() < s.chars().count() {
                            shortest = Some(tail);
                        }
                    }
                    _ => shortest = Some(tail),
                }
            }
        }
        if let Some(s) = shortest.filter(|s| !s.is_empty()) {
            if ![":", ",", ".", "!", "?", ";", "'"].contains(&pystr::strip(&s)) {
                key_responses.push(s);
            }
        }
    }
    if key_responses.is_empty() {
        return vec![response];
    }
    key_responses
}

/// `parse_open_response(response)`: the key sub-responses, the numbers in them, each
/// normalised, duplicates removed. lmms-eval returns `list(set(...))`, whose order depends on
/// Python's string hashing (PYTHONHASHSEED); this keeps the first occurrences in order, the
/// same elements (the judge, [`eval_open`], does not depend on the order).
pub fn parse_open_response(response: &str) -> Vec<OpenPred> {
    let key_responses = get_key_subresponses(response);
    let mut pred_list: Vec<String> = key_responses.clone();
    for resp in &key_responses {
        pred_list.extend(extract_numbers(resp));
    }
    let mut out: Vec<OpenPred> = vec![];
    for p in &pred_list {
        for n in normalize_str(p) {
            // set semantics: equal strings, equal floats (NaN never equal, -0.0 == 0.0).
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// `eval_multi_choice(gold_i, pred_i)`: exact equality.
pub fn eval_multi_choice(gold: &str, pred: &str) -> bool {
    gold == pred
}

/// `eval_open(gold_i, pred_i)` for a string answer: a string prediction is right when it
/// contains a normalised string answer, a number when it equals a numeric answer.
pub fn eval_open(gold: &str, pred: &[OpenPred]) -> bool {
    let norm_answers = normalize_str(gold);
    pred.iter().any(|p| match p {
        OpenPred::Str(s) => norm_answers
            .iter()
            .any(|a| matches!(a, OpenPred::Str(a) if s.contains(a.as_str()))),
        OpenPred::Num(x) => norm_answers
            .iter()
            .any(|a| matches!(a, OpenPred::Num(y) if x == y)),
    })
}

/// `evaluate_mmmu(samples)`: the fraction judged correct (`pred_correct / len(samples)`).
fn evaluate_mmmu(samples: &[&Map<String, Value>]) -> Result<f64, String> {
    let mut correct = 0usize;
    for s in samples {
        let qt = s.get("question_type").and_then(Value::as_str);
        let gold = s
            .get("answer")
            .and_then(Value::as_str)
            .ok_or("an mmmu_acc value without a string `answer`")?;
        let pred = s
            .get("parsed_pred")
            .ok_or("an mmmu_acc value without `parsed_pred`")?;
        let ok = if qt == Some("multiple-choice") {
            pred.as_str().is_some_and(|p| eval_multi_choice(gold, p))
        } else {
            let preds: Vec<OpenPred> = pred
                .as_array()
                .ok_or("an open question's `parsed_pred` should be a list")?
                .iter()
                .map(|v| OpenPred::from_json(v).ok_or(format!("bad parsed_pred element {v}")))
                .collect::<Result<_, _>>()?;
            eval_open(gold, &preds)
        };
        correct += ok as usize;
    }
    Ok(correct as f64 / samples.len() as f64)
}

/// `mmmu_aggregate_results(results)`: accuracy per subject (`subdomain`, in first-seen
/// order), then the instance-level accuracy over all subjects (`calculate_ins_level_acc`:
/// `sum(acc * n) / sum(n)` in that order), rounded to 5 decimals. The per-domain table
/// lmms-eval prints does not change the number.
pub fn mmmu_aggregate_results(values: &[Value]) -> Result<f64, String> {
    let mut subsets: Vec<(String, Vec<&Map<String, Value>>)> = vec![];
    for v in values {
        let m = v.as_object().ok_or("mmmu_acc values are dicts")?;
        let sub = m
            .get("subdomain")
            .and_then(Value::as_str)
            .ok_or("an mmmu_acc value without `subdomain`")?;
        match subsets.iter_mut().find(|(k, _)| k == sub) {
            Some((_, v)) => v.push(m),
            None => subsets.push((sub.to_string(), vec![m])),
        }
    }
    let mut acc = 0.0;
    let mut ins_num = 0usize;
    for (_, samples) in &subsets {
        acc += evaluate_mmmu(samples)? * samples.len() as f64;
        ins_num += samples.len();
    }
    if ins_num == 0 {
        return Ok(0.0);
    }
    Ok(py_round(acc / ins_num as f64, 5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abcd() -> (Vec<String>, Vec<(String, String)>) {
        let all: Vec<String> = ["A", "B", "C", "D"].iter().map(|s| s.to_string()).collect();
        let idx = all
            .iter()
            .zip(["cat", "dog", "red fox", "Bird"])
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        (all, idx)
    }

    #[test]
    fn multi_choice_known_answers() {
        // Values from lmms-eval's parse_multi_choice_response (CPython 3.11).
        let (all, idx) = abcd();
        let mut rng = PyRandom::seed(0);
        let p = |r: &str, rng: &mut PyRandom| parse_multi_choice_response(r, &all, &idx, rng);
        assert_eq!(p("(B)", &mut rng).unwrap(), "B");
        assert_eq!(p("The answer is (B), not (C)", &mut rng).unwrap(), "C");
        assert_eq!(p("A or B", &mut rng).unwrap(), "B");
        assert_eq!(p("C.", &mut rng).unwrap(), "C");
        assert_eq!(p("I am quite sure it is a red fox", &mut rng).unwrap(), "C");
        assert_eq!(p("it is a cat or a dog, surely", &mut rng).unwrap(), "B");
        // random.seed(0); random.choice("ABCD") == "D"
        assert_eq!(p("nothing", &mut rng).unwrap(), "D");
        assert!(parse_multi_choice_response("x", &[], &[], &mut rng).is_err());
    }

    #[test]
    fn numbers_known_answers() {
        // re.findall with the three MMMU patterns, concatenated.
        assert_eq!(
            extract_numbers("1,000 and -2.5e3 then 3.14, 7 and 8kg -9"),
            vec!["1,000", "-2.5e3", "000", "-2", "3", "3", "7", "-9"]
        );
        assert_eq!(extract_numbers("12,34 .5"), vec!["34", ".5"]);
        assert_eq!(extract_numbers("1e5"), vec!["1e5", "5"]);
    }

    #[test]
    fn open_known_answers() {
        assert_eq!(
            parse_open_response("The answer is 42."),
            vec![OpenPred::Num(42.0)]
        );
        assert_eq!(
            parse_open_response("so x = 3,000"),
            vec![OpenPred::Num(3000.0), OpenPred::Num(0.0)]
        );
        assert!(eval_open("3000", &parse_open_response("so x = 3,000")));
        assert!(eval_open("a", &parse_open_response("the answer is a ")));
        assert!(!eval_open("b", &parse_open_response("bb")));
        assert_eq!(
            normalize_str(" B "),
            vec![OpenPred::Str(" b".into()), OpenPred::Str("b ".into())]
        );
    }
}
