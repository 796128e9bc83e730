//! A loaded checkpoint and one request's way into the model: decode the media, run the
//! processor, build the model input; plus [`Pipeline::generate`], a greedy run of the engine's
//! generation loop (crate::generate) for the CLI.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use onevision_models::llava_ov::{LoadReport, Media, MultimodalInput};
use onevision_models::LlavaOnevision;
use onevision_nn::dtype::ComputeDType;
use onevision_processor::video::{load_video, VideoSource};
use onevision_processor::{
    decode_bytes, decode_file, DecodeLimits, Message, Pixels, ProcessedPrompt, Processor, RgbImage,
};
use serde::Serialize;

use crate::generate::run_with;
use crate::request::{Event, SamplingParams, StopRules};
use crate::{Error, Result};

/// Where an image comes from.
#[derive(Debug, Clone)]
pub enum ImageInput {
    Path(PathBuf),
    /// Encoded file bytes (PNG, JPEG, ...); `what` names it in errors.
    Bytes {
        bytes: Vec<u8>,
        what: String,
    },
    Decoded(RgbImage),
}

/// Where a video comes from, and how many frames to sample from it.
#[derive(Debug, Clone)]
pub enum VideoInput {
    /// A container file, an animated GIF, or a directory of frame images.
    Path {
        path: PathBuf,
        frames: usize,
    },
    Bytes {
        bytes: Vec<u8>,
        what: String,
        frames: usize,
    },
    Decoded(Vec<RgbImage>),
}

/// A conversation and its media, matched in order to the `Part::Image` / `Part::Video`
/// entries of the messages.
#[derive(Debug, Clone)]
pub struct Request {
    pub messages: Vec<Message>,
    pub images: Vec<ImageInput>,
    pub videos: Vec<VideoInput>,
}

#[derive(Debug, Clone, Copy)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// Keep generating past end-of-sequence tokens (for benchmarks).
    pub ignore_eos: bool,
}

/// Milliseconds spent in each stage of one request.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    /// Waiting for the engine, from the end of its preprocessing to its admission among the
    /// running requests (about 0 outside a busy server).
    pub queue_ms: f64,
    /// Decoding files, resizing, normalizing, templating and tokenizing.
    pub preprocess_ms: f64,
    /// Vision tower, projector and feature packing (0 for text-only prompts).
    pub encode_ms: f64,
    /// The decoder over the whole prompt, up to the first token.
    pub prefill_ms: f64,
    /// From the start of the request to the first generated token.
    pub ttft_ms: f64,
    /// Generated tokens after the first, per second of decoding (0 when fewer than 2 tokens).
    pub decode_tokens_per_s: f64,
    pub total_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GenerateOutput {
    pub text: String,
    /// Generated ids (the end-of-sequence token included when it stopped generation).
    pub token_ids: Vec<u32>,
    /// Prompt length in tokens, media placeholders included.
    pub prompt_tokens: usize,
    /// Placeholder tokens of all images and videos.
    pub image_tokens: usize,
    /// "stop" (end-of-sequence) or "length" (`max_new_tokens` reached).
    pub finish_reason: &'static str,
    pub timings: Timings,
}

/// A loaded checkpoint: model, processor and stop ids.
pub struct Pipeline {
    pub model: LlavaOnevision,
    pub processor: Processor,
    /// End-of-sequence ids: config.json's and generation_config.json's.
    pub eos: Vec<u32>,
    pub limits: DecodeLimits,
}

/// `eos_token_id` of generation_config.json: absent, an id, or a list of ids.
fn generation_eos(dir: &Path) -> Result<Vec<u32>> {
    let path = dir.join("generation_config.json");
    if !path.exists() {
        return Ok(vec![]);
    }
    let bad = |reason: String| Error::Checkpoint {
        what: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let ids = match v.get("eos_token_id") {
        None | Some(serde_json::Value::Null) => vec![],
        Some(serde_json::Value::Number(n)) => vec![n.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_number()
                    .cloned()
                    .ok_or_else(|| bad(format!("eos_token_id entry {x} is not an id")))
            })
            .collect::<Result<_>>()?,
        Some(other) => {
            return Err(bad(format!(
                "eos_token_id must be an id or a list of ids, got {other}"
            )))
        }
    };
    ids.iter()
        .map(|n| {
            n.as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .ok_or_else(|| bad(format!("eos_token_id {n} is not a token id")))
        })
        .collect()
}

