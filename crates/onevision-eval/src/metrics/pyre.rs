//! Python `re` character classes for `str` patterns (CPython 3.11, Unicode 14), for the
//! parsers that must match Python where Rust's `regex` differs or lacks lookarounds:
//! - `\w` is `str.isalnum()` (general categories L* and N*, checked against CPython for every
//!   code point) or `_`; Rust's `\w` also takes the marks (M*) and Join_Control;
//! - `\d` is category Nd (`str.isdecimal()`), as Rust's `\d`;
//! - `\s` is `str.isspace()` ([`crate::metrics::pystr::is_py_space`]); Rust's `\s` leaves out
//!   U+001C..U+001F;
//! - `\b` is a change of `\w`-ness between neighbouring characters.

use std::sync::OnceLock;

use regex::Regex;

fn class(re: &'static OnceLock<Regex>, pattern: &str, c: char) -> bool {
    let re = re.get_or_init(|| Regex::new(pattern).expect("a valid character class"));
    let mut buf = [0u8; 4];
    re.is_match(c.encode_utf8(&mut buf))
}

/// Python's `\w`: `c.isalnum() or c == "_"`.
pub fn is_word(c: char) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    class(&RE, r"^[\p{L}\p{N}]$", c)
}

/// Python's `\d`: a decimal digit of any script (category Nd).
pub fn is_digit(c: char) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    class(&RE, r"^\p{Nd}$", c)
}

/// Python's `\s`.
pub fn is_space(c: char) -> bool {
    crate::metrics::pystr::is_py_space(c)
}

/// The value of a decimal digit (`unicodedata.decimal`): Unicode lays every Nd digit out in
/// contiguous runs of ten starting at zero, so the value is the count of Nd characters before
/// it in its run, modulo 10.
pub fn digit_value(c: char) -> Option<u32> {
    if c.is_ascii_digit() {
        return c.to_digit(10);
    }
    if !is_digit(c) {
        return None;
    }
    let mut n = 0u32;
    let mut cp = c as u32;
    while cp > 0 {
        match char::from_u32(cp - 1) {
            Some(p) if is_digit(p) => {
                n += 1;
                cp -= 1;
            }
            _ => break,
        }
    }
    Some(n % 10)
}

/// Python's `\b` at char position `i` of `chars` (between `chars[i-1]` and `chars[i]`).
pub fn is_boundary(chars: &[char], i: usize) -> bool {
    let before = i > 0 && is_word(chars[i - 1]);
    let after = i < chars.len() && is_word(chars[i]);
    before != after
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_match_python() {
        // '²'.isalnum() and '½'.isalnum() are True; U+0301 (combining acute) and U+093E
        // (Devanagari vowel sign AA) are not \w in Python, though Rust's \w takes them.
        for c in ['a', 'Z', '0', '_', 'é', '猫', '²', '½', 'Ⅻ', '٣'] {
            assert!(is_word(c), "{c:?}");
        }
        for c in [' ', '-', '.', '\u{301}', '\u{93e}', '\u{200d}', '。'] {
            assert!(!is_word(c), "{c:?}");
        }
        assert!(is_digit('٣') && is_digit('５') && !is_digit('²') && !is_digit('½'));
        assert_eq!(digit_value('٣'), Some(3));
        assert_eq!(digit_value('５'), Some(5));
        assert_eq!(digit_value('\u{1d7d9}'), Some(1)); // MATHEMATICAL DOUBLE-STRUCK DIGIT ONE
        assert_eq!(digit_value('x'), None);
        let s: Vec<char> = "a b".chars().collect();
        assert!(is_boundary(&s, 0) && is_boundary(&s, 1) && !is_boundary(&[], 0));
    }
}
