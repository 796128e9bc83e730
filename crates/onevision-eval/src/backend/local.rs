//! In-process generation with the engine's greedy path ([`Pipeline::generate`]): the
//! conversation of [`super`] (system prompt, every image, or the video, then the text),
//! greedy to `max_new_tokens`, stopping at the checkpoint's end-of-sequence ids.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::Device;
use onevision_engine::resolve::resolve_model;
use onevision_engine::{GenerateOptions, ImageInput, Pipeline, Request, VideoInput};
use onevision_nn::dtype::ComputeDType;
use onevision_processor::{DecodeLimits, Message, Part, Role};
use serde_json::json;

use super::frames::load_frames;
use super::{Backend, EvalRequest, GenError, SYSTEM_PROMPT, VIDEO_FRAMES};
use crate::doc::Visual;
use crate::error::Error;

/// One checkpoint, loaded on the CPU. Runs one request at a time (one model, one set of
/// caches per request; the run loop keeps one document in flight).
pub struct LocalBackend {
    /// Behind a mutex so that `generate(&self)` never runs two requests at once on it.
    pipeline: Mutex<Pipeline>,
    dir: PathBuf,
    dtype: ComputeDType,
}

impl LocalBackend {
    /// Loads the checkpoint in `dir` (a directory [`resolve_model`] found, or any checkpoint
    /// directory) to compute in `dtype`.
    pub fn load(dir: &Path, dtype: ComputeDType) -> Result<Self, Error> {
        let (pipeline, _report) = Pipeline::load(dir, dtype, &Device::Cpu)
            .map_err(|e| Error::Backend(format!("loading {}: {e}", dir.display())))?;
        Ok(Self::from_pipeline(pipeline, dir, dtype))
    }

    /// `--model DIR|ORG/NAME` (with `--revision` for Hub ids): [`resolve_model`], then
    /// [`LocalBackend::load`].
    pub fn from_spec(
        spec: &str,
        revision: Option<&str>,
        dtype: ComputeDType,
    ) -> Result<Self, Error> {
        let model = resolve_model(spec, revision).map_err(|e| Error::Backend(e.to_string()))?;
        Self::load(&model.dir, dtype)
    }

    /// A pipeline the caller loaded (quantized, with other decode limits, ...); `dir` and
    /// `dtype` are what [`Backend::describe`] reports.
    pub fn from_pipeline(pipeline: Pipeline, dir: &Path, dtype: ComputeDType) -> Self {
        Self {
            pipeline: Mutex::new(pipeline),
            dir: dir.to_path_buf(),
            dtype,
        }
    }
}

/// The engine request of a document: the conversation and its media, in the order of
/// the `Part::Image` / `Part::Video` parts.
fn engine_request(eval: &EvalRequest, limits: &DecodeLimits) -> Result<Request, GenError> {
    let mut parts = Vec::new();
    let mut images = Vec::new();
    let mut videos = Vec::new();
    match &eval.prompt.visual {
        Visual::None => {}
        Visual::Images(list) => {
            for (i, img) in list.iter().enumerate() {
                parts.push(Part::Image);
                images.push(ImageInput::Bytes {
                    bytes: img.bytes.clone(),
                    what: image_name(i, img.path.as_deref()),
                });
            }
        }
        Visual::Video(path) => {
            parts.push(Part::Video);
            videos.push(VideoInput::Path {
                path: path.clone(),
                frames: VIDEO_FRAMES,
            });
        }
        Visual::Frames(paths) => {
            parts.push(Part::Video);
            let frames = load_frames(paths, VIDEO_FRAMES, limits)?;
            videos.push(VideoInput::Decoded(frames));
        }
    }
    parts.push(Part::Text(eval.prompt.text.clone()));
    Ok(Request {
        messages: vec![
            Message::new(Role::System, vec![Part::Text(SYSTEM_PROMPT.into())]),
            Message::new(Role::User, parts),
        ],
        images,
        videos,
    })
}

/// How an image is named in error messages: its position, and the dataset's file name.
fn image_name(index: usize, path: Option<&str>) -> String {
    match path {
        Some(p) if !p.is_empty() => format!("#{index} ({p})"),
        _ => format!("#{index}"),
    }
}

impl Backend for LocalBackend {
    fn generate(&self, request: &EvalRequest) -> Result<String, GenError> {
        // A poisoned lock only means an earlier request panicked outside the engine's own
        // catch; the pipeline holds no state between requests.
        let pipeline = self.pipeline.lock().unwrap_or_else(|p| p.into_inner());
        let req = engine_request(request, &pipeline.limits)?;
        let options = GenerateOptions {
            max_new_tokens: request.max_new_tokens,
            ignore_eos: false,
        };
        // Every engine error is this document's: undecodable media and prompts over the
        // context are the request's fault, and anything else leaves the model as it was.
        pipeline
            .generate(&req, options, |_| {})
            .map(|out| out.text)
            .map_err(|e| GenError::Doc(e.to_string()))
    }

    fn concurrency(&self) -> usize {
        1
    }

    fn describe(&self) -> serde_json::Value {
        json!({
            "model": "onevision",
            "model_args": format!("pretrained={},dtype={}", self.dir.display(), self.dtype),
        })
    }
}
