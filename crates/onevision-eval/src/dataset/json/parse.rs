//! A JSON parser that keeps what `datasets`' two readers tell apart and serde_json does not:
//! integer literals (Python's `int`, pyarrow's int64) apart from float literals, integers
//! outside int64 apart from floats, `-0` apart from `-0.0`, the `NaN`/`Infinity` literals
//! (both `json.load` and pyarrow accept them), duplicate keys (pyarrow refuses them, Python
//! keeps the last value), and each error's line and column (1-based, as Python's
//! `JSONDecodeError` counts them, columns in characters).

use std::fmt;

/// A number as written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    /// An integer literal within int64.
    Int(i64),
    /// `-0`: Python's int 0; pyarrow reads it as -0.0 into a double column.
    MinusZero,
    /// An integer literal outside int64, as the nearest double (what pyarrow's JSON reader
    /// makes of it; Python's int would not fit pyarrow's int64).
    BigInt(f64),
    /// A literal with a fraction or an exponent (or NaN/±Infinity), correctly rounded as
    /// Python's `float()` and pyarrow's parser round it.
    Float(f64),
}

/// A parsed JSON value; objects keep their keys in file order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JsonValue {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<JsonValue>),
    Object(Vec<(String, JsonValue)>),
}

impl JsonValue {
    /// What kind of value this is, for messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            JsonValue::Null => "null",
            JsonValue::Bool(_) => "a boolean",
            JsonValue::Number(_) => "a number",
            JsonValue::String(_) => "a string",
            JsonValue::Array(_) => "an array",
            JsonValue::Object(_) => "an object",
        }
    }
}

/// Where a parse failed and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid JSON at line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// Whose JSON: they differ on repeated keys and numbers too large for a double.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Python's `json.load`: a repeated key keeps its first position and its last value;
    /// `1e400` is `inf`.
    Python,
    /// pyarrow's JSON reader (RapidJSON): a repeated key is an error ("Column(/a) was specified
    /// twice"), and so is `1e400` ("Number too big to be stored in double").
    Arrow,
}

/// Python's json module nests at most as deep as its recursion limit allows (about 1000);
/// deeper input is refused here rather than risking the stack.
const MAX_DEPTH: usize = 512;

/// One JSON text: a single value with only whitespace around it. `line_offset` is added to
/// the line numbers of errors (for a line of a JSON Lines file).
pub(crate) fn parse(
    text: &str,
    dialect: Dialect,
    line_offset: usize,
) -> Result<JsonValue, ParseError> {
    let mut p = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        dialect,
        line_offset,
    };
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos < p.bytes.len() {
        return Err(p.error("extra data after the JSON value"));
    }
    Ok(v)
}

/// Values one after another, separated by whitespace or nothing, as pyarrow's JSON reader
/// takes them (one object per line is the usual case, but `{..}{..}` and objects across
/// lines read too), each with the line it starts on.
pub(crate) fn parse_stream(
    text: &str,
    dialect: Dialect,
) -> Result<Vec<(usize, JsonValue)>, ParseError> {
    let mut p = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        dialect,
        line_offset: 0,
    };
    let mut out = vec![];
    let mut line = 1;
    let mut counted = 0;
    loop {
        p.skip_ws();
        if p.pos >= p.bytes.len() {
            return Ok(out);
        }
        line += p.bytes[counted..p.pos]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        counted = p.pos;
        out.push((line, p.value(0)?));
    }
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    dialect: Dialect,
    line_offset: usize,
}

