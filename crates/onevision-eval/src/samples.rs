//! `OUTPUT/samples_<task>.jsonl`: one line per document, as current lmms-eval writes its
//! samples (`doc_id`, `doc`, `target`, `input`, `resps`, `filtered_resps`, then each metric's
//! value), plus `failed` (the reason) for a document that could not be evaluated.
//!
//! During a run the lines are appended as documents finish (in any order, without metric
//! values); a rerun with the same output skips the documents already there (failed ones are
//! tried again). When the task's documents are all done, the file is rewritten in doc_id
//! order with every metric's value, computed in that order (see [`crate::task::Task::process`]).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// One document's line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub doc_id: usize,
    /// The fields of the row the scoring reads (no images).
    pub doc: Map<String, Value>,
    pub target: Value,
    /// The task's text prompt (doc_to_text), before the chat template.
    pub input: String,
    /// `[[answer]]`: one request per document, one answer per request, as lmms-eval nests it.
    pub resps: Vec<Vec<String>>,
    pub filtered_resps: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// Each metric's per-document value (absent until the task is scored).
    #[serde(flatten)]
    pub metrics: Map<String, Value>,
}

impl Sample {
    /// The model's (stripped) answer.
    pub fn response(&self) -> &str {
        self.resps
            .first()
            .and_then(|r| r.first())
            .map(String::as_str)
            .unwrap_or("")
    }
}

pub fn samples_path(output: &Path, task: &str) -> PathBuf {
    output.join(format!("samples_{task}.jsonl"))
}

/// What a samples file held.
#[derive(Debug, Default)]
pub struct Loaded {
    /// By doc_id; a later line for the same document replaces an earlier one.
    pub samples: BTreeMap<usize, Sample>,
    /// Lines that could not be parsed: a line cut short by an interrupted run (the last one),
    /// or anything else; counted and reported, never silently dropped.
    pub bad_lines: Vec<(usize, String)>,
}

/// Reads a samples file; a missing file is empty.
pub fn load(path: &Path) -> Result<Loaded> {
    let mut out = Loaded::default();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(path.display(), e)),
    };
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path.display(), e))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Sample>(&line) {
            Ok(s) => {
                out.samples.insert(s.doc_id, s);
            }
            Err(e) => out.bad_lines.push((i + 1, e.to_string())),
        }
    }
    Ok(out)
}

/// Appends samples, one JSON line each, flushed, so an interrupted run keeps them.
pub struct Appender {
    file: std::fs::File,
    path: PathBuf,
}

impl Appender {
    pub fn open(path: &Path) -> Result<Self> {
        // A line cut short by a crash has no newline; start on a fresh line.
        let needs_newline = match std::fs::read(path) {
            Ok(bytes) => !bytes.is_empty() && bytes.last() != Some(&b'\n'),
            Err(_) => false,
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path.display(), e))?;
        if needs_newline {
            file.write_all(b"\n")
                .map_err(|e| Error::io(path.display(), e))?;
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn append(&mut self, sample: &Sample) -> Result<()> {
        let mut line = serde_json::to_string(sample).map_err(|e| Error::Samples {
            what: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io(self.path.display(), e))
    }
}

/// Rewrites the file with these samples in doc_id order (through a temporary file, renamed).
pub fn rewrite(path: &Path, samples: &BTreeMap<usize, Sample>) -> Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    let mut text = String::new();
    for s in samples.values() {
        text.push_str(&serde_json::to_string(s).map_err(|e| Error::Samples {
            what: path.display().to_string(),
            reason: e.to_string(),
        })?);
        text.push('\n');
    }
    std::fs::write(&tmp, text).map_err(|e| Error::io(tmp.display(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path.display(), e))
}
