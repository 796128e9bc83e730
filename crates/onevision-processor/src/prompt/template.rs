//! The checkpoint's chat template, rendered as transformers renders it
//! (`utils/chat_template_utils.py`: a Jinja2 sandbox with `trim_blocks`, `lstrip_blocks`, loop
//! controls, `raise_exception`, and a `tojson` that is Python's `json.dumps`).

use std::collections::BTreeMap;
use std::path::Path;

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, ErrorKind};

use super::{read_if_exists, read_json_if_exists, Message, TokenizerConfig};
use crate::{Error, Result};

const NAME: &str = "chat_template";

/// A compiled chat template plus the special-token variables transformers passes to it.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// `bos_token`, `eos_token`, ... as named in `tokenizer_config.json` (absent ones are left
    /// undefined, as transformers leaves out tokens that are unset).
    special: BTreeMap<&'static str, String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("special", &self.special)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// The template of a checkpoint directory, looked up where transformers looks:
    /// `chat_template.jinja` (transformers 5), else `chat_template.json` (`{"chat_template": ...}`,
    /// the transformers-4 processor file), else the `"chat_template"` key of
    /// `tokenizer_config.json` (a string, or a list of `{name, template}` of which we take
    /// `"default"`). Special tokens for the template come from `tokenizer_config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let cfg = TokenizerConfig::from_dir(dir)?;
        let source = if let Some(src) = read_if_exists(&dir.join("chat_template.jinja"))? {
            src
        } else if let Some(v) = read_json_if_exists(&dir.join("chat_template.json"))? {
            let path = dir.join("chat_template.json");
            let t = v.get("chat_template").ok_or_else(|| Error::Config {
                what: path.display().to_string(),
                reason: "no \"chat_template\" key".into(),
            })?;
            template_from_json(t, &path.display().to_string())?
        } else if let Some(t) = &cfg.chat_template {
            let what = format!(
                "{} key \"chat_template\"",
                dir.join(TokenizerConfig::FILE).display()
            );
            template_from_json(t, &what)?
        } else {
            return Err(Error::Config {
                what: format!("{} chat template", dir.display()),
                reason: "none found: expected chat_template.jinja, chat_template.json or a \
                         \"chat_template\" key in tokenizer_config.json"
                    .into(),
            });
        };
        let mut special = BTreeMap::new();
        for (k, v) in [
            ("bos_token", cfg.bos_token),
            ("eos_token", cfg.eos_token),
            ("pad_token", cfg.pad_token),
            ("unk_token", cfg.unk_token),
        ] {
            if let Some(v) = v {
                special.insert(k, v);
            }
        }
        Self::build(&source, special)
    }

    /// A template from its source text, with no special-token variables.
    pub fn from_source(src: &str) -> Result<Self> {
        Self::build(src, BTreeMap::new())
    }

    fn build(src: &str, special: BTreeMap<&'static str, String>) -> Result<Self> {
        let mut env = Environment::new();
        // Jinja2 settings transformers uses for every chat template.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(python_formatter);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, replace_generation_tags(src))
            .map_err(|e| Error::Template(format!("cannot compile: {e:#}")))?;
        Ok(Self { env, special })
    }

    /// Renders a conversation. `messages` reach the template in transformers' shape:
    /// `[{"role": "user", "content": [{"type": "text", "text": ...}, {"type": "image"}, ...]}]`;
    /// `tools` and `documents` are none, as when `apply_chat_template` is called without them.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self
            .env
            .get_template(NAME)
            .map_err(|e| Error::Template(e.to_string()))?;
        let mut ctx: BTreeMap<&str, Value> = self
            .special
            .iter()
            .map(|(k, v)| (*k, Value::from(v.as_str())))
            .collect();
        ctx.insert("messages", Value::from_serialize(messages));
        ctx.insert("add_generation_prompt", Value::from(add_generation_prompt));
        ctx.insert("tools", Value::from(()));
        ctx.insert("documents", Value::from(()));
        tmpl.render(ctx)
            .map_err(|e| Error::Template(format!("{e:#}")))
    }
}

