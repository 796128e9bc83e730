//! Python's literal readers where the parsers depend on them: `float(str)`, `round(x, n)` and
//! `ast.literal_eval` of a list of strings (MMMU stores its options as a Python list's repr).

use crate::metrics::pyre;

/// `float(s)` for a `str` (CPython 3.11 `PyFloat_FromString`): decimal digits of any script
/// become ASCII and Unicode whitespace a space (`_PyUnicode_TransformDecimalAndSpaceToASCII`),
/// ASCII whitespace is stripped (only `\t\n\v\f\r` and space: `float("\x1c5")` fails),
/// underscores are allowed between digits only, then the C grammar: sign, digits, point,
/// exponent, or `inf`/`infinity`/`nan` in any case. None where Python raises ValueError.
pub fn py_float(s: &str) -> Option<f64> {
    let mut ascii = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else if pyre::is_space(c) {
            ascii.push(' ');
        } else if let Some(d) = pyre::digit_value(c) {
            ascii.push(char::from(b'0' + d as u8));
        } else {
            return None;
        }
    }
    let t = ascii.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'));
    let t = if t.contains('_') {
        // _Py_string_to_number_with_underscores
        let mut out = String::with_capacity(t.len());
        let mut prev = '\0';
        for c in t.chars() {
            if c == '_' {
                if !prev.is_ascii_digit() {
                    return None;
                }
            } else {
                if prev == '_' && !c.is_ascii_digit() {
                    return None;
                }
                out.push(c);
            }
            prev = c;
        }
        if prev == '_' {
            return None;
        }
        out
    } else {
        t.to_string()
    };
    // Rust's grammar for f64 is C's strtod without hex (both correctly rounded); reject the
    // inputs Rust reads and Python does not (none known besides whitespace, handled above).
    if t.is_empty() || t.chars().any(|c| c.is_ascii_whitespace()) {
        return None;
    }
    t.parse::<f64>().ok()
}

/// `round(x, ndigits)` for a float: CPython rounds the exact binary value to `ndigits`
/// decimals, ties to even (`_Py_dg_dtoa` mode 3), and reads it back; Rust's `{:.N}` formats
/// the exact value the same way.
pub fn py_round(x: f64, ndigits: usize) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let r: f64 = format!("{x:.ndigits$}").parse().unwrap_or(x);
    // round() keeps the sign of a result that rounds to zero (round(-0.001, 2) == -0.0).
    if r == 0.0 {
        0.0f64.copysign(x)
    } else {
        r
    }
}

/// `ast.literal_eval(s)` for a list (or tuple) of string literals, as MMMU's `options` column
/// holds them (`"['$6', '$7']"`): single, double or triple quotes, `r`/`u` prefixes, adjacent
/// literals concatenated, Python's escapes. Other element types are an error.
pub fn literal_eval_str_list(s: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut p = Lit { c: &chars, i: 0 };
    p.ws();
    let close = match p.next() {
        Some('[') => ']',
        Some('(') => ')',
        _ => return Err(format!("expected a Python list literal, got {s:?}")),
    };
    let mut out = vec![];
    loop {
        p.ws();
        if p.peek() == Some(close) {
            p.i += 1;
            break;
        }
        let mut item = p.string().map_err(|e| format!("{e} in {s:?}"))?;
        loop {
            p.ws();
            match p.peek() {
                Some('\'' | '"' | 'r' | 'R' | 'u' | 'U') => {
                    item.push_str(&p.string().map_err(|e| format!("{e} in {s:?}"))?)
                }
                _ => break,
            }
        }
        out.push(item);
        p.ws();
        match p.next() {
            Some(',') => {}
            Some(c) if c == close => break,
            _ => return Err(format!("expected `,` or `{close}` in {s:?}")),
        }
    }
    p.ws();
    if p.i != chars.len() {
        return Err(format!("trailing characters after the list in {s:?}"));
    }
    Ok(out)
}

struct Lit<'a> {
    c: &'a [char],
    i: usize,
}

