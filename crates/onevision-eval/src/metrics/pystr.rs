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

/// Python's full titlecase mapping of one character (`_PyUnicode_ToTitleFull`, Unicode 14):
/// the characters whose titlecase is not their uppercase (digraphs, ligatures, `ß`, Greek
/// with ypogegrammeni, Georgian Mkhedruli, which has an uppercase but titlecases to itself),
/// otherwise the uppercase.
pub fn title_char(c: char) -> String {
    let cp = c as u32;
    let same = |x: u32| char::from_u32(x).map(String::from).unwrap_or_default();
    let special: Option<&str> = match cp {
        0xDF => Some("Ss"),
        0x587 => Some("\u{535}\u{582}"),
        0x1FB2 => Some("\u{1FBA}\u{345}"),
        0x1FB4 => Some("\u{386}\u{345}"),
        0x1FB7 => Some("\u{391}\u{342}\u{345}"),
        0x1FC2 => Some("\u{1FCA}\u{345}"),
        0x1FC4 => Some("\u{389}\u{345}"),
        0x1FC7 => Some("\u{397}\u{342}\u{345}"),
        0x1FF2 => Some("\u{1FFA}\u{345}"),
        0x1FF4 => Some("\u{38F}\u{345}"),
        0x1FF7 => Some("\u{3A9}\u{342}\u{345}"),
        0xFB00 => Some("Ff"),
        0xFB01 => Some("Fi"),
        0xFB02 => Some("Fl"),
        0xFB03 => Some("Ffi"),
        0xFB04 => Some("Ffl"),
        0xFB05 | 0xFB06 => Some("St"),
        0xFB13 => Some("\u{544}\u{576}"),
        0xFB14 => Some("\u{544}\u{565}"),
        0xFB15 => Some("\u{544}\u{56B}"),
        0xFB16 => Some("\u{54E}\u{576}"),
        0xFB17 => Some("\u{544}\u{56D}"),
        _ => None,
    };
    if let Some(s) = special {
        return s.to_string();
    }
    match cp {
        0x1C4..=0x1C6 => same(0x1C5),
        0x1C7..=0x1C9 => same(0x1C8),
        0x1CA..=0x1CC => same(0x1CB),
        0x1F1..=0x1F3 => same(0x1F2),
        0x10D0..=0x10FA | 0x10FD..=0x10FF => same(cp),
        // ᾀ..ᾇ -> ᾈ..ᾏ (one character; the uppercase is two), and ᾈ..ᾏ stay.
        0x1F80..=0x1FAF if cp & 0xF < 8 => same(cp + 8),
        0x1F80..=0x1FAF => same(cp),
        0x1FB3 | 0x1FBC => same(0x1FBC),
        0x1FC3 | 0x1FCC => same(0x1FCC),
        0x1FF3 | 0x1FFC => same(0x1FFC),
        _ => c.to_uppercase().collect(),
    }
}

/// `s.capitalize()` (Python 3.8+): the first character titlecased ([`title_char`]), the rest
/// lower-cased with the whole string as context (a final `Σ` after the first letter is `ς`).
pub fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return String::new();
    };
    let skip = first.to_lowercase().count();
    let mut out = title_char(first);
    out.extend(s.to_lowercase().chars().skip(skip));
    out
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

    #[test]
    fn capitalize_matches_python() {
        // Values from CPython 3.11.
        assert_eq!(capitalize("what is THIS?"), "What is this?");
        assert_eq!(capitalize("\u{1c6}ungla"), "\u{1c5}ungla");
        assert_eq!(capitalize("\u{df}e"), "Sse");
        assert_eq!(capitalize("\u{fb01}rst"), "First");
        assert_eq!(capitalize("\u{10d0}\u{10d1}"), "\u{10d0}\u{10d1}");
        assert_eq!(capitalize("\u{1f80}x"), "\u{1f88}x");
        assert_eq!(capitalize("\u{391}\u{3a3}"), "\u{391}\u{3c2}");
        assert_eq!(capitalize("\u{130}STANBUL"), "\u{130}stanbul");
        assert_eq!(capitalize("\u{3a3}A"), "\u{3a3}a");
        assert_eq!(capitalize(""), "");
    }
}