/// A template given in JSON: a string, or transformers' list of named templates.
fn template_from_json(v: &serde_json::Value, what: &str) -> Result<String> {
    use serde_json::Value as J;
    match v {
        J::String(s) => Ok(s.clone()),
        J::Array(items) => {
            let named = |name: &str| {
                items.iter().find_map(|it| {
                    (it.get("name")?.as_str()? == name).then(|| it.get("template")?.as_str())?
                })
            };
            named("default").map(str::to_string).ok_or_else(|| {
                let names: Vec<&str> = items
                    .iter()
                    .filter_map(|it| it.get("name")?.as_str())
                    .collect();
                Error::Config {
                    what: what.to_string(),
                    reason: format!(
                        "a list of named templates without \"default\" (names: {names:?})"
                    ),
                }
            })
        }
        other => Err(Error::Config {
            what: what.to_string(),
            reason: format!(
                "expected a template string or a list of {{\"name\", \"template\"}}, found {}",
                kind_name(other)
            ),
        }),
    }
}

fn kind_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// transformers marks assistant text with `{% generation %}...{% endgeneration %}` (its
/// AssistantTracker extension, for training masks); rendering ignores the tags. We turn them into
/// `{% if true %}...{% endif %}` rather than deleting them, so the whitespace they control
/// (`-`/`+` markers, `trim_blocks`, `lstrip_blocks`) behaves exactly as around any block tag.
fn replace_generation_tags(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(at) = rest.find("{%") {
        out.push_str(&rest[..at]);
        let tag = &rest[at..];
        match parse_generation_tag(tag) {
            Some((len, open, l, r)) => {
                let body = if open { "if true" } else { "endif" };
                out.push_str(&format!("{{%{l} {body} {r}%}}"));
                rest = &tag[len..];
            }
            None => {
                out.push_str("{%");
                rest = &tag[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// For text starting with `{%`: if it is a `generation`/`endgeneration` tag, its length, whether
/// it opens, and its left and right whitespace markers.
fn parse_generation_tag(s: &str) -> Option<(usize, bool, &str, &str)> {
    let b = s.as_bytes();
    let mut i = 2;
    let marker = |i: usize| match b.get(i) {
        Some(b'-') => "-",
        Some(b'+') => "+",
        _ => "",
    };
    let l = marker(i);
    i += l.len();
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    let word_end = i + b[i..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    let open = match &s[i..word_end] {
        "generation" => true,
        "endgeneration" => false,
        _ => return None,
    };
    i = word_end;
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    let r = marker(i);
    i += r.len();
    s[i..].starts_with("%}").then_some((i + 2, open, l, r))
}

/// Prints values as Jinja2 does, with Python's `str()`: `True`, `None`, `1e-05`,
/// `['a', None]`. (Strings joined with `~` still use minijinja's spelling, and tuples print as
/// lists; chat templates rarely do either.)
fn python_formatter(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &Value,
) -> std::result::Result<(), minijinja::Error> {
    match value.kind() {
        ValueKind::Bool | ValueKind::None | ValueKind::Seq | ValueKind::Map => {
            let mut s = String::new();
            py_repr(value, &mut s)?;
            out.write_str(&s).map_err(minijinja::Error::from)
        }
        ValueKind::Number if !value.is_integer() => {
            let f = f64::try_from(value.clone())?;
            out.write_str(&py_float_repr(f))
                .map_err(minijinja::Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// Python's `repr()` of a value inside a printed container (`str()` of the container).
fn py_repr(v: &Value, out: &mut String) -> std::result::Result<(), minijinja::Error> {
    match v.kind() {
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::None | ValueKind::Undefined => out.push_str("None"),
        ValueKind::Number if v.is_integer() => out.push_str(&v.to_string()),
        ValueKind::Number => out.push_str(&py_float_repr(f64::try_from(v.clone())?)),
        ValueKind::String => py_str_repr(v.as_str().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, it) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&it, out)?;
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, k) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&k, out)?;
                out.push_str(": ");
                py_repr(&v.get_item(&k)?, out)?;
            }
            out.push('}');
        }
        _ => out.push_str(&v.to_string()),
    }
    Ok(())
}

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`.
fn py_str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

fn raise_exception(msg: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`, not Jinja's HTML-escaping filter, so the output has Python's spacing
/// (`{"a": 1, "b": [1, 2]}`).
fn tojson(value: &Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let indent: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match (v.as_i64(), v.as_str()) {
            (Some(n), _) => Some(" ".repeat(n.max(0) as usize)),
            (None, Some(s)) => Some(s.to_string()),
            _ => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an integer or a string",
                ))
            }
        },
    };
    let (item_sep, key_sep) = match separators.as_deref() {
        Some([a, b]) => (a.clone(), b.clone()),
        Some(_) => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair",
            ))
        }
        // Python's defaults: no space before a newline when indenting.
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let w = PyJson {
        ensure_ascii: ensure_ascii.unwrap_or(false),
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    w.write(value, 0, &mut out)?;
    Ok(Value::from(out))
}

