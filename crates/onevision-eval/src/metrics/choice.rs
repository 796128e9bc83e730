//! Option-letter matching: MMBench's rule-based matcher (`can_infer_option`, `can_infer_text`,
//! `can_infer` of lmms_eval/tasks/mmbench/mmbench_evals.py, from VLMEvalKit), which lmms-eval
//! runs before (and, without a GPT judge, instead of) asking GPT.

use crate::metrics::pystr;

/// `can_infer_option(answer, num_choice=5)`: the letter among the first `num_choice` of
/// A..Z that the answer names, or None (Python's False). A single bare letter among the
/// whitespace-separated words (unless "A" is one of more than three words: "A" may be an
/// article), else exactly one of the forms `A.` `A,` `A:` `A)` `A).` `(A)` `(A).` `:A` `:A,`
/// `:A.` `:A)` `:A).`, tried in that order.
pub fn can_infer_option(answer: &str, num_choice: usize) -> Option<char> {
    let choices: Vec<char> = ('A'..='Z').take(num_choice).collect();
    if answer.contains("Failed to obtain answer via API") {
        return None;
    }
    let splits: Vec<&str> = pystr::split_whitespace(answer);
    let has = |s: &str| splits.contains(&s);
    let count = |prefix: &str, suffix: &str| {
        choices
            .iter()
            .filter(|c| has(&format!("{prefix}{c}{suffix}")))
            .count()
    };
    if count("", "") == 1 {
        for ch in &choices {
            if has("A") && splits.len() > 3 {
                // "A might be a quantifier in the string" (lmms-eval logs and falls through).
                break;
            }
            if has(&ch.to_string()) {
                return Some(*ch);
            }
        }
    }
    const TUPS: [(&str, &str); 12] = [
        ("", "."),
        ("", ","),
        ("", ":"),
        ("", ")"),
        ("", ")."),
        ("(", ")"),
        ("(", ")."),
        (":", ""),
        (":", ","),
        (":", "."),
        (":", ")"),
        (":", ")."),
    ];
    for (prefix, suffix) in TUPS {
        if count(prefix, suffix) == 1 {
            for ch in &choices {
                if has(&format!("{prefix}{ch}{suffix}")) {
                    return Some(*ch);
                }
            }
        }
    }
    None
}

/// `can_infer_text(answer, choices)`: the one option (letter, text) whose lower-cased text is a
/// substring of the lower-cased answer; None when none or several are. `choices` in the dict's
/// order (A..D as `build_choices` inserts them).
pub fn can_infer_text(answer: &str, choices: &[(char, String)]) -> Option<char> {
    let answer = answer.to_lowercase();
    let cands: Vec<char> = choices
        .iter()
        .filter(|(_, text)| answer.contains(&text.to_lowercase()))
        .map(|(k, _)| *k)
        .collect();
    (cands.len() == 1).then(|| cands[0])
}

/// `can_infer(answer, choices)`: the letter forms first (over A..E), then the option texts.
pub fn can_infer(answer: &str, choices: &[(char, String)]) -> Option<char> {
    can_infer_option(answer, 5).or_else(|| can_infer_text(answer, choices))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abcd() -> Vec<(char, String)> {
        vec![
            ('A', "a cup".into()),
            ('B', "a plate".into()),
            ('C', "nan".into()),
            ('D', "Fork".into()),
        ]
    }

    #[test]
    fn can_infer_known_answers() {
        // Values from lmms-eval's MMBench_Evaluator (CPython 3.11).
        assert_eq!(can_infer_option("B", 5), Some('B'));
        assert_eq!(can_infer_option("The answer is (C).", 5), Some('C'));
        assert_eq!(can_infer_option("A B", 5), None);
        assert_eq!(can_infer_option("A dog is B", 5), None);
        assert_eq!(can_infer_option("It is E", 5), Some('E'));
        assert_eq!(can_infer_option("answer :D", 5), Some('D'));
        assert_eq!(
            can_infer_option("Failed to obtain answer via API B", 5),
            None
        );
        assert_eq!(can_infer("I see a FORK", &abcd()), Some('D'));
        assert_eq!(can_infer("banana", &abcd()), Some('C'));
        assert_eq!(can_infer("a cup on a plate", &abcd()), None);
    }
}
