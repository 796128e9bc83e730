//! A dataset row as a task sees it, and the media a task hands to the model.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::error::DocError;

/// An image as the Hub's parquet files store it: a `{bytes, path}` struct.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedImage {
    pub bytes: Vec<u8>,
    pub path: Option<String>,
}

/// One dataset row: every non-image column as JSON (what lmms-eval's `doc` dict holds, with
/// the images left out), and every image column (a struct or a list of structs) as encoded
/// images. Null image cells give an empty list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub fields: Map<String, Value>,
    pub images: BTreeMap<String, Vec<EncodedImage>>,
}

impl Row {
    /// A column's value; an error naming the column when it is absent.
    pub fn get(&self, column: &str) -> Result<&Value, DocError> {
        self.fields
            .get(column)
            .ok_or_else(|| DocError::new(format!("the row has no `{column}` column")))
    }

    /// A string column (an error when absent or not a string).
    pub fn str(&self, column: &str) -> Result<&str, DocError> {
        field_str(&self.fields, column)
    }

    /// An image column's images, in order.
    pub fn images(&self, column: &str) -> Result<&[EncodedImage], DocError> {
        self.images
            .get(column)
            .map(|v| v.as_slice())
            .ok_or_else(|| DocError::new(format!("the row has no image column `{column}`")))
    }
}

/// A field of a document's JSON fields, any type (Python's `doc[key]`; KeyError -> an error
/// naming it).
pub fn field<'a>(fields: &'a Map<String, Value>, column: &str) -> Result<&'a Value, DocError> {
    fields
        .get(column)
        .ok_or_else(|| DocError::new(format!("the document has no `{column}` field")))
}

/// A string field of a document's JSON fields.
pub fn field_str<'a>(fields: &'a Map<String, Value>, column: &str) -> Result<&'a str, DocError> {
    match fields.get(column) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(DocError::new(format!(
            "`{column}` should be a string, got {other}"
        ))),
        None => Err(DocError::new(format!(
            "the document has no `{column}` field"
        ))),
    }
}

/// What the model sees besides the text, as lmms-eval's `doc_to_visual` returns it.
#[derive(Debug, Clone, PartialEq)]
pub enum Visual {
    None,
    /// One image (AnyRes) or several (each on the pad path), in prompt order.
    Images(Vec<EncodedImage>),
    /// A video file, sampled at 32 frames by `np.linspace` (lmms-eval's `max_frames_num`).
    Video(PathBuf),
    /// Frames already extracted (frame-folder datasets): lmms-eval subsamples them with the
    /// same linspace to `sample_frames` and feeds them as a video.
    Frames(Vec<PathBuf>),
}

/// One document's request, before the chat template: the task's `doc_to_text` and its media.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// `doc_to_text(doc)`, without the image tokens the model wrapper adds.
    pub text: String,
    pub visual: Visual,
}
