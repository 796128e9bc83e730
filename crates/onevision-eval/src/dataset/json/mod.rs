//! JSON and JSON Lines data files, read as `datasets`' json builder reads them (datasets
//! 2.16.1, the version lmms-eval 0.2.1 pins: packaged_modules/json/json.py
//! `Json._generate_tables`), for the Hub repos that keep their data as JSON (OpenGVLab/MVBench:
//! `json/<sub_task>.json`, a list of records per config).
//!
//! Per file, as the builder does:
//! - with the card's `field: F` ([`JsonOptions::field`]): `json.load` the file, take its key
//!   `F`: a list of objects (records) or an object of equally long lists (columns);
//! - otherwise pyarrow's JSON reader first: objects one after another (JSON Lines); when that
//!   fails, `json.load` of the whole file, which must be a list of objects. A file that is
//!   one object pyarrow cannot read as one row is an error naming its keys (the builder's
//!   "You should probably indicate the field of the JSON file containing your records").
//!
//! Each column gets one type over all the split's records ([`schema`]: an integer column
//! with a float somewhere is a float column, a key missing from a record is `null`, so is
//! a struct field missing from one object) and every value is given in it, as `to_pydict()`
//! gives it to lmms-eval. JSON data have no image columns (media are paths).
//!
//! Where this differs from `datasets` (none of it is seen in the Hub's JSON datasets):
//! - a split of several files gets one type per column over all of them; the builder takes
//!   the first file's table schema and casts the others' tables to it (which fails, or
//!   truncates `2.0` to `2`, where they differ);
//! - pyarrow reads JSON Lines in blocks of 320 KiB, and an object printed across lines fails
//!   at a block boundary (then the whole file must be a JSON list); here such a file reads;
//! - Python's `json.load` keeps a lone UTF-16 surrogate (`"\ud800"`) in a string; a Rust
//!   string cannot, so it is an error here.

pub(crate) mod parse;
pub(crate) mod schema;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use parse::{Dialect, JsonValue};
use schema::{Reader, Ty};

/// The json builder's options a dataset card's config can set (`configs: - config_name: x
/// ... field: data`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonOptions {
    /// The file is one JSON object whose key `field` holds the records: a list of objects or
    /// an object of columns (equally long lists).
    pub field: Option<String>,
}

type Record = Vec<(String, JsonValue)>;

/// One file's rows, each a document's fields.
pub(crate) type Rows = Vec<Map<String, Value>>;

/// One data file, parsed: its records, which reader `datasets` takes them with, and its
/// columns' types in first-seen order.
pub(crate) struct JsonFile {
    path: PathBuf,
    reader: Reader,
    records: Vec<Record>,
    /// The line each record starts on (JSON Lines), for messages.
    lines: Option<Vec<usize>>,
    columns: Vec<(String, Ty)>,
}

fn err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Dataset {
        what: path.display().to_string(),
        reason: reason.into(),
    }
}

impl JsonFile {
    /// Reads and parses `path` (once), inferring its columns' types.
    pub(crate) fn open(path: &Path, options: &JsonOptions) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path.display(), e))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            err(
                path,
                format!(
                    "not UTF-8 text (invalid byte at offset {}); `datasets` reads JSON as UTF-8",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        let bom = text.starts_with('\u{feff}');
        let refuse_bom = || {
            err(
                path,
                "starts with a UTF-8 byte order mark, which Python's json.load refuses (so does \
                 `datasets` for a JSON list or a `field:` file); remove its first 3 bytes",
            )
        };
        let bad_json = |e: parse::ParseError| err(path, e.to_string());
        if let Some(field) = &options.field {
            if bom {
                return Err(refuse_bom());
            }
            let top = parse::parse(&text, Dialect::Python, 0).map_err(bad_json)?;
            let JsonValue::Object(keys) = top else {
                return Err(err(
                    path,
                    format!(
                        "the dataset card gives `field: {field}`, so the file must be one JSON \
                         object; it is {}",
                        top.kind()
                    ),
                ));
            };
            let names: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
            let Some((_, inner)) = keys.into_iter().find(|(k, _)| k == field) else {
                return Err(err(
                    path,
                    format!(
                        "the dataset card gives `field: {field}`, but the file's object has no \
                         key `{field}` (its keys: {names:?})"
                    ),
                ));
            };
            let records = match inner {
                JsonValue::Array(items) => records_of_list(path, items)?,
                JsonValue::Object(cols) => records_of_columns(path, field, cols)?,
                other => {
                    return Err(err(
                        path,
                        format!(
                            "`{field}` holds {}, not a list of records or an object of columns",
                            other.kind()
                        ),
                    ))
                }
            };
            return Self::typed(path, Reader::Python, records, None);
        }
        let body = text.strip_prefix('\u{feff}').unwrap_or(&text);
        // pyarrow's reader always fails on a top-level array ("changed from object to array"):
        // a JSON list goes straight to json.load.
        if !body
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('[')
        {
            let arrow_error = match Self::json_lines(path, body) {
                Ok(file) => return Ok(file),
                Err(e) => e,
            };
            // The builder's fallback: json.load of the whole file.
            if let (false, Ok(JsonValue::Object(keys))) =
                (bom, parse::parse(&text, Dialect::Python, 0))
            {
                let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
                return Err(err(
                    path,
                    format!(
                        "one JSON object (keys {names:?}), not records; if one of its keys holds \
                         the records, the dataset card must name it with `field:` (pyarrow's \
                         reader: {arrow_error})"
                    ),
                ));
            }
            return Err(arrow_error);
        }
        if bom {
            return Err(refuse_bom());
        }
        match parse::parse(&text, Dialect::Python, 0).map_err(bad_json)? {
            JsonValue::Array(items) => {
                let records = records_of_list(path, items)?;
                Self::typed(path, Reader::Python, records, None)
            }
            other => Err(err(
                path,
                format!("{} is not a list of records", other.kind()),
            )),
        }
    }

    /// pyarrow's JSON reader: objects one after another.
    fn json_lines(path: &Path, body: &str) -> Result<Self> {
        let values =
            parse::parse_stream(body, Dialect::Arrow).map_err(|e| err(path, e.to_string()))?;
        let (mut records, mut lines) = (vec![], vec![]);
        for (i, (line, v)) in values.into_iter().enumerate() {
            match v {
                JsonValue::Object(fields) => records.push(fields),
                other => {
                    return Err(err(
                        path,
                        format!(
                            "record {i} (line {line}) is {}, not an object: JSON Lines hold one \
                             object per record",
                            other.kind()
                        ),
                    ))
                }
            }
            lines.push(line);
        }
        Self::typed(path, Reader::Arrow, records, Some(lines))
    }

    fn typed(
        path: &Path,
        reader: Reader,
        records: Vec<Record>,
        lines: Option<Vec<usize>>,
    ) -> Result<Self> {
        let mut columns: Vec<(String, Ty)> = vec![];
        for (i, record) in records.iter().enumerate() {
            for (k, v) in record {
                let at = || {
                    let line = lines
                        .as_ref()
                        .and_then(|l| l.get(i))
                        .map_or(String::new(), |l| format!(" (line {l})"));
                    format!("record {i}{line}, column `{k}`")
                };
                let t =
                    schema::type_of(v, reader).map_err(|c| err(path, format!("{}: {c}", at())))?;
                match columns.iter_mut().find(|(c, _)| c == k) {
                    Some(slot) => {
                        let old = std::mem::replace(&mut slot.1, Ty::Null);
                        slot.1 = schema::unify(old, t)
                            .map_err(|c| err(path, format!("{}: {c}", at())))?;
                    }
                    None => columns.push((k.clone(), t)),
                }
            }
        }
        Ok(JsonFile {
            path: path.to_path_buf(),
            reader,
            records,
            lines,
            columns,
        })
    }
}

