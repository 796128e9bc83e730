//! lmms-eval's `exact_match` metric: HF evaluate's `exact_match` (lmms_eval/api/metrics.py
//! `exact_match_fn` loads it from the Hub; its code is lm_eval.api.metrics
//! `exact_match_hf_evaluate`), for the one prediction and one reference lmms-eval's default
//! `process_results` passes it.
//!
//! The strings go through numpy: `np.asarray([s])` is a `<U{len(s)}` array, so
//! - `np.char.lower` writes `str.lower()` back into that width: a lower-case form longer than
//!   the string is cut (`"İ"` lowers to `"i̇"`, two code points, stored as `"i"`);
//! - reading an element drops trailing NULs, and `==` compares without them (`"B\0" == "B"`);
//! - `ignore_punctuation` deletes `string.punctuation`, the 32 ASCII marks only (`"。"` stays).

/// Python's `string.punctuation`.
const PUNCTUATION: &str = r##"!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~"##;

/// One string as the `<U{n}` numpy array `exact_match_hf_evaluate` builds, after its
/// `np.char.lower` / `np.char.translate` steps, read back.
fn numpy_normalized(s: &str, ignore_case: bool, ignore_punctuation: bool) -> String {
    // numpy gives an empty string a width of 1.
    let width = s.chars().count().max(1);
    let mut v: String = s.trim_end_matches('\0').to_string();
    if ignore_case {
        // `str.lower()` (Rust's `to_lowercase` has the same full mappings and final-sigma
        // rule), stored back into `width` code points.
        v = v.to_lowercase().chars().take(width).collect();
        v.truncate(v.trim_end_matches('\0').len());
    }
    if ignore_punctuation {
        v.retain(|c| !PUNCTUATION.contains(c));
        v.truncate(v.trim_end_matches('\0').len());
    }
    v
}

/// `exact_match_hf_evaluate(predictions=[prediction], references=[reference], ignore_case=..,
/// ignore_punctuation=..)["exact_match"]`: `np.mean([prediction == reference])`, 1.0 or 0.0.
pub fn exact_match_hf_evaluate(
    prediction: &str,
    reference: &str,
    ignore_case: bool,
    ignore_punctuation: bool,
) -> f64 {
    let p = numpy_normalized(prediction, ignore_case, ignore_punctuation);
    let r = numpy_normalized(reference, ignore_case, ignore_punctuation);
    if p == r {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn em(p: &str, r: &str) -> f64 {
        exact_match_hf_evaluate(p, r, true, true)
    }

    #[test]
    fn case_and_ascii_punctuation_are_ignored() {
        assert_eq!(em("(B)", "B"), 1.0);
        assert_eq!(em("b!", "B"), 1.0);
        assert_eq!(em("B。", "B"), 0.0);
        assert_eq!(em("\u{201c}B\u{201d}", "B"), 0.0);
        assert_eq!(em("B. cat", "B"), 0.0);
        assert_eq!(em("", ""), 1.0);
        assert_eq!(exact_match_hf_evaluate("b", "B", false, true), 0.0);
        assert_eq!(exact_match_hf_evaluate("B.", "B", true, false), 0.0);
    }

    #[test]
    fn numpy_widths_and_trailing_nuls() {
        // np.char.lower(np.asarray(["İ"])) == ["i"]: the combining dot does not fit.
        assert_eq!(em("\u{130}", "I"), 1.0);
        assert_eq!(em("\u{130}", "i\u{307}"), 0.0);
        // "ßİx" lowers to four code points, cut to three: "ßi̇".
        assert_eq!(numpy_normalized("ßİx", true, false), "ßi\u{307}");
        assert_eq!(em("B\0", "B"), 1.0);
        assert_eq!(em("\0B", "B"), 0.0);
        assert_eq!(em("B\0.", "B"), 1.0);
    }
}
