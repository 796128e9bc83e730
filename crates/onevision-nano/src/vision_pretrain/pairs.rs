//! The caption pairs of a LLaVA data file: which samples are pairs, their images and texts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use onevision_train::data::{self, DataOptions, MediaRef, Origin, Speaker, IMAGE_MARKER};
use serde_json::Value;

use crate::error::io;
use crate::{Error, Result};

/// The `task` of the samples this stage trains on (the world's caption family).
pub const CAPTION_TASK: &str = "caption";

/// One image and its caption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub id: String,
    /// `file:line` of the sample, for messages.
    pub origin: String,
    /// Resolved against the image folder.
    pub image: PathBuf,
    /// The first gpt turn, `<image>` markers removed, trimmed.
    pub text: String,
}

/// What this stage needs to know of a raw entry that the train crate's `Sample` does not keep.
#[derive(Debug, Clone, Default)]
struct Entry {
    task: Option<String>,
    one_image: bool,
}

impl Entry {
    fn of(v: &Value) -> Self {
        let one_image = match v.get("image") {
            Some(Value::String(_)) => true,
            Some(Value::Array(list)) => list.len() == 1,
            _ => false,
        };
        Self {
            task: v.get("task").and_then(Value::as_str).map(str::to_owned),
            one_image,
        }
    }
}

/// The raw entries of a sample file by origin line, numbered as the train crate numbers them
/// (a `.json` list's element i is line i + 1; a `.jsonl` file's lines from 1).
fn read_entries(path: &Path) -> Result<HashMap<usize, Entry>> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut out = HashMap::new();
    if path.extension().and_then(|e| e.to_str()) == Some("jsonl") {
        for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if let Ok(v) = serde_json::from_slice::<Value>(line) {
                out.insert(n + 1, Entry::of(&v));
            }
        }
    } else if let Ok(Value::Array(list)) = serde_json::from_slice::<Value>(bytes) {
        for (i, v) in list.iter().enumerate() {
            out.insert(i + 1, Entry::of(v));
        }
    }
    Ok(out)
}

/// The caption pairs of a data file: samples with exactly one image whose `task` is
/// `"caption"`; in data without any `task` field, every one-image sample. The text is the first
/// gpt turn. Relative image paths are resolved against `image_folder`, by default the data
/// file's directory.
///
/// `Err` when the file cannot be loaded, when a would-be pair has a problem (its image missing
/// or unreadable, its conversation malformed: each one listed), or when no pair is found.
pub fn caption_pairs(data: &Path, image_folder: Option<&Path>) -> Result<Vec<Pair>> {
    let folder = match image_folder {
        Some(f) => f.to_path_buf(),
        None => data.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let opts = DataOptions {
        image_folder: Some(folder),
        ..DataOptions::default()
    };
    let ds = data::load(data, &opts)?;
    let files: BTreeSet<&PathBuf> = ds
        .samples
        .iter()
        .map(|s| &s.origin.file)
        .chain(ds.problems.iter().map(|p| &p.origin.file))
        .collect();
    let mut entries: HashMap<PathBuf, HashMap<usize, Entry>> = HashMap::new();
    for f in files {
        entries.insert(f.clone(), read_entries(f)?);
    }
    let entry = |o: &Origin| entries.get(&o.file).and_then(|m| m.get(&o.line));
    let tagged = entries
        .values()
        .flat_map(|m| m.values())
        .any(|e| e.task.is_some());
    let wanted = |e: &Entry| e.one_image && (!tagged || e.task.as_deref() == Some(CAPTION_TASK));

    let bad: Vec<String> = ds
        .problems
        .iter()
        .filter(|p| p.origin.line == 0 || entry(&p.origin).is_some_and(wanted))
        .map(|p| format!("  {p}"))
        .collect();
    if !bad.is_empty() {
        return Err(Error::Invalid(format!(
            "{} caption pair(s) of {} cannot be used:\n{}\nexpected each to name one readable image; fix or remove them",
            bad.len(),
            data.display(),
            bad.join("\n")
        )));
    }

    let mut pairs = vec![];
    let mut textless = 0;
    for s in &ds.samples {
        let MediaRef::Images(paths) = &s.media else {
            continue;
        };
        if paths.len() != 1 || !entry(&s.origin).is_some_and(wanted) {
            continue;
        }
        let text = s
            .turns
            .iter()
            .find(|t| t.from == Speaker::Gpt)
            .map(|t| t.value.replace(IMAGE_MARKER, "").trim().to_owned())
            .unwrap_or_default();
        if text.is_empty() {
            textless += 1;
            continue;
        }
        pairs.push(Pair {
            id: s.id.clone(),
            origin: s.origin.to_string(),
            image: paths[0].clone(),
            text,
        });
    }
    if pairs.is_empty() {
        return Err(no_pairs(data, ds.samples.len(), &entries, tagged, textless));
    }
    Ok(pairs)
}

/// The error for data without pairs, with what was found instead.
fn no_pairs(
    data: &Path,
    samples: usize,
    entries: &HashMap<PathBuf, HashMap<usize, Entry>>,
    tagged: bool,
    textless: usize,
) -> Error {
    let mut tasks: BTreeMap<&str, usize> = BTreeMap::new();
    let mut one_image = 0;
    for e in entries.values().flat_map(|m| m.values()) {
        *tasks
            .entry(e.task.as_deref().unwrap_or("(none)"))
            .or_insert(0) += 1;
        one_image += usize::from(e.one_image);
    }
    let found: Vec<String> = tasks.iter().map(|(t, n)| format!("{t} {n}")).collect();
    let rule = if tagged {
        format!("samples with exactly one image and \"task\": \"{CAPTION_TASK}\"")
    } else {
        "samples with exactly one image (the file has no `task` fields)".to_owned()
    };
    Error::Invalid(format!(
        "{} has no caption pairs: expected {rule} and a gpt turn with the caption; found {samples} usable sample(s), {one_image} entries with one image, {textless} pair(s) without text, tasks: {}",
        data.display(),
        found.join(", ")
    ))
}
