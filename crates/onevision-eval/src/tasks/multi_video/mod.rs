//! Multi-image and video recipes: muirbench, llava_interleave_bench (in_domain, out_domain,
//! multi_view), videomme, nextqa_mc_test, mvbench (20 tasks), mlvu, egoschema_subset, as
//! lmms-eval 0.2.1 defines them with their `default` prompt kwargs.
//!
//! Media. Where lmms-eval finds a video under its cache (`$HF_HOME/<cache_dir>/...`), these
//! recipes look under `--video-dir DIR` ([`Context::video_dir`]) with the same layout below it;
//! each task's doc comment gives it. A missing file is a [`DocError`] naming the path(s) tried.
//!
//! `<image>` markers. MuirBench's and the interleave bench's texts place images with `<image>`
//! markers, which lmms-eval's llava_onevision keeps (a context with `<image>` is used as is, the
//! images spliced where the markers are). Our backends put every image before the text (as
//! lmms-eval does for texts without markers), and the tokenizer would read a literal `<image>`
//! as one more image placeholder, so [`strip_image_markers`] takes them out of the prompt: the
//! markers (and the whitespace after them) at the start, where our template puts the images
//! anyway, and every other marker, keeping the text around it. `doc_to_text` itself (checked
//! against lmms-eval in tests/multi_video.rs) is lmms-eval's, markers included.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::doc::field_str;
use crate::error::DocError;
use crate::task::{Context, Task};

mod egoschema;
mod interleave;
mod mlvu;
mod muirbench;
mod mvbench;
mod nextqa;
mod videomme;

/// A recipe of this module: a [`Task`] whose `doc_to_text` can be called on its own (the
/// fixture tests compare it with lmms-eval's, without the media).
pub trait Recipe: Task {
    /// lmms-eval's `doc_to_text(doc, lmms_eval_specific_kwargs["default"])`, exactly.
    fn doc_to_text(&self, doc: &Map<String, Value>) -> Result<String, DocError>;
}

/// The recipes of this module, in lmms-eval's names.
pub fn recipes() -> Vec<Box<dyn Recipe>> {
    let mut v: Vec<Box<dyn Recipe>> = vec![Box::new(muirbench::MuirBench)];
    v.extend(interleave::tasks());
    v.push(Box::new(videomme::VideoMme));
    v.push(Box::new(nextqa::NextQaMc));
    v.extend(mvbench::tasks());
    v.push(Box::new(mlvu::Mlvu));
    v.push(Box::new(egoschema::EgoSchemaSubset));
    v
}

/// The tasks of this module, in lmms-eval's names.
pub fn tasks() -> Vec<Box<dyn Task>> {
    recipes().into_iter().map(|r| r as Box<dyn Task>).collect()
}

/// `doc_to_text` of the task named `task` (None when this module has no such task).
pub fn doc_to_text(task: &str, doc: &Map<String, Value>) -> Option<Result<String, DocError>> {
    recipes()
        .into_iter()
        .find(|r| r.name() == task)
        .map(|r| r.doc_to_text(doc))
}

const MARKER: &str = "<image>";

/// The prompt text without lmms-eval's `<image>` markers (see the module doc): leading markers
/// and the whitespace after each are dropped, other markers are removed.
pub fn strip_image_markers(text: &str) -> String {
    let space = crate::metrics::pystr::is_py_space;
    let mut rest = text;
    let mut leading = false;
    while let Some(after) = rest.trim_start_matches(space).strip_prefix(MARKER) {
        rest = after.trim_start_matches(space);
        leading = true;
    }
    // Without leading markers the text is kept from its first character.
    let body = if leading { rest } else { text };
    body.replace(MARKER, "")
}

/// The `--video-dir` a video task needs.
fn video_dir<'a>(ctx: &'a Context, task: &str, layout: &str) -> Result<&'a Path, DocError> {
    ctx.video_dir.as_deref().ok_or_else(|| {
        DocError::new(format!(
            "{task} reads videos: pass --video-dir DIR with the files laid out as {layout}"
        ))
    })
}

/// The first of `candidates` that exists, else an error naming them all.
fn first_existing(task: &str, candidates: Vec<PathBuf>) -> Result<PathBuf, DocError> {
    if let Some(p) = candidates.iter().find(|p| p.exists()) {
        return Ok(p.clone());
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(DocError::new(format!(
        "{task}: video not found; expected {}",
        tried.join(" or ")
    )))
}

/// An integer field (JSON integer).
fn field_i64(doc: &Map<String, Value>, column: &str) -> Result<i64, DocError> {
    match doc.get(column) {
        Some(v) => v
            .as_i64()
            .ok_or_else(|| DocError::new(format!("`{column}` should be an integer, got {v}"))),
        None => Err(DocError::new(format!(
            "the document has no `{column}` field"
        ))),
    }
}

/// A list-of-strings field.
fn field_str_list(doc: &Map<String, Value>, column: &str) -> Result<Vec<String>, DocError> {
    let bad = |v: &Value| DocError::new(format!("`{column}` should be a list of strings, got {v}"));
    match doc.get(column) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|x| x.as_str().map(String::from).ok_or_else(|| bad(x)))
            .collect(),
        Some(v) => Err(bad(v)),
        None => Err(DocError::new(format!(
            "the document has no `{column}` field"
        ))),
    }
}

/// A string field, owned.
fn field_string(doc: &Map<String, Value>, column: &str) -> Result<String, DocError> {
    field_str(doc, column).map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_stripped() {
        assert_eq!(strip_image_markers("<image>\n<image>\nWhat?"), "What?");
        assert_eq!(strip_image_markers("<image><image> What?"), "What?");
        assert_eq!(
            strip_image_markers("Image 1: <image>\nImage 2: <image>\nSame?"),
            "Image 1: \nImage 2: \nSame?"
        );
        assert_eq!(strip_image_markers("  What? <image>"), "  What? ");
        assert_eq!(strip_image_markers("What?"), "What?");
        assert_eq!(strip_image_markers("<image>"), "");
    }

    #[test]
    fn names_are_lmms_evals() {
        let names: Vec<String> = tasks().iter().map(|t| t.name().to_string()).collect();
        assert_eq!(names.len(), 1 + 3 + 1 + 1 + 20 + 1 + 1);
        for n in [
            "muirbench",
            "llava_interleave_bench_in_domain",
            "llava_interleave_bench_out_domain",
            "llava_interleave_bench_multi_view",
            "videomme",
            "nextqa_mc_test",
            "mvbench_action_sequence",
            "mvbench_episodic_reasoning",
            "mlvu",
            "egoschema_subset",
        ] {
            assert!(names.iter().any(|x| x == n), "{n}");
        }
        let mv = tasks()
            .iter()
            .filter(|t| t.group() == Some("mvbench"))
            .count();
        assert_eq!(mv, 20);
    }
}
