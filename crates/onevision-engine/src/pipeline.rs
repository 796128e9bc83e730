//! One request end to end: decode the media, run the processor, encode the media, prefill,
//! decode greedily, detokenize as tokens arrive, and time each stage.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use onevision_models::generate::{greedy_from_embeds, FinishReason};
use onevision_models::llava_ov::{LoadReport, Media, MultimodalInput};
use onevision_models::LlavaOnevision;
use onevision_nn::dtype::ComputeDType;
use onevision_processor::video::{load_video, VideoSource};
use onevision_processor::{
    decode_bytes, decode_file, DecodeLimits, Message, Pixels, ProcessedPrompt, Processor, RgbImage,
};
use serde::Serialize;

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

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
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

    /// Runs one request greedily. `on_text` receives the answer as it is generated, in pieces
    /// that are always whole UTF-8 characters.
    pub fn generate(
        &self,
        request: &Request,
        options: GenerateOptions,
        mut on_text: impl FnMut(&str),
    ) -> Result<GenerateOutput> {
        let start = Instant::now();
        let prompt = self.prepare(request)?;
        let input = self.model_input(&prompt)?;
        let preprocess_ms = ms(start);
        let max_positions = self.model.config().text.max_position_embeddings;
        if prompt.input_ids.len() + options.max_new_tokens > max_positions {
            return Err(Error::Request(format!(
                "the prompt has {} tokens and {} new tokens were asked for, over the model's \
                 context of {max_positions} tokens; lower --max-new-tokens or use fewer frames/images",
                prompt.input_ids.len(),
                options.max_new_tokens
            )));
        }

        let t_encode = Instant::now();
        let embeds = self.model.embed(&input)?;
        let encode_ms = if input.media.is_empty() {
            0.0
        } else {
            ms(t_encode)
        };

        let t_prefill = Instant::now();
        let mut first_token_at: Option<Instant> = None;
        let mut detok = Detokenizer::default();
        let eos: &[u32] = if options.ignore_eos { &[] } else { &self.eos };
        let mut failure = None;
        let generated =
            greedy_from_embeds(&self.model, &embeds, options.max_new_tokens, eos, |token| {
                first_token_at.get_or_insert_with(Instant::now);
                if self.eos.contains(&token) && !options.ignore_eos {
                    return;
                }
                match detok.push(&self.processor.tokenizer, token) {
                    Ok(piece) if !piece.is_empty() => on_text(&piece),
                    Ok(_) => {}
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            })?;
        if let Some(e) = failure {
            return Err(e);
        }
        // Whatever was held back waiting for the rest of a character (a generation that ends
        // inside one) is released as decoded, replacement characters included.
        let rest = detok.finish(&self.processor.tokenizer)?;
        if !rest.is_empty() {
            on_text(&rest);
        }
        let end = Instant::now();
        let prefill_ms = first_token_at.map_or(0.0, |t| (t - t_prefill).as_secs_f64() * 1e3);
        let ttft_ms = first_token_at.map_or(0.0, |t| (t - start).as_secs_f64() * 1e3);
        let n = generated.tokens.len();
        let decode_tokens_per_s = match first_token_at {
            Some(t) if n > 1 => (n - 1) as f64 / (end - t).as_secs_f64(),
            _ => 0.0,
        };
        let text_ids: Vec<u32> = generated
            .tokens
            .iter()
            .copied()
            .filter(|t| options.ignore_eos || !self.eos.contains(t))
            .collect();
        let text = self.processor.tokenizer.decode(&text_ids, true)?;
        Ok(GenerateOutput {
            text,
            token_ids: generated.tokens,
            prompt_tokens: prompt.input_ids.len(),
            image_tokens: prompt.media_tokens(),
            finish_reason: match generated.finish {
                FinishReason::Eos => "stop",
                FinishReason::Length => "length",
            },
            timings: Timings {
                preprocess_ms,
                encode_ms,
                prefill_ms,
                ttft_ms,
                decode_tokens_per_s,
                total_ms: ms(start),
            },
        })
    }
}

/// Turns a growing token sequence into text pieces that never split a UTF-8 character:
/// the whole sequence is decoded each time and only a suffix that does not end in an
/// incomplete character (U+FFFD) is released.
#[derive(Default)]
struct Detokenizer {
    ids: Vec<u32>,
    emitted: usize,
}

impl Detokenizer {
    fn push(&mut self, tokenizer: &onevision_processor::TextTokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = tokenizer.decode(&self.ids, true)?;
        if text.ends_with('\u{FFFD}')
            || text.len() < self.emitted
            || !text.is_char_boundary(self.emitted)
        {
            return Ok(String::new());
        }
        let piece = text[self.emitted..].to_string();
        self.emitted = text.len();
        Ok(piece)
    }

    /// The text not released yet.
    fn finish(&mut self, tokenizer: &onevision_processor::TextTokenizer) -> Result<String> {
        let text = tokenizer.decode(&self.ids, true)?;
        let rest = text.get(self.emitted..).unwrap_or_default().to_string();
        self.emitted = text.len();
        Ok(rest)
    }
}
