//! Python's `str` methods where Rust's differ: what counts as whitespace.

/// `str.isspace()` for one character: Unicode White_Space plus the ASCII separators
/// U+001C..U+001F, which Python treats as whitespace and Rust's `char::is_whitespace` does not.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `s.strip()`.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// `s.split()` (no argument): runs of whitespace separate, empty pieces dropped.
pub fn split_whitespace(s: &str) -> Vec<&str> {
    s.split(is_py_space).filter(|p| !p.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_matches_python() {
        assert_eq!(strip(" \t\n\u{1f}a b\u{3000}"), "a b");
        assert_eq!(split_whitespace(" a  b\u{1c}c "), vec!["a", "b", "c"]);
        assert_eq!(strip(""), "");
    }
}
