//! One Arrow type per column, inferred over every record as pyarrow infers it, and each value
//! then given as `to_pydict()` gives it in that type.
//!
//! `datasets`' json builder builds one Arrow table per file (datasets 2.16.1,
//! packaged_modules/json/json.py `Json._generate_tables`), either with pyarrow's JSON reader
//! ([`Reader::Arrow`], JSON Lines) or with `pa.Table.from_pydict` over what `json.load` gave
//! ([`Reader::Python`], a list of records). Both infer a column's type from all its values:
//!
//! | values | type | each value comes out as |
//! |---|---|---|
//! | only nulls (or the key missing) | null | `None` |
//! | booleans | bool | `bool` |
//! | integers | int64 | `int` |
//! | integers and floats | double | `float`: **every integer becomes a float** (`3` -> `3.0`) |
//! | strings | string | `str` |
//! | strings that are all ISO 8601 timestamps, JSON Lines only | timestamp\[s\] | `datetime`, given here as `isoformat()` (see [`iso_timestamp`]) |
//! | arrays | list of the items' common type | `list` |
//! | objects | struct of every key seen, in first-seen order | `dict` with **every** key: missing ones `None` |
//!
//! Anything else mixed (a string and a number, a boolean and a number, an array and a
//! scalar) is an error in both (pyarrow: "changed from number to string", "Could not convert
//! 's' with type str: tried to convert to int64"), and so is an integer outside int64 in a
//! list of records (Python's int overflows pyarrow's int64); the JSON Lines reader takes such
//! an integer as a double. NaN and ±inf become `null` (JSON has no NaN, as for parquet cells).

use serde_json::{Map, Value};

use super::parse::{JsonValue, Number};

/// Which of the json builder's readers made the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reader {
    /// `pyarrow.json.read_json` (JSON Lines).
    Arrow,
    /// `pa.Table.from_pydict` over `json.load`'s records (a JSON list, or a card's `field:`).
    Python,
}

/// A column's Arrow type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ty {
    Null,
    Bool,
    Int,
    Float,
    Str,
    /// `timestamp[s]` (pyarrow's JSON reader only).
    Timestamp,
    List(Box<Ty>),
    Struct(Vec<(String, Ty)>),
}

impl Ty {
    fn name(&self) -> &'static str {
        match self {
            Ty::Null => "nulls",
            Ty::Bool => "booleans",
            Ty::Int => "integers",
            Ty::Float => "floats",
            Ty::Str | Ty::Timestamp => "strings",
            Ty::List(_) => "arrays",
            Ty::Struct(_) => "objects",
        }
    }
}

/// A value pyarrow cannot put in the column's type, and where (`.key`, `[]` for list items)
/// below the column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Conflict {
    pub(crate) path: String,
    pub(crate) what: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.path.is_empty() {
            write!(f, "at `{}`: ", self.path)?;
        }
        write!(f, "{} (`datasets` refuses it too)", self.what)
    }
}

/// The common type of `a` and `b` (the same for both readers: pyarrow promotes int64 to
/// double, null to anything, a timestamp to a string, and merges struct fields).
pub(crate) fn unify(a: Ty, b: Ty) -> Result<Ty, Conflict> {
    Ok(match (a, b) {
        (Ty::Null, t) | (t, Ty::Null) => t,
        (Ty::Int, Ty::Float) | (Ty::Float, Ty::Int) => Ty::Float,
        (Ty::Str, Ty::Timestamp) | (Ty::Timestamp, Ty::Str) => Ty::Str,
        (Ty::List(x), Ty::List(y)) => Ty::List(Box::new(unify(*x, *y).map_err(|c| Conflict {
            path: format!("[]{}", c.path),
            ..c
        })?)),
        (Ty::Struct(mut fields), Ty::Struct(other)) => {
            for (k, t) in other {
                match fields.iter_mut().find(|(f, _)| *f == k) {
                    Some(slot) => {
                        let old = std::mem::replace(&mut slot.1, Ty::Null);
                        slot.1 = unify(old, t).map_err(|c| Conflict {
                            path: format!(".{k}{}", c.path),
                            ..c
                        })?;
                    }
                    None => fields.push((k, t)),
                }
            }
            Ty::Struct(fields)
        }
        (a, b) if a == b => a,
        (a, b) => {
            return Err(Conflict {
                path: String::new(),
                what: format!(
                    "{} where other values are {}: pyarrow infers one type per column",
                    b.name(),
                    a.name()
                ),
            })
        }
    })
}