struct PyJson {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl PyJson {
    fn write(
        &self,
        v: &Value,
        level: usize,
        out: &mut String,
    ) -> std::result::Result<(), minijinja::Error> {
        match v.kind() {
            ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
            ValueKind::Number if v.is_integer() => out.push_str(&v.to_string()),
            ValueKind::Number => {
                let f = f64::try_from(v.clone())?;
                out.push_str(&py_float_repr(f));
            }
            ValueKind::String => self.write_str(v.as_str().unwrap_or_default(), out),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = v.try_iter()?.collect();
                self.write_container(out, level, '[', ']', &items, |it, lvl, out| {
                    self.write(it, lvl, out)
                })?;
            }
            ValueKind::Map => {
                let mut entries: Vec<(String, Value)> = Vec::new();
                for k in v.try_iter()? {
                    let item = v.get_item(&k)?;
                    let key = match k.as_str() {
                        Some(s) => s.to_string(),
                        None => k.to_string(),
                    };
                    entries.push((key, item));
                }
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.write_container(out, level, '{', '}', &entries, |(k, it), lvl, out| {
                    self.write_str(k, out);
                    out.push_str(&self.key_sep);
                    self.write(it, lvl, out)
                })?;
            }
            ValueKind::Undefined => {
                return Err(minijinja::Error::new(
                    ErrorKind::UndefinedError,
                    "tojson: the value is undefined",
                ))
            }
            _ => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: a {} is not JSON serializable", v.kind()),
                ))
            }
        }
        Ok(())
    }

    fn write_container<T>(
        &self,
        out: &mut String,
        level: usize,
        open: char,
        close: char,
        items: &[T],
        mut each: impl FnMut(&T, usize, &mut String) -> std::result::Result<(), minijinja::Error>,
    ) -> std::result::Result<(), minijinja::Error> {
        out.push(open);
        if items.is_empty() {
            out.push(close);
            return Ok(());
        }
        for (i, it) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(&self.item_sep);
            }
            if let Some(ind) = &self.indent {
                out.push('\n');
                out.push_str(&ind.repeat(level + 1));
            }
            each(it, level + 1, out)?;
        }
        if let Some(ind) = &self.indent {
            out.push('\n');
            out.push_str(&ind.repeat(level));
        }
        out.push(close);
        Ok(())
    }

    fn write_str(&self, s: &str, out: &mut String) {
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
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c if self.ensure_ascii && !c.is_ascii() => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Python's `repr(float)`: shortest round-trip digits, positional for exponents in [-4, 16),
/// scientific otherwise (`1e-05`, `1e+16`), `.0` on integral values.
fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let sci = format!("{f:e}"); // shortest round-trip digits, e.g. "-1.25e-5"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{body}")
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let es = if exp < 0 { "-" } else { "+" };
        format!("{sign}{m}e{es}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_become_if_blocks() {
        assert_eq!(
            replace_generation_tags("a{% generation %}b{%- endgeneration -%}c{%+generation%}"),
            "a{% if true %}b{%- endif -%}c{%+ if true %}"
        );
        // Other tags and lookalikes stay.
        let s = "{% if x %}{{ generation }}{% endif %}{% generations %}{%";
        assert_eq!(replace_generation_tags(s), s);
    }

    #[test]
    fn python_float_repr() {
        for (f, want) in [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (-2.25, "-2.25"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (123456789012345.0, "123456789012345.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1.5e300, "1.5e+300"),
        ] {
            assert_eq!(py_float_repr(f), want, "{f}");
        }
    }
}