impl Pipeline {
    /// Loads the model and the processor files of a checkpoint directory.
    pub fn load(dir: &Path, dtype: ComputeDType, device: &Device) -> Result<(Self, LoadReport)> {
        let (model, report) = LlavaOnevision::load(dir, dtype, device)?;
        let processor = Processor::from_dir(dir, model.config())?;
        let mut eos = model.config().eos_token_ids.clone();
        for id in generation_eos(dir)? {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
        if eos.is_empty() {
            if let Ok(id) = processor.tokenizer.eos_id() {
                eos.push(id);
            }
        }
        Ok((
            Self {
                model,
                processor,
                eos,
                limits: DecodeLimits::default(),
            },
            report,
        ))
    }

    fn decode_image(&self, input: &ImageInput) -> Result<RgbImage> {
        Ok(match input {
            ImageInput::Path(p) => decode_file(p, &self.limits)?,
            ImageInput::Bytes { bytes, what } => decode_bytes(bytes, what, &self.limits)?,
            ImageInput::Decoded(img) => {
                self.limits
                    .check("image", img.width as u64, img.height as u64)?;
                img.clone()
            }
        })
    }

    fn decode_video(&self, input: &VideoInput) -> Result<Vec<RgbImage>> {
        Ok(match input {
            VideoInput::Path { path, frames } => {
                load_video(VideoSource::Path(path), *frames, &self.limits)?.frames
            }
            VideoInput::Bytes {
                bytes,
                what,
                frames,
            } => load_video(VideoSource::Bytes { bytes, what }, *frames, &self.limits)?.frames,
            VideoInput::Decoded(frames) => frames.clone(),
        })
    }

    /// Decodes the media and runs the processor.
    pub fn prepare(&self, request: &Request) -> Result<ProcessedPrompt> {
        let images = request
            .images
            .iter()
            .map(|i| self.decode_image(i))
            .collect::<Result<Vec<_>>>()?;
        let videos = request
            .videos
            .iter()
            .map(|v| self.decode_video(v))
            .collect::<Result<Vec<_>>>()?;
        Ok(self
            .processor
            .process(&request.messages, &images, &videos, true)?)
    }

    fn tensor(&self, p: &Pixels) -> Result<Tensor> {
        Ok(Tensor::from_slice(&p.data, &p.shape, self.model.device())?)
    }

    /// The model input of a processed prompt.
    pub fn model_input(&self, prompt: &ProcessedPrompt) -> Result<MultimodalInput> {
        let mut media = Vec::with_capacity(prompt.images.len() + prompt.videos.len());
        for img in &prompt.images {
            media.push(Media::Image {
                pixels: self.tensor(&img.pixels)?,
                size: img.size,
                layout: img.layout,
            });
        }
        for vid in &prompt.videos {
            media.push(Media::Video {
                frames: self.tensor(&vid.pixels)?,
            });
        }
        Ok(MultimodalInput {
            input_ids: prompt.input_ids.clone(),
            media,
        })
    }

    /// Runs one request greedily (the engine's loop with temperature 0, see
    /// [`crate::generate::run_request`]). `on_text` receives the answer as it is generated, in
    /// pieces that are always whole UTF-8 characters.
    pub fn generate(
        &self,
        request: &Request,
        options: GenerateOptions,
        mut on_text: impl FnMut(&str),
    ) -> Result<GenerateOutput> {
        let stop = StopRules {
            max_new_tokens: options.max_new_tokens,
            ignore_eos: options.ignore_eos,
            ..StopRules::default()
        };
        let mut result = None;
        run_with(
            self,
            request,
            &SamplingParams::default(),
            &stop,
            None,
            &mut |event| {
                match event {
                    Event::Started { .. } => {}
                    Event::Delta { text, .. } => {
                        if !text.is_empty() {
                            on_text(&text);
                        }
                    }
                    Event::Done {
                        finish,
                        usage,
                        timings,
                        token_ids,
                        text,
                    } => {
                        result = Some(Ok(GenerateOutput {
                            text,
                            token_ids,
                            prompt_tokens: usage.prompt_tokens,
                            image_tokens: usage.media_tokens,
                            finish_reason: finish.as_str(),
                            timings,
                        }))
                    }
                    Event::Failed(e) => result = Some(Err(e)),
                }
                true
            },
        );
        result.unwrap_or_else(|| {
            Err(Error::Tensor(candle_core::Error::Msg(
                "internal error: the generation loop ended without a result".into(),
            )))
        })
    }
}
