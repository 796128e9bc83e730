//! One sample file: a `.json` list or a `.jsonl` file, read into entries (list elements or
//! non-blank lines), of which a sampling strategy picks some, each then parsed and checked.
//!
//! LLaVA-NeXT `json.load`s the whole file and crashes on its first bad line; here a bad line is a
//! problem of its own and the others still load. Only the picked entries are parsed and checked,
//! so `first:1000` of a million-line file costs a thousand samples' checks; an entry the strategy
//! did not pick is not trained on and reports nothing.

use std::ops::Range;
use std::path::Path;

use serde_json::Value;

use super::media::MediaChecker;
use super::mixture::Strategy;
use super::sample::{json_type, parse_sample};
use super::{Dataset, Origin, Problem, SourceSummary};
use crate::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// A JSON list of samples.
    Json,
    /// One JSON sample per line; blank lines skipped.
    Jsonl,
}

impl Format {
    pub(super) fn of(path: &Path) -> Option<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Some(Format::Json),
            Some("jsonl") => Some(Format::Jsonl),
            _ => None,
        }
    }
}

enum Entries {
    /// A `.json` list's elements (element i is origin line i + 1).
    List(Vec<Value>),
    /// A `.jsonl` file's non-blank lines: (1-based line number, byte range), parsed when picked.
    Lines {
        bytes: Vec<u8>,
        lines: Vec<(usize, Range<usize>)>,
    },
}

impl Entries {
    fn len(&self) -> usize {
        match self {
            Entries::List(v) => v.len(),
            Entries::Lines { lines, .. } => lines.len(),
        }
    }
}

/// A UTF-8 byte-order mark, which editors on Windows write and `serde_json` refuses.
fn without_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

fn read_entries(
    path: &Path,
    bytes: Vec<u8>,
    format: Format,
    problems: &mut Vec<Problem>,
) -> Entries {
    match format {
        Format::Json => {
            let whole = Origin {
                file: path.to_path_buf(),
                line: 0,
            };
            match serde_json::from_slice::<Value>(without_bom(&bytes)) {
                Ok(Value::Array(list)) => Entries::List(list),
                Ok(other) => {
                    problems.push(Problem::new(
                        &whole,
                        None,
                        format!(
                            "the file holds a JSON {}; expected a JSON list of samples (write one sample per line in a .jsonl file instead)",
                            json_type(&other)
                        ),
                    ));
                    Entries::List(Vec::new())
                }
                Err(e) => {
                    problems.push(Problem::new(
                        &whole,
                        None,
                        format!("not valid JSON ({e}); expected a JSON list of samples"),
                    ));
                    Entries::List(Vec::new())
                }
            }
        }
        Format::Jsonl => {
            let start = bytes.len() - without_bom(&bytes).len();
            let mut lines = Vec::new();
            let mut offset = start;
            for (n, line) in bytes[start..].split(|&b| b == b'\n').enumerate() {
                let range = offset..offset + line.len();
                offset += line.len() + 1;
                if !line.iter().all(u8::is_ascii_whitespace) {
                    lines.push((n + 1, range));
                }
            }
            Entries::Lines { bytes, lines }
        }
    }
}

/// Reads one sample file (already read into `bytes`), picks entries by `strategy`, and appends
/// the good samples, the problems and a summary to `ds`.
pub(super) fn load_file(
    path: &Path,
    bytes: Vec<u8>,
    format: Format,
    strategy: Strategy,
    rng: &mut Rng,
    checker: &mut MediaChecker<'_>,
    ds: &mut Dataset,
) {
    let mut entries = read_entries(path, bytes, format, &mut ds.problems);
    let picked = strategy.select(entries.len(), rng);
    ds.sources.push(SourceSummary {
        path: path.to_path_buf(),
        strategy: strategy.to_string(),
        available: entries.len(),
        taken: picked.len(),
    });
    for i in picked {
        let (line, value) = match &mut entries {
            Entries::List(list) => (i + 1, Ok(std::mem::take(&mut list[i]))),
            Entries::Lines { bytes, lines } => {
                let (line, range) = &lines[i];
                (
                    *line,
                    serde_json::from_slice::<Value>(&bytes[range.clone()]),
                )
            }
        };
        let origin = Origin {
            file: path.to_path_buf(),
            line,
        };
        match value {
            Ok(value) => {
                if let Some(sample) = parse_sample(&value, &origin, checker, &mut ds.problems) {
                    ds.samples.push(sample);
                }
            }
            Err(e) => {
                // The position is within the line; "line 1" would only confuse.
                let e = e.to_string().replace(" at line 1 column ", " at column ");
                ds.problems.push(Problem::new(
                    &origin,
                    None,
                    format!("not valid JSON ({e}); expected one JSON sample object per line"),
                ));
            }
        }
    }
}
