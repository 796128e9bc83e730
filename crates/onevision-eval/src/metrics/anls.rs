//! ANLS (lmms_eval/api/metrics.py `anls`, from Qwen-VL's infographicsvqa_eval.py) and how
//! lmms-eval 0.2.1's default `process_results` applies it to a document with several references.

use crate::metrics::pystr;

/// lmms_eval/api/metrics.py `levenshtein_distance`: edits between two strings, counted in code
/// points (Python `str` indexing).
pub fn levenshtein_distance(s1: &str, s2: &str) -> usize {
    let a: Vec<char> = s1.chars().collect();
    let b: Vec<char> = s2.chars().collect();
    let (s1, s2) = if a.len() > b.len() { (b, a) } else { (a, b) };
    let mut distances: Vec<usize> = (0..=s1.len()).collect();
    for (i2, c2) in s2.iter().enumerate() {
        let mut next = Vec::with_capacity(s1.len() + 1);
        next.push(i2 + 1);
        for (i1, c1) in s1.iter().enumerate() {
            if c1 == c2 {
                next.push(distances[i1]);
            } else {
                let last = next[next.len() - 1];
                next.push(1 + distances[i1].min(distances[i1 + 1]).min(last));
            }
        }
        distances = next;
    }
    distances[distances.len() - 1]
}

/// `" ".join(s.strip().lower().split())`.
fn normalize(s: &str) -> String {
    pystr::split_whitespace(&pystr::strip(s).to_lowercase()).join(" ")
}

/// lmms_eval/api/metrics.py `anls(references, predictions, thresh_hold)["anls"]` for one
/// prediction: `1 - min(distance / length)` over the references, 0 below `thresh_hold`.
///
/// As upstream, the distance is between the normalised strings (stripped, lower-cased,
/// whitespace runs joined by one space) but the length is `max(len(answer.upper()),
/// len(prediction.upper()))` of the strings as given (`"ß".upper()` is `"SS"`: two). None for
/// no references (Python's `min([])` raises).
pub fn anls(references: &[&str], prediction: &str, thresh_hold: f64) -> Option<f64> {
    let det = normalize(prediction);
    let det_len = prediction.to_uppercase().chars().count();
    let mut min: Option<f64> = None;
    for answer in references {
        let gt = normalize(answer);
        let dist = levenshtein_distance(&gt, &det);
        let length = answer.to_uppercase().chars().count().max(det_len);
        let v = if length == 0 {
            0.0
        } else {
            dist as f64 / length as f64
        };
        // Python's min keeps the first of equal values; for floats that is the same number.
        min = Some(match min {
            Some(m) if m <= v => m,
            _ => v,
        });
    }
    let q = 1.0 - min?;
    Some(if q < thresh_hold { 0.0 } else { q })
}

/// ANLS as lmms-eval 0.2.1 scores a `docvqa_val` / `infovqa_val` document: the yaml's
/// `doc_to_target: "answers"` is a list, so ConfigurableTask.process_results (lmms_eval/api/
/// task.py, `multiple_target` branch) calls `anls` once per reference and returns 1.0 when
/// any score is non-zero, i.e. when some reference reaches ANLS >= 0.5, else 0.0 (fixed to
/// the max in v0.3.0, lmms-eval #389). No references scores 0.0 (`any([])`).
pub fn anls_any_reference(references: &[&str], prediction: &str) -> f64 {
    let any = references
        .iter()
        .any(|r| anls(&[r], prediction, 0.5).is_some_and(|s| s != 0.0));
    if any {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein() {
        assert_eq!(levenshtein_distance("kitten", "sitting"), 3);
        assert_eq!(levenshtein_distance("", "abc"), 3);
        assert_eq!(levenshtein_distance("abc", ""), 3);
        assert_eq!(levenshtein_distance("straße", "strasse"), 2);
    }

    #[test]
    fn anls_known_answers() {
        assert_eq!(anls(&["ITC Limited"], "itc limited", 0.5), Some(1.0));
        // 1 edit over 5 characters.
        assert_eq!(anls(&["03/17"], "03/18", 0.5), Some(1.0 - 1.0 / 5.0));
        assert_eq!(anls(&["abc"], "xyz", 0.5), Some(0.0));
        // Whitespace is normalised for the distance, not for the length.
        assert_eq!(anls(&["a  b"], "a b", 0.5), Some(1.0));
        assert_eq!(anls(&["ab"], "a    b", 0.5), Some(1.0 - 1.0 / 6.0));
        // "ß".upper() is "SS": length 2, distance 2 -> 0.
        assert_eq!(anls(&["ß"], "ss", 0.5), Some(0.0));
        assert_eq!(anls(&[""], "", 0.5), Some(1.0));
        assert_eq!(anls(&[], "x", 0.5), None);
    }

    #[test]
    fn any_reference_is_all_or_nothing() {
        assert_eq!(anls_any_reference(&["1,234.00", "xyz"], "1,234.0"), 1.0);
        assert_eq!(anls_any_reference(&["abcdef"], "abcxyz"), 1.0);
        assert_eq!(anls_any_reference(&["abcdef"], "abxyzw"), 0.0);
        assert_eq!(anls_any_reference(&[], "x"), 0.0);
    }
}
