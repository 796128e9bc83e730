//! ChartQA's relaxed accuracy: lmms_eval/tasks/chartqa/utils.py `relaxed_correctness` (from
//! Qwen-VL's evaluate_vqa.py).

use crate::metrics::pylit::py_float;

/// `_to_float`: `float(text.rstrip("%")) / 100.0` when the text ends with `%`, else
/// `float(text)`; None where `float` raises. Python's `float` takes more than Rust's parser:
/// surrounding whitespace, `1_000`, `inf`/`nan`, digits of any script ([`py_float`]).
fn to_float(text: &str) -> Option<f64> {
    if text.ends_with('%') {
        py_float(text.trim_end_matches('%')).map(|x| x / 100.0)
    } else {
        py_float(text)
    }
}

/// `relaxed_correctness(prediction, target, max_relative_change)`: when the prediction reads
/// as a number and the target as a non-zero one (`if prediction_float is not None and
/// target_float`: 0.0 is falsy, NaN is not), `|p - t| / |t| <= max_relative_change`; otherwise
/// `prediction.lower() == target.lower()`.
pub fn relaxed_correctness(prediction: &str, target: &str, max_relative_change: f64) -> bool {
    match (to_float(prediction), to_float(target)) {
        (Some(p), Some(t)) if t != 0.0 => (p - t).abs() / t.abs() <= max_relative_change,
        _ => prediction.to_lowercase() == target.to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_within_five_percent() {
        assert!(relaxed_correctness("14", "14", 0.05));
        assert!(relaxed_correctness("14.7", "14", 0.05));
        assert!(!relaxed_correctness("14.71", "14", 0.05));
        assert!(!relaxed_correctness("45", "45%", 0.05));
        assert!(relaxed_correctness("0.45", "45%", 0.05));
        assert!(relaxed_correctness("1_000", "1000", 0.05));
        assert!(relaxed_correctness("\u{ff11}\u{ff14}", "14", 0.05));
    }

    #[test]
    fn strings_and_zero_targets() {
        assert!(relaxed_correctness("brazil", "Brazil", 0.05));
        assert!(!relaxed_correctness("Brazil.", "Brazil", 0.05));
        // A zero target is compared as a string.
        assert!(relaxed_correctness("0", "0", 0.05));
        assert!(!relaxed_correctness("0.0", "0", 0.05));
        // NaN is truthy, and compares false.
        assert!(!relaxed_correctness("nan", "nan", 0.05));
        assert!(!relaxed_correctness("inf", "inf", 0.05));
    }
}