/// The type `reader` infers for one value.
pub(crate) fn type_of(v: &JsonValue, reader: Reader) -> Result<Ty, Conflict> {
    let overflow = || Conflict {
        path: String::new(),
        what: "an integer outside int64 (in a list of records pyarrow converts Python's int to \
               int64 and overflows)"
            .into(),
    };
    Ok(match v {
        JsonValue::Null => Ty::Null,
        JsonValue::Bool(_) => Ty::Bool,
        JsonValue::Number(Number::Int(_) | Number::MinusZero) => Ty::Int,
        JsonValue::Number(Number::BigInt(_)) if reader == Reader::Python => return Err(overflow()),
        JsonValue::Number(Number::BigInt(_) | Number::Float(_)) => Ty::Float,
        JsonValue::String(s) if reader == Reader::Arrow && iso_timestamp(s).is_some() => {
            Ty::Timestamp
        }
        JsonValue::String(_) => Ty::Str,
        JsonValue::Array(items) => {
            let mut t = Ty::Null;
            for item in items {
                t = unify(t, type_of(item, reader)?).map_err(|c| Conflict {
                    path: format!("[]{}", c.path),
                    ..c
                })?;
            }
            Ty::List(Box::new(t))
        }
        JsonValue::Object(fields) => {
            let mut t = Ty::Struct(vec![]);
            for (k, v) in fields {
                let inner = type_of(v, reader).map_err(|c| Conflict {
                    path: format!(".{k}{}", c.path),
                    ..c
                })?;
                t = unify(t, Ty::Struct(vec![(k.clone(), inner)]))?;
            }
            t
        }
    })
}

/// `v` as `to_pydict()` gives it in a column of type `ty` (which [`type_of`] of `v` unifies
/// with), as JSON. Errors only for timestamps Python's `datetime` cannot hold.
pub(crate) fn conform(v: &JsonValue, ty: &Ty, reader: Reader) -> Result<Value, String> {
    Ok(match (v, ty) {
        (JsonValue::Null, _) | (_, Ty::Null) => Value::Null,
        (JsonValue::Bool(b), _) => Value::Bool(*b),
        (JsonValue::Number(n), Ty::Float) => float(match *n {
            Number::Int(i) => i as f64, // Python's float(int) rounds to nearest too
            // json.load's int 0 becomes 0.0; pyarrow parses the text "-0" into a double.
            Number::MinusZero if reader == Reader::Python => 0.0,
            Number::MinusZero => -0.0,
            Number::BigInt(f) | Number::Float(f) => f,
        }),
        (JsonValue::Number(Number::Int(i)), _) => Value::from(*i),
        (JsonValue::Number(Number::MinusZero), _) => Value::from(0),
        (JsonValue::Number(Number::BigInt(f) | Number::Float(f)), _) => float(*f),
        (JsonValue::String(s), Ty::Timestamp) => {
            let secs = iso_timestamp(s).ok_or_else(|| format!("{s:?} is not a timestamp"))?;
            Value::String(isoformat(secs).ok_or_else(|| {
                format!(
                    "{s:?} is a timestamp outside years 1..9999, which Python's datetime cannot \
                     hold (`datasets` fails on it too)"
                )
            })?)
        }
        (JsonValue::String(s), _) => Value::String(s.clone()),
        (JsonValue::Array(items), Ty::List(t)) => Value::Array(
            items
                .iter()
                .map(|x| conform(x, t, reader))
                .collect::<Result<_, _>>()?,
        ),
        (JsonValue::Object(fields), Ty::Struct(types)) => {
            let mut m = Map::new();
            for (k, t) in types {
                let value = match fields.iter().find(|(f, _)| f == k) {
                    Some((_, x)) => conform(x, t, reader)?,
                    None => Value::Null,
                };
                m.insert(k.clone(), value);
            }
            Value::Object(m)
        }
        (v, ty) => return Err(format!("{} in a column of {}", v.kind(), ty.name())),
    })
}

