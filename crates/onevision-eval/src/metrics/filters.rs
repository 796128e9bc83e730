//! lmms-eval's answer filters (the yaml's `filter_list`), as pure functions of one response.

use crate::metrics::pyre;

/// `MultiChoiceRegexFilter.apply` of lmms_eval/tasks/ai2d/utils.py (muirbench/utils.py has the
/// same class): `re.compile(r"^\s*([A-Z])\.").match(resp)` gives the letter, otherwise the
/// response unchanged. The yaml's `regex_pattern`, `group_select`, `ignore_case` and
/// `ignore_punctuation` go to the ExtendedRegexFilter constructor but this `apply` never reads
/// them; and unlike lmms_eval/filters/extraction.py's filter of the same name there is no
/// fallback to the option texts. `[A-Z]` is ASCII only (`"b."`, `"Ｂ."` stay as they are); `\s`
/// is Python's whitespace.
pub fn ai2d_multi_choice_regex_filter(resp: &str) -> String {
    let rest = resp.trim_start_matches(pyre::is_space);
    let mut chars = rest.chars();
    match (chars.next(), chars.next()) {
        (Some(letter), Some('.')) if letter.is_ascii_uppercase() => letter.to_string(),
        _ => resp.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_letter_or_the_response() {
        let f = ai2d_multi_choice_regex_filter;
        assert_eq!(f("B. cat"), "B");
        assert_eq!(f("  C."), "C");
        assert_eq!(f("\u{1f}D.E."), "D");
        assert_eq!(f("b. cat"), "b. cat");
        assert_eq!(f("(B)"), "(B)");
        assert_eq!(f("The answer is B."), "The answer is B.");
        assert_eq!(f("B"), "B");
        assert_eq!(f("AB."), "AB.");
        assert_eq!(f("\u{ff22}."), "\u{ff22}.");
        assert_eq!(f(""), "");
    }
}
