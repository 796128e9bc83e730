//! Python's text forms of values, where a prompt is built from them: `repr(str)` and
//! `str(list_of_str)` (Video-MME 0.2.1 writes `str(doc["options"])` into its prompt), `str(x)`
//! of a JSON scalar (EgoSchema compares `str(answer)`), and `json.dumps(x)` with its defaults
//! (llava_interleave_bench's multi-view prompt is `json.dumps(doc["conversations"])`).

use std::fmt::Write;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

/// `str.isprintable()` for one character (CPython's `Py_UNICODE_ISPRINTABLE`): everything but
/// the categories Cc, Cf, Cs, Co, Cn, Zl, Zp and Zs, the ASCII space excepted (a Rust `char`
/// is never a surrogate, Cs).
fn is_printable(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"^[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]$")
            .expect("a valid character class")
    });
    let mut buf = [0u8; 4];
    !re.is_match(c.encode_utf8(&mut buf))
}

/// `repr(s)` (CPython `unicode_repr`): single quotes unless the text has a `'` and no `"`;
/// `\\`, the quote, `\t`, `\n`, `\r` escaped; other unprintable characters as `\xNN`, `\uNNNN`
/// or `\UNNNNNNNN`.
pub fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_printable(c) => out.push(c),
            c => {
                let cp = c as u32;
                if cp <= 0xff {
                    let _ = write!(out, "\\x{cp:02x}");
                } else if cp <= 0xffff {
                    let _ = write!(out, "\\u{cp:04x}");
                } else {
                    let _ = write!(out, "\\U{cp:08x}");
                }
            }
        }
    }
    out.push(quote);
    out
}

/// `str(list_of_str)`: `[` + `", ".join(repr(x))` + `]`.
pub fn py_repr_str_list<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<String> = items.iter().map(|s| py_repr_str(s.as_ref())).collect();
    format!("[{}]", parts.join(", "))
}

/// `repr(float)`: the shortest round-trip digits, in fixed notation for exponents in
/// [-4, 16), else as `1e-05` / `1.5e+16`; `inf`, `nan`.
pub fn py_repr_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the same shortest round-trip digits as Python's repr.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        if point <= 0 {
            format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!(
                "{sign}{digits}{}.0",
                "0".repeat(point as usize - digits.len())
            )
        } else {
            let (a, b) = digits.split_at(point as usize);
            format!("{sign}{a}.{b}")
        }
    } else {
        let (a, b) = digits.split_at(1);
        let frac = if b.is_empty() {
            String::new()
        } else {
            format!(".{b}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{a}{frac}e{esign}{:02}", exp.abs())
    }
}

/// `str(x)` for a JSON scalar as the datasets library hands it to Python: strings as they
/// are, integers in decimal, floats by `repr`, `True`/`False`, `None`; lists and dicts by
/// their Python repr.
pub fn py_str_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => py_repr_value(other),
    }
}

fn py_repr_value(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => py_repr_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => py_repr_str(s),
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(py_repr_value).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(o) => {
            let parts: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{}: {}", py_repr_str(k), py_repr_value(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

/// `json.dumps(s)` of a string with the defaults (`ensure_ascii=True`): `"` and `\` escaped,
/// `\n \r \t \b \f` by name, everything outside ' '..'~' as `\uXXXX` (UTF-16 surrogate pairs
/// above U+FFFF).
fn json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// `json.dumps(v)` with Python's defaults: `", "` and `": "` separators, ASCII only, keys in
/// the order the map holds them (serde_json's map is sorted by key; the conversations this is
/// used on have `from` before `value`, which is also their order in the dataset).
pub fn py_json_dumps(v: &Value) -> String {
    let mut out = String::new();
    dump(v, &mut out);
    out
}

fn dump(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) if f.is_nan() => out.push_str("NaN"),
            (_, _, Some(f)) if f.is_infinite() => {
                out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" })
            }
            (_, _, Some(f)) => out.push_str(&py_repr_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => json_str(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dump(x, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                json_str(k, out);
                out.push_str(": ");
                dump(x, out);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Expected strings printed by CPython 3.11.
    #[test]
    fn repr_matches_python() {
        assert_eq!(py_repr_str("A. cat"), "'A. cat'");
        assert_eq!(py_repr_str("it's"), "\"it's\"");
        assert_eq!(py_repr_str("it's \"x\""), "'it\\'s \"x\"'");
        assert_eq!(py_repr_str("a\\b\tc\nd\u{7f}"), "'a\\\\b\\tc\\nd\\x7f'");
        assert_eq!(
            py_repr_str("東京 café\u{200b}\u{a0}"),
            "'東京 café\\u200b\\xa0'"
        );
        assert_eq!(py_repr_str("\u{1F600}\u{E0001}"), "'\u{1F600}\\U000e0001'");
        assert_eq!(
            py_repr_str_list(&["A. x", "B. y's"]),
            "['A. x', \"B. y's\"]"
        );
        assert_eq!(py_repr_str_list::<&str>(&[]), "[]");
    }

    #[test]
    fn floats_and_scalars_match_python() {
        assert_eq!(py_repr_float(1.0), "1.0");
        assert_eq!(py_repr_float(0.1), "0.1");
        assert_eq!(py_repr_float(1e16), "1e+16");
        assert_eq!(py_repr_float(1.5e-5), "1.5e-05");
        assert_eq!(py_repr_float(0.0001), "0.0001");
        assert_eq!(py_repr_float(123456789012345.6), "123456789012345.6");
        assert_eq!(py_repr_float(-2.5), "-2.5");
        assert_eq!(py_str_value(&json!("3")), "3");
        assert_eq!(py_str_value(&json!(3)), "3");
        assert_eq!(py_str_value(&json!(3.0)), "3.0");
        assert_eq!(py_str_value(&json!(null)), "None");
    }

    #[test]
    fn json_dumps_matches_python() {
        let v = json!([{"from": "human", "value": "<image>\nSay \"é\" 😀\t"}]);
        assert_eq!(
            py_json_dumps(&v),
            r#"[{"from": "human", "value": "<image>\nSay \"\u00e9\" \ud83d\ude00\t"}]"#
        );
        assert_eq!(
            py_json_dumps(&json!({"a": [1, 2.5, null, true]})),
            r#"{"a": [1, 2.5, null, true]}"#
        );
    }
}