/// NaN and ±inf have no JSON form: `null`, as for parquet cells (convert.rs).
fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Seconds since 1970-01-01 UTC when `s` is an ISO 8601 timestamp pyarrow's JSON reader
/// infers as `timestamp[s]` (arrow's `ParseTimestampISO8601` with second resolution):
/// `YYYY-MM-DD`, optionally followed by `T` or a space and `hh`, `hh:mm` or `hh:mm:ss`, then
/// optionally `Z`, `±hh`, `±hhmm` or `±hh:mm` (hours below 24, minutes below 60). No
/// fractions of a second (those stay strings at this resolution), no zone after a bare date,
/// real calendar dates only.
pub(crate) fn iso_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let d = b.get(r)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| d.iter().fold(0i64, |n, c| n * 10 + i64::from(c - b'0')))
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days_in = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo) || d < 1 || d > days_in[(mo - 1) as usize] {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    if b.len() == 10 {
        return Some(days * 86_400);
    }
    if b[10] != b'T' && b[10] != b' ' {
        return None;
    }
    // The zone: Z, ±hh, ±hhmm, ±hh:mm at the end.
    let rest = &s[11..];
    let (time, offset) = if let Some(t) = rest.strip_suffix('Z') {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let z = &rest[i + 1..];
        let zb = z.as_bytes();
        let two = |r: std::ops::Range<usize>| -> Option<i64> {
            let d = zb.get(r)?;
            d.iter()
                .all(u8::is_ascii_digit)
                .then(|| d.iter().fold(0i64, |n, c| n * 10 + i64::from(c - b'0')))
        };
        let (h, m) = match zb.len() {
            2 => (two(0..2)?, 0),
            4 => (two(0..2)?, two(2..4)?),
            5 if zb[2] == b':' => (two(0..2)?, two(3..5)?),
            _ => return None,
        };
        if h >= 24 || m >= 60 {
            return None;
        }
        let sign = if rest.as_bytes()[i] == b'-' { -1 } else { 1 };
        (&rest[..i], sign * (h * 3600 + m * 60))
    } else {
        (rest, 0)
    };
    let t = time.as_bytes();
    let field = |k: usize| -> Option<i64> {
        let d = t.get(k..k + 2)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| i64::from(d[0] - b'0') * 10 + i64::from(d[1] - b'0'))
    };
    let (h, m, sec) = match t.len() {
        2 => (field(0)?, 0, 0),
        5 if t[2] == b':' => (field(0)?, field(3)?, 0),
        8 if t[2] == b':' && t[5] == b':' => (field(0)?, field(3)?, field(6)?),
        _ => return None,
    };
    if h >= 24 || m >= 60 || sec >= 60 {
        return None;
    }
    Some(days * 86_400 + h * 3600 + m * 60 + sec - offset)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `datetime.isoformat()` of a naive `datetime` at `secs` since the epoch (what `to_pydict()`
/// gives for `timestamp[s]`), None outside Python's years 1..9999.
fn isoformat(secs: i64) -> Option<String> {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (1..=9999).contains(&y).then(|| {
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(s: &str) -> Option<String> {
        iso_timestamp(s).and_then(isoformat)
    }

    /// What pyarrow 22's JSON reader makes of these strings (`to_pydict()` then isoformat()).
    #[test]
    fn timestamps_as_pyarrow_infers_them() {
        for (s, want) in [
            ("2020-01-01", Some("2020-01-01T00:00:00")),
            ("2020-01-02T01:02:03", Some("2020-01-02T01:02:03")),
            ("2020-01-01 00:00:00", Some("2020-01-01T00:00:00")),
            ("2020-01-01T01", Some("2020-01-01T01:00:00")),
            ("2020-01-01T01:02", Some("2020-01-01T01:02:00")),
            ("2020-01-01T01:02:03Z", Some("2020-01-01T01:02:03")),
            ("2020-01-01T01:02:03+01:00", Some("2020-01-01T00:02:03")),
            ("2020-01-01T01:02:03+0100", Some("2020-01-01T00:02:03")),
            ("2020-01-01T01:02:03+01", Some("2020-01-01T00:02:03")),
            ("2020-01-01T01:02:03-00:30", Some("2020-01-01T01:32:03")),
            ("2020-01-01T01:02:03+23:59", Some("2019-12-31T01:03:03")),
            ("2020-01-01T01Z", Some("2020-01-01T01:00:00")),
            ("2020-01-01T01+01:00", Some("2020-01-01T00:00:00")),
            ("2020-01-01T01:02+01", Some("2020-01-01T00:02:00")),
            ("2020-02-29", Some("2020-02-29T00:00:00")),
            ("2000-02-29", Some("2000-02-29T00:00:00")),
            ("1900-01-01", Some("1900-01-01T00:00:00")),
            ("0001-01-01", Some("0001-01-01T00:00:00")),
        ] {
            assert_eq!(iso(s).as_deref(), want, "{s}");
        }
        for s in [
            "2020-01-01T01:02:03.5",
            "2020-01-01T01:02:03.000",
            "2020-1-1",
            "12:00",
            "2020-13-01",
            "2020-02-30",
            "2100-02-29",
            " 2020-01-01",
            "2020-01-01 ",
            "2020-01-01Z",
            "2020-01-01+01:00",
            "2020-01-01T24:00:00",
            "2020-01-01T23:59:60",
            "2020-01-01T23:60",
            "2020-01-01T24",
            "99999-01-01",
            "2020-01-01T0102",
            "2020-01-01T010203",
            "2020-01-01T1",
            "2020-01-01t01",
            "2020-01-01T",
            "2020-01-01T01:02:03+24:00",
            "2020-01-01T01:02:03+01:60",
            "2020-01-01T01:02:03+1",
            "2020-01-01T01:02:03+010",
            "2020-01-01T01:02:03 Z",
            "2020-01-01T01:02:03z",
            "2020-01-01T01:02:03ZZ",
            "2020-01-01T01:02:03+01:00Z",
            "2020-01-01T01:02:03+-1:00",
            "2020-01-01T-1:02:03",
            "２０２０-01-01",
            "20200101",
        ] {
            assert_eq!(iso_timestamp(s), None, "{s}");
        }
        // Parsed by arrow, but outside Python's datetime (pyarrow's to_pydict raises).
        assert!(iso_timestamp("0000-01-01").is_some());
        assert_eq!(iso("0000-01-01"), None);
        assert_eq!(iso("9999-12-31T23:00:00-01:00"), None);
        assert_eq!(iso("0001-01-01T00:00:00+01:00"), None);
    }

    #[test]
    fn types_unify_as_pyarrow_promotes_them() {
        use JsonValue as J;
        let n = |i| J::Number(Number::Int(i));
        let f = |x| J::Number(Number::Float(x));
        let col = |vals: &[J], r| {
            vals.iter()
                .try_fold(Ty::Null, |t, v| unify(t, type_of(v, r)?))
        };
        assert_eq!(col(&[n(1), f(2.5)], Reader::Python), Ok(Ty::Float));
        assert_eq!(col(&[J::Null, n(1)], Reader::Python), Ok(Ty::Int));
        assert!(col(&[J::Bool(true), n(1)], Reader::Python).is_err());
        assert!(col(&[n(1), J::String("s".into())], Reader::Arrow).is_err());
        let big = J::Number(Number::BigInt(1e20));
        assert!(col(&[big.clone()], Reader::Python).is_err());
        assert_eq!(col(&[n(1), big], Reader::Arrow), Ok(Ty::Float));
        let date = J::String("2020-01-01".into());
        assert_eq!(col(&[date.clone()], Reader::Arrow), Ok(Ty::Timestamp));
        assert_eq!(col(&[date.clone()], Reader::Python), Ok(Ty::Str));
        assert_eq!(
            col(&[date, J::String("x".into())], Reader::Arrow),
            Ok(Ty::Str)
        );
        let obj = |k: &str, v| J::Object(vec![(k.into(), v)]);
        let t = col(
            &[obj("x", n(1)), obj("y", J::String("s".into()))],
            Reader::Python,
        )
        .unwrap();
        assert_eq!(
            t,
            Ty::Struct(vec![("x".into(), Ty::Int), ("y".into(), Ty::Str)])
        );
        assert_eq!(
            conform(&obj("y", J::String("s".into())), &t, Reader::Python).unwrap(),
            serde_json::json!({"x": null, "y": "s"})
        );
        let e = col(
            &[
                J::Array(vec![obj("x", n(1))]),
                J::Array(vec![obj("x", J::Bool(true))]),
            ],
            Reader::Python,
        )
        .unwrap_err();
        assert_eq!(e.path, "[].x");
        let minus_zero = J::Number(Number::MinusZero);
        assert_eq!(
            conform(&minus_zero, &Ty::Float, Reader::Arrow).unwrap(),
            serde_json::json!(-0.0)
        );
        assert_eq!(
            conform(&minus_zero, &Ty::Float, Reader::Python).unwrap(),
            serde_json::json!(0.0)
        );
        assert_eq!(
            conform(&minus_zero, &Ty::Int, Reader::Python).unwrap(),
            serde_json::json!(0)
        );
        assert_eq!(
            conform(&n(3), &Ty::Float, Reader::Python).unwrap(),
            serde_json::json!(3.0)
        );
        assert!(conform(&n(3), &Ty::Float, Reader::Python).unwrap().is_f64());
    }
}