impl Lit<'_> {
    fn peek(&self) -> Option<char> {
        self.c.get(self.i).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.i += 1;
        c
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r' | '\x0c')) {
            self.i += 1;
        }
    }

    /// One string literal, prefix and quotes included.
    fn string(&mut self) -> Result<String, String> {
        let mut raw = false;
        while let Some(c @ ('r' | 'R' | 'u' | 'U')) = self.peek() {
            raw |= matches!(c, 'r' | 'R');
            self.i += 1;
        }
        let q = match self.next() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err("expected a string literal".into()),
        };
        let triple = self.c.get(self.i) == Some(&q) && self.c.get(self.i + 1) == Some(&q);
        if triple {
            self.i += 2;
        }
        let mut out = String::new();
        loop {
            let c = self.next().ok_or("unterminated string literal")?;
            if c == q {
                if !triple {
                    return Ok(out);
                }
                if self.c.get(self.i) == Some(&q) && self.c.get(self.i + 1) == Some(&q) {
                    self.i += 2;
                    return Ok(out);
                }
                out.push(c);
            } else if c == '\n' && !triple {
                return Err("newline in a single-quoted string literal".into());
            } else if c == '\\' {
                let e = self.next().ok_or("unterminated string literal")?;
                if raw {
                    out.push('\\');
                    out.push(e);
                    continue;
                }
                match e {
                    '\n' => {}
                    '\\' => out.push('\\'),
                    '\'' => out.push('\''),
                    '"' => out.push('"'),
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\x0b'),
                    '0'..='7' => {
                        let mut v = e.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            match self.peek().and_then(|d| d.to_digit(8)) {
                                Some(d) => {
                                    v = v * 8 + d;
                                    self.i += 1;
                                }
                                None => break,
                            }
                        }
                        out.push(char::from_u32(v).ok_or("bad octal escape")?);
                    }
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = self.c.iter().skip(self.i).take(n).collect();
                        if hex.chars().count() != n || !hex.chars().all(|h| h.is_ascii_hexdigit()) {
                            return Err(format!("truncated \\{e} escape"));
                        }
                        self.i += n;
                        let v = u32::from_str_radix(&hex, 16).map_err(|e| e.to_string())?;
                        out.push(char::from_u32(v).ok_or("escape out of range")?);
                    }
                    'N' => return Err("\\N{...} escapes are not supported".into()),
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            } else {
                out.push(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_matches_python() {
        // Printed by CPython 3.11 (None = ValueError).
        let cases: &[(&str, Option<f64>)] = &[
            ("\x1c5", None),
            (" 5 ", Some(5.0)),
            ("\u{3000}5", Some(5.0)),
            ("1_000", Some(1000.0)),
            ("1__0", None),
            ("_1", None),
            ("1_", None),
            ("1_.5", None),
            ("1e1_0", Some(1e10)),
            ("٣.5", Some(3.5)),
            ("５", Some(5.0)),
            ("-Infinity", Some(f64::NEG_INFINITY)),
            (".", None),
            ("5.", Some(5.0)),
            (".5", Some(0.5)),
            ("1e", None),
            ("1E+5", Some(1e5)),
            ("0x10", None),
            ("1_0.0_1", Some(10.01)),
            ("infinit", None),
            ("1,5", None),
            ("", None),
            ("1 2", None),
        ];
        for (s, want) in cases {
            assert_eq!(py_float(s), *want, "{s:?}");
        }
        assert!(py_float("nAn").is_some_and(f64::is_nan));
    }

    #[test]
    fn round_matches_python() {
        let cases = [
            (0.125, 2, 0.12),
            (0.375, 2, 0.38),
            (2.675, 2, 2.67),
            (1.005, 2, 1.0),
            (-0.125, 2, -0.12),
            (123456789.125, 2, 123456789.12),
            (0.045, 2, 0.04),
            (5e-324, 2, 0.0),
            (1e22, 2, 1e22),
        ];
        for (x, n, want) in cases {
            assert_eq!(py_round(x, n), want, "round({x}, {n})");
        }
        assert!(py_round(-0.001, 2).is_sign_negative());
    }

    #[test]
    fn literal_lists() {
        assert_eq!(
            literal_eval_str_list(r#"['$6', "it's", '''a''' "b", '\n\x41\u00e9\\', r'\d']"#)
                .unwrap(),
            vec!["$6", "it's", "ab", "\nAé\\", "\\d"]
        );
        assert_eq!(literal_eval_str_list("[]").unwrap(), Vec::<String>::new());
        assert_eq!(literal_eval_str_list("('a',)").unwrap(), vec!["a"]);
        assert!(literal_eval_str_list("[1, 2]").is_err());
        assert!(literal_eval_str_list("['a'] x").is_err());
    }
}
