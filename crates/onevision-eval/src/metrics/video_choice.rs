//! The answer extractors of lmms-eval 0.2.1's video multiple-choice tasks, each its task's own
//! function (they share names upstream, not code):
//! - Video-MME `extract_characters_regex` (lmms_eval/tasks/videomme/utils.py);
//! - MLVU `extract_characters_regex` (lmms_eval/tasks/mlvu/utils.py);
//! - EgoSchema `parse_multi_choice_response` (lmms_eval/tasks/egoschema/utils.py), a variant of
//!   MMMU's parser ([`crate::metrics::mmmu`]) that collects every kind of candidate at once and
//!   takes the one found first.

use crate::error::DocError;
use crate::metrics::pyrandom::PyRandom;
use crate::metrics::pystr;

/// Video-MME's answer prefixes, as the Python list literal spells them: two pairs of adjacent
/// string literals are concatenated by Python into one entry each.
const VIDEOMME_PREFIXES: [&str; 6] = [
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option isThe correct option is",
    "Best answer:Best option:",
];

/// Video-MME `extract_characters_regex(s)`: strip, remove the answer prefixes (in order),
/// "" when more than 10 words remain and none of A-D appears, else the first of A, B, C, D
/// (upper case only), or "".
pub fn videomme_extract_characters_regex(s: &str) -> String {
    let mut s = pystr::strip(s).to_string();
    for p in VIDEOMME_PREFIXES {
        s = s.replace(p, "");
    }
    let first = s.chars().find(|c| matches!(c, 'A'..='D'));
    if pystr::split_whitespace(&s).len() > 10 && first.is_none() {
        return String::new();
    }
    first.map(String::from).unwrap_or_default()
}

/// MLVU `extract_characters_regex(s)` (0.2.1): strip; with a `)`, the one character before
/// the first `)` (`s[index - 1:index]`, empty when `)` comes first); else the whole text.
pub fn mlvu_extract_characters_regex(s: &str) -> String {
    let s = pystr::strip(s);
    match s.find(')') {
        Some(i) => s[..i].chars().last().map(String::from).unwrap_or_default(),
        None => s.to_string(),
    }
}

/// EgoSchema `parse_multi_choice_response(response, all_choices, index2ans)`, returning the
/// predicted letter (the upstream also returns whether any candidate was found; its caller
/// drops it). Unlike MMMU's: `(X)`, `X ` and `X.` candidates are all collected (as those
/// strings), the *first* occurrence wins (`np.argmin` of each candidate's `rfind`), and the
/// winner is cleaned of `(`, `)` and `.`. Option texts count only when no letter form is found
/// and the response has more than five words; then the earliest last occurrence wins.
/// No candidate -> `random.choice(all_choices)` on `rng`, lmms-eval's global `random`.
pub fn egoschema_parse_multi_choice_response(
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
    let mut candidates: Vec<String> = vec![];
    for choice in all_choices {
        let c = format!("({choice})");
        if response.contains(&c) {
            candidates.push(c);
        }
    }
    for choice in all_choices {
        let c = format!("{choice} ");
        if response.contains(&c) {
            candidates.push(c);
        }
    }
    for choice in all_choices {
        let c = format!("{choice}.");
        if response.contains(&c) {
            candidates.push(c);
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
    let clean = |c: &str| pystr::strip(&c.replace(['(', ')', '.'], "")).to_string();
    match candidates.len() {
        0 => rng.choice(all_choices).cloned().ok_or_else(|| {
            DocError::new("egoschema: no options to choose from (random.choice of an empty list)")
        }),
        1 => Ok(clean(&candidates[0])),
        _ => {
            // Byte offsets order the same way as Python's character offsets.
            let mut best: Option<(usize, &String)> = None;
            for can in &candidates {
                let pos = if index_ans {
                    response.rfind(can.as_str())
                } else {
                    let ans = index2ans
                        .iter()
                        .find(|(k, _)| k == can)
                        .map(|(_, a)| a.to_lowercase())
                        .unwrap_or_default();
                    lower.rfind(&ans)
                };
                // Every candidate was found, so rfind is never -1 here.
                let pos = pos.unwrap_or(0);
                if best.is_none_or(|(b, _)| pos < b) {
                    best = Some((pos, can));
                }
            }
            Ok(best.map(|(_, c)| clean(c)).unwrap_or_default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values printed by lmms-eval 0.2.1's functions.
    #[test]
    fn videomme_known_answers() {
        assert_eq!(
            videomme_extract_characters_regex("The best answer is C."),
            "C"
        );
        assert_eq!(videomme_extract_characters_regex("(B) because A"), "B");
        assert_eq!(
            videomme_extract_characters_regex("the man rides a bike in the park on a sunny day"),
            ""
        );
        assert_eq!(
            videomme_extract_characters_regex("Best answer:Best option: c"),
            ""
        );
        assert_eq!(videomme_extract_characters_regex("Best answer: c"), "B");
        assert_eq!(videomme_extract_characters_regex(""), "");
    }

    #[test]
    fn mlvu_known_answers() {
        assert_eq!(mlvu_extract_characters_regex("B) a cat"), "B");
        assert_eq!(mlvu_extract_characters_regex("(C)"), "C");
        assert_eq!(mlvu_extract_characters_regex(") x"), "");
        assert_eq!(mlvu_extract_characters_regex("猫)"), "猫");
        assert_eq!(mlvu_extract_characters_regex(" D "), "D");
    }

    #[test]
    fn egoschema_known_answers() {
        let choices: Vec<String> = "ABCDE".chars().map(String::from).collect();
        let index2ans: Vec<(String, String)> =
            ["A. cats", "B. dogs", "C. a car", "D. rain", "E. sun"]
                .iter()
                .zip(&choices)
                .map(|(a, l)| (l.clone(), a.to_string()))
                .collect();
        let mut rng = PyRandom::seed(0);
        let p = |r: &str, rng: &mut PyRandom| {
            egoschema_parse_multi_choice_response(r, &choices, &index2ans, rng).unwrap()
        };
        // the first found wins: "B." at 1 before "(A)" at 4
        assert_eq!(p("B. (A)", &mut rng), "B");
        assert_eq!(p("(C)", &mut rng), "C");
        assert_eq!(
            p("I think that it shows c. a car in the end", &mut rng),
            "C"
        );
        // nothing found: random.choice("ABCDE") after random.seed(0) gives "D"
        let mut rng = PyRandom::seed(0);
        assert_eq!(p("no idea", &mut rng), "D");
    }
}