impl Parser<'_> {
    fn error_at(&self, pos: usize, message: impl Into<String>) -> ParseError {
        let before = &self.text[..pos.min(self.text.len())];
        let line = before.matches('\n').count() + 1 + self.line_offset;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        ParseError {
            line,
            column,
            message: message.into(),
        }
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        self.error_at(self.pos, message)
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, literal: &str) -> bool {
        if self.bytes[self.pos..].starts_with(literal.as_bytes()) {
            self.pos += literal.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<JsonValue, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        match self.bytes.get(self.pos) {
            None => Err(self.error("expected a value, found the end of the text")),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(JsonValue::String),
            Some(b'-' | b'0'..=b'9') => {
                if self.eat("-Infinity") {
                    return Ok(JsonValue::Number(Number::Float(f64::NEG_INFINITY)));
                }
                self.number().map(JsonValue::Number)
            }
            Some(_) if self.eat("true") => Ok(JsonValue::Bool(true)),
            Some(_) if self.eat("false") => Ok(JsonValue::Bool(false)),
            Some(_) if self.eat("null") => Ok(JsonValue::Null),
            Some(_) if self.eat("NaN") => Ok(JsonValue::Number(Number::Float(f64::NAN))),
            Some(_) if self.eat("Infinity") => Ok(JsonValue::Number(Number::Float(f64::INFINITY))),
            Some(_) => {
                let c = self.text[self.pos..].chars().next().unwrap_or(' ');
                Err(self.error(format!("expected a value, found {c:?}")))
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<JsonValue, ParseError> {
        self.pos += 1; // {
        let mut fields: Vec<(String, JsonValue)> = vec![];
        self.skip_ws();
        if self.eat("}") {
            return Ok(JsonValue::Object(fields));
        }
        loop {
            self.skip_ws();
            if self.bytes.get(self.pos) != Some(&b'"') {
                return Err(self.error("expected a property name in double quotes"));
            }
            let key_pos = self.pos;
            let key = self.string()?;
            self.skip_ws();
            if !self.eat(":") {
                return Err(self.error("expected ':' after the property name"));
            }
            self.skip_ws();
            let value = self.value(depth + 1)?;
            match fields.iter_mut().find(|(k, _)| *k == key) {
                Some(_) if self.dialect == Dialect::Arrow => {
                    return Err(self.error_at(
                        key_pos,
                        format!("the key {key:?} appears twice in one object"),
                    ))
                }
                Some(slot) => slot.1 = value,
                None => fields.push((key, value)),
            }
            self.skip_ws();
            if self.eat(",") {
                continue;
            }
            if self.eat("}") {
                return Ok(JsonValue::Object(fields));
            }
            return Err(self.error("expected ',' or '}' in an object"));
        }
    }

    fn array(&mut self, depth: usize) -> Result<JsonValue, ParseError> {
        self.pos += 1; // [
        let mut items = vec![];
        self.skip_ws();
        if self.eat("]") {
            return Ok(JsonValue::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            if self.eat(",") {
                continue;
            }
            if self.eat("]") {
                return Ok(JsonValue::Array(items));
            }
            return Err(self.error("expected ',' or ']' in an array"));
        }
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error("expected 4 hex digits after \\u"))?;
        self.pos += 4;
        u32::from_str_radix(digits, 16).map_err(|e| self.error(e.to_string()))
    }

    fn string(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        self.pos += 1; // "
        let mut out = String::new();
        loop {
            let run = self.pos;
            while let Some(&b) = self.bytes.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[run..self.pos]);
            match self.bytes.get(self.pos) {
                None => return Err(self.error_at(start, "unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let esc_pos = self.pos;
                    self.pos += 1;
                    let c = match self.bytes.get(self.pos) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) && self.eat("\\u") {
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    return Err(self.error_at(
                                        esc_pos,
                                        "a lone UTF-16 surrogate (Rust strings cannot hold one)",
                                    ));
                                }
                            } else {
                                hi
                            };
                            let c = char::from_u32(code).ok_or_else(|| {
                                self.error_at(
                                    esc_pos,
                                    "a lone UTF-16 surrogate (Rust strings cannot hold one)",
                                )
                            })?;
                            out.push(c);
                            continue;
                        }
                        _ => return Err(self.error_at(esc_pos, "invalid escape")),
                    };
                    self.pos += 1;
                    out.push(c);
                }
                Some(_) => return Err(self.error("a control character inside a string")),
            }
        }
    }

    fn number(&mut self) -> Result<Number, ParseError> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let s = p.pos;
            while p.bytes.get(p.pos).is_some_and(u8::is_ascii_digit) {
                p.pos += 1;
            }
            p.pos - s
        };
        let negative = self.eat("-");
        match self.bytes.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.error("expected a digit")),
        }
        let mut integer = true;
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if digits(self) == 0 {
                return Err(self.error("expected a digit after the decimal point"));
            }
            integer = false;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return Err(self.error("expected a digit in the exponent"));
            }
            integer = false;
        }
        let lit = &self.text[start..self.pos];
        let float = || match lit.parse::<f64>() {
            Ok(f) if f.is_infinite() && self.dialect == Dialect::Arrow => Err(self.error_at(
                start,
                format!("{lit} is too big to be stored in a double (pyarrow refuses it)"),
            )),
            Ok(f) => Ok(f),
            Err(e) => Err(self.error_at(start, format!("{lit}: {e}"))),
        };
        if !integer {
            return float().map(Number::Float);
        }
        if negative && lit == "-0" {
            return Ok(Number::MinusZero);
        }
        match lit.parse::<i64>() {
            Ok(i) => Ok(Number::Int(i)),
            Err(_) => float().map(Number::BigInt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py(s: &str) -> Result<JsonValue, ParseError> {
        parse(s, Dialect::Python, 0)
    }

    #[test]
    fn numbers_keep_their_kind() {
        use JsonValue::Number as N;
        assert_eq!(py("3").unwrap(), N(Number::Int(3)));
        assert_eq!(py("-0").unwrap(), N(Number::MinusZero));
        assert_eq!(py("-0.0").unwrap(), N(Number::Float(-0.0)));
        assert_eq!(py("1e2").unwrap(), N(Number::Float(100.0)));
        assert_eq!(
            py("9223372036854775808").unwrap(),
            N(Number::BigInt(9.223372036854775808e18))
        );
        assert_eq!(
            py("-9223372036854775808").unwrap(),
            N(Number::Int(i64::MIN))
        );
        // Python's float("0.1") and Rust's parse agree (both correctly rounded).
        assert_eq!(py("0.1").unwrap(), N(Number::Float(0.1)));
        assert!(matches!(py("NaN").unwrap(), N(Number::Float(f)) if f.is_nan()));
        assert_eq!(
            py("-Infinity").unwrap(),
            N(Number::Float(f64::NEG_INFINITY))
        );
        assert!(
            matches!(parse("NaN", Dialect::Arrow, 0).unwrap(), N(Number::Float(f)) if f.is_nan())
        );
        assert_eq!(py("1e400").unwrap(), N(Number::Float(f64::INFINITY)));
        assert!(parse("1e400", Dialect::Arrow, 0).is_err());
        for bad in ["01", "1.", ".5", "+1", "1e", "-", "0x10"] {
            assert!(py(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(
            py(r#""a\"b\\\/\n\u00e9\ud83d\ude00猫""#).unwrap(),
            JsonValue::String("a\"b\\/\né😀猫".into())
        );
        assert!(py(r#""\ud800""#).is_err());
        assert!(py("\"a\nb\"").is_err());
        assert!(py(r#""\x""#).is_err());
    }

    #[test]
    fn duplicate_keys_follow_the_dialect() {
        assert_eq!(
            py(r#"{"a": 1, "b": 2, "a": 3}"#).unwrap(),
            JsonValue::Object(vec![
                ("a".into(), JsonValue::Number(Number::Int(3))),
                ("b".into(), JsonValue::Number(Number::Int(2)))
            ])
        );
        let e = parse(r#"{"a": 1, "a": 3}"#, Dialect::Arrow, 0).unwrap_err();
        assert_eq!((e.line, e.column), (1, 10));
    }

    #[test]
    fn streams_are_values_one_after_another() {
        let v = parse_stream("{\"a\": 1}{\"a\": 2}\n\n  {\n\"a\": 3}\n", Dialect::Arrow).unwrap();
        let lines: Vec<usize> = v.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [1, 1, 3]);
        assert!(parse_stream(" \n ", Dialect::Arrow).unwrap().is_empty());
        let e = parse_stream("{\"a\": 1}\n{\"a\": }\n", Dialect::Arrow).unwrap_err();
        assert_eq!((e.line, e.column), (2, 7), "{e}");
    }

    #[test]
    fn errors_say_where_as_python_does() {
        // json.loads('[1,\n 2,,]') -> "Expecting value: line 2 column 4 (char 7)"
        let e = py("[1,\n 2,,]").unwrap_err();
        assert_eq!((e.line, e.column), (2, 4), "{e}");
        // Columns count characters, not bytes.
        // json.loads('["猫猫" x]') -> "Expecting ',' delimiter: line 1 column 7 (char 6)"
        let e = py("[\"猫猫\" x]").unwrap_err();
        assert_eq!((e.line, e.column), (1, 7), "{e}");
        let e = parse("{\"a\": }", Dialect::Arrow, 9).unwrap_err();
        assert_eq!((e.line, e.column), (10, 7), "{e}");
        assert!(py("[1] [2]").unwrap_err().message.contains("extra data"));
        assert!(py(&"[".repeat(600)).unwrap_err().message.contains("nested"));
    }
}