/// `json.load`'s list: every item must be an object (the builder: `row.keys()`).
fn records_of_list(path: &Path, items: Vec<JsonValue>) -> Result<Vec<Record>> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            JsonValue::Object(fields) => Ok(fields),
            other => Err(err(
                path,
                format!(
                    "record {i} of the list is {}, not an object (`datasets`: \"Not able to \
                     read records in the JSON file\")",
                    other.kind()
                ),
            )),
        })
        .collect()
}

/// A `field:` object of columns (`pa.Table.from_pydict(mapping)`): equally long lists.
fn records_of_columns(
    path: &Path,
    field: &str,
    cols: Vec<(String, JsonValue)>,
) -> Result<Vec<Record>> {
    let mut n = None;
    for (k, v) in &cols {
        let JsonValue::Array(items) = v else {
            return Err(err(
                path,
                format!(
                    "`{field}.{k}` is {}; an object of columns holds a list per column",
                    v.kind()
                ),
            ));
        };
        match n {
            Some(len) if len != items.len() => {
                return Err(err(
                    path,
                    format!(
                        "`{field}.{k}` has {} values where the columns before it have {len}",
                        items.len()
                    ),
                ))
            }
            _ => n = Some(items.len()),
        }
    }
    let mut records: Vec<Record> = (0..n.unwrap_or(0)).map(|_| vec![]).collect();
    for (k, v) in cols {
        if let JsonValue::Array(items) = v {
            for (record, item) in records.iter_mut().zip(items) {
                record.push((k.clone(), item));
            }
        }
    }
    Ok(records)
}

/// A split's files as rows: one type per column over all of them (in first-seen order), every
/// record with every column. Returns the columns and each file's rows.
pub(crate) fn split_rows(files: &[JsonFile]) -> Result<(Vec<String>, Vec<Rows>)> {
    let mut columns: Vec<(String, Ty)> = vec![];
    for f in files {
        for (k, t) in &f.columns {
            match columns.iter_mut().find(|(c, _)| c == k) {
                Some(slot) => {
                    let old = std::mem::replace(&mut slot.1, Ty::Null);
                    slot.1 = schema::unify(old, t.clone()).map_err(|c| {
                        err(
                            &f.path,
                            format!(
                                "column `{k}`: {c}, over this split's files (this file against \
                                 the ones before it)"
                            ),
                        )
                    })?;
                }
                None => columns.push((k.clone(), t.clone())),
            }
        }
    }
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let mut rows = Vec::with_capacity(f.records.len());
        for (i, record) in f.records.iter().enumerate() {
            let mut row = Map::new();
            for (k, t) in &columns {
                let v = match record.iter().find(|(c, _)| c == k) {
                    Some((_, v)) => schema::conform(v, t, f.reader).map_err(|e| {
                        let line = f
                            .lines
                            .as_ref()
                            .and_then(|l| l.get(i))
                            .map_or(String::new(), |l| format!(" (line {l})"));
                        err(&f.path, format!("record {i}{line}, column `{k}`: {e}"))
                    })?,
                    None => Value::Null,
                };
                row.insert(k.clone(), v);
            }
            rows.push(row);
        }
        out.push(rows);
    }
    Ok((columns.into_iter().map(|(k, _)| k).collect(), out))
}

/// Whether `path` names a file the json builder reads (`.json`, `.jsonl`).
pub(crate) fn is_json_name(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e == "json" || e == "jsonl")
}
