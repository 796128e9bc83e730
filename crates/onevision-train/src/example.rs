//! One training sample made ready for the model: its media decoded and preprocessed by the
//! inference processor, its conversation rendered and labelled as LLaVA-NeXT does, each media
//! marker expanded to the placeholder count the model's packing yields.
//!
//! Which image path a sample takes (LLaVA-NeXT `process_images` and the OneVision recipe):
//! one image -> the stage's strategy (stage 1 the base tile alone, later stages AnyRes);
//! several images -> the pad path (one square-padded tile + newline each); a video -> frames
//! at `video_fps` capped at `frames_upbound`, 196 tokens each + one newline.

use candle_core::{Device, Tensor};
use onevision_models::llava_ov::packing::ImageLayout;
use onevision_models::Media;
use onevision_processor::video::{load_video_frames, FrameSelection, VideoSource};
use onevision_processor::{decode_file, DecodeLimits, Pixels, Processor, RgbImage};

use crate::data::{MediaRef, Sample};
use crate::labels::{self, LabelMask, MediaSlot, Template, IGNORE_INDEX};
use crate::{Error, Result};

/// How a single image is tiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageStrategy {
    /// The image squashed to one 384-px tile, 729 tokens, no newline (stage 1).
    Base,
    /// The AnyRes grid + base tile, packed by the model config's `vision_aspect_ratio`
    /// (the trainer sets it: anyres_max_4 for stage 1.5, anyres_max_9 for stage 2).
    AnyRes,
}

/// Everything that turns a sample into model input.
#[derive(Debug, Clone)]
pub struct PrepSettings {
    pub template: Template,
    pub mask: LabelMask,
    pub max_length: usize,
    pub image_strategy: ImageStrategy,
    pub video_fps: f64,
    pub frames_upbound: usize,
    pub limits: DecodeLimits,
}

/// A sample ready for the model. `input_ids` / `labels` are the whole expanded sequence;
/// the model sees its first `len` positions (LLaVA-NeXT truncates the spliced embeddings to
/// `tokenizer_model_max_length`, media rows included).
#[derive(Debug, Clone)]
pub struct Example {
    pub id: String,
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
    pub len: usize,
    pub media: Vec<Media>,
    /// Frames sampled per video (for the dump and the logs).
    pub frame_indices: Vec<Vec<usize>>,
}

impl Example {
    /// Whether truncation cut this sample.
    pub fn truncated(&self) -> bool {
        self.len < self.input_ids.len()
    }

    /// Tokens the model sees.
    pub fn tokens(&self) -> usize {
        self.len
    }

    /// Positions whose next token is supervised, within the kept part.
    pub fn supervised(&self) -> usize {
        self.labels[1..self.len]
            .iter()
            .filter(|&&l| l != IGNORE_INDEX)
            .count()
    }
}

/// Why a sample cannot be used.
#[derive(Debug)]
pub enum Unusable {
    /// Its media alone exceed `--max-length`.
    MediaTooLong {
        media_tokens: usize,
        max_length: usize,
    },
    /// Nothing to learn from once truncated (no supervised token is left).
    NoSupervisedTokens,
    /// A medium could not be decoded, or the conversation could not be labelled.
    Failed(Error),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MediaTooLong {
                media_tokens,
                max_length,
            } => write!(
                f,
                "its media take {media_tokens} tokens, more than --max-length {max_length}; \
                 raise --max-length or use fewer frames (--frames-upbound)"
            ),
            Self::NoSupervisedTokens => write!(
                f,
                "no supervised token is left after truncation to --max-length; raise it"
            ),
            Self::Failed(e) => write!(f, "{e}"),
        }
    }
}

fn pixels_tensor(p: &Pixels, device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_slice(&p.data, &p.shape, device)?)
}

/// The media of a sample, preprocessed: (model media, placeholder slots, frame indices).
fn prepare_media(
    sample: &Sample,
    proc: &Processor,
    s: &PrepSettings,
    device: &Device,
) -> Result<(Vec<Media>, Vec<MediaSlot>, Vec<Vec<usize>>)> {
    let cfg = &proc.model;
    let mut media = vec![];
    let mut slots = vec![];
    let mut frames = vec![];
    match &sample.media {
        MediaRef::Text => {}
        MediaRef::Images(paths) => {
            let layout = match (paths.len(), s.image_strategy) {
                (1, ImageStrategy::Base) => ImageLayout::Base,
                (1, ImageStrategy::AnyRes) => ImageLayout::AnyRes,
                _ => ImageLayout::Single,
            };
            for path in paths {
                let img: RgbImage = decode_file(path, &s.limits)?;
                let p = proc.image(&img, layout);
                slots.push(MediaSlot {
                    token_id: cfg.image_token_id,
                    count: p.tokens,
                });
                media.push(Media::Image {
                    pixels: pixels_tensor(&p.pixels, device)?,
                    size: p.size,
                    layout,
                });
            }
        }
        MediaRef::Video(path) => {
            let video = load_video_frames(
                VideoSource::Path(path),
                FrameSelection::Fps {
                    fps: s.video_fps,
                    upbound: s.frames_upbound,
                },
                &s.limits,
            )?;
            let p = proc.video(&video.frames)?;
            slots.push(MediaSlot {
                token_id: cfg.video_token_id,
                count: p.tokens,
            });
            media.push(Media::Video {
                frames: pixels_tensor(&p.pixels, device)?,
            });
            frames.push(video.indices);
        }
    }
    Ok((media, slots, frames))
}

/// Makes one sample ready for the model.
pub fn prepare(
    sample: &Sample,
    proc: &Processor,
    s: &PrepSettings,
    device: &Device,
) -> std::result::Result<Example, Unusable> {
    let (media, slots, frame_indices) =
        prepare_media(sample, proc, s, device).map_err(Unusable::Failed)?;
    let media_tokens: usize = slots.iter().map(|m| m.count).sum();
    if media_tokens > s.max_length {
        return Err(Unusable::MediaTooLong {
            media_tokens,
            max_length: s.max_length,
        });
    }
    let encoded = labels::encode(&proc.tokenizer, &sample.turns, s.template, s.mask)
        .map_err(Unusable::Failed)?;
    let full =
        labels::expand(&encoded, &slots, usize::MAX).map_err(|e| Unusable::Failed(e.into()))?;
    let len = full.input_ids.len().min(s.max_length);
    let ex = Example {
        id: sample.id.clone(),
        input_ids: full.input_ids,
        labels: full.labels,
        len,
        media,
        frame_indices,
    };
    if len < 2 || ex.supervised() == 0 {
        return Err(Unusable::NoSupervisedTokens);
    }
    Ok(ex)
}
