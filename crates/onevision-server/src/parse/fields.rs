//! Typed access to the fields of a JSON object, with errors that name the field, say what
//! was expected and what was given.

use serde_json::{Map, Value};

use crate::error::ApiError;

type Result<T> = std::result::Result<T, ApiError>;

/// How a JSON value is named in messages: "got a string".
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The fields of one JSON object, with typed getters that treat `null` as absent (OpenAI
/// clients send explicit nulls for unset options) and name the field in their errors.
pub(super) struct Fields<'a> {
    map: &'a Map<String, Value>,
    /// The object's own path ("" at the top, "messages[0]" below).
    path: String,
}

impl<'a> Fields<'a> {
    pub(super) fn of(v: &'a Value, path: &str) -> Result<Self> {
        match v {
            Value::Object(map) => Ok(Self {
                map,
                path: path.to_string(),
            }),
            other => Err(ApiError::invalid(
                path,
                format!("`{path}` must be an object, got {}", type_name(other)),
            )),
        }
    }

    pub(super) fn param(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(super) fn wrong(&self, key: &str, expected: &str, got: &Value) -> ApiError {
        let p = self.param(key);
        ApiError::invalid(
            &p,
            format!("`{p}` must be {expected}, got {}", type_name(got)),
        )
    }

    pub(super) fn out_of_range(
        &self,
        key: &str,
        expected: &str,
        got: impl std::fmt::Display,
    ) -> ApiError {
        let p = self.param(key);
        ApiError::invalid(&p, format!("`{p}` must be {expected}, got {got}"))
    }

    pub(super) fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(key, "true or false", v)),
        }
    }

    pub(super) fn str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(key, "a string", v)),
        }
    }

    /// A finite number.
    pub(super) fn f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(self.out_of_range(key, "a finite number", n)),
            },
            Some(v) => Err(self.wrong(key, "a number", v)),
        }
    }

    /// A number in `[lo, hi]` (or `(lo, hi]` when `open_low`).
    pub(super) fn f64_in(
        &self,
        key: &str,
        lo: f64,
        hi: f64,
        open_low: bool,
    ) -> Result<Option<f32>> {
        let Some(x) = self.f64(key)? else {
            return Ok(None);
        };
        let ok = (if open_low { x > lo } else { x >= lo }) && x <= hi;
        if !ok {
            let range = if open_low {
                format!("in ({lo}, {hi}]")
            } else {
                format!("in [{lo}, {hi}]")
            };
            return Err(self.out_of_range(key, &format!("a number {range}"), x));
        }
        Ok(Some(x as f32))
    }

    /// An integer (any sign; `u64` values above `i64::MAX` are reported as out of range).
    pub(super) fn int(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => Ok(Some(i)),
                None if n.is_u64() => Err(self.out_of_range(key, "a smaller integer", n)),
                None => Err(self.out_of_range(key, "an integer", n)),
            },
            Some(v) => Err(self.wrong(key, "an integer", v)),
        }
    }
}
