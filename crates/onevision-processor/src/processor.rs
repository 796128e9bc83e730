//! The whole processor: a conversation with its decoded images and videos in, token ids with
//! expanded placeholders and normalized pixels out (transformers `LlavaOnevisionProcessor`
//! with the PIL image backend, plus the original code's multi-image rule).

use std::path::Path;

use onevision_models::config::AspectRatio;
use onevision_models::llava_ov::packing::{image_token_count, video_token_count, ImageLayout};
use onevision_models::LlavaOnevisionConfig;

use crate::config::ProcessorConfigs;
use crate::image::RgbImage;
use crate::pixels::{anyres_tiles, frame_tile, normalize, square_tile, Pixels};
use crate::prompt::{expand_placeholders, ChatTemplate, Message, Part, TextTokenizer};
use crate::{Error, Result};

/// Placeholder tokens a single image of `height × width` pixels becomes (AnyRes): transformers'
/// `LlavaOnevisionProcessor._get_number_of_features`. Pure size arithmetic, no pixels needed.
pub fn num_image_tokens(height: usize, width: usize, cfg: &LlavaOnevisionConfig) -> usize {
    image_token_count((height, width), ImageLayout::AnyRes, cfg)
}

/// Placeholder tokens a video of `frames` frames becomes (pooled tokens per frame + 1 newline).
pub fn num_video_tokens(frames: usize, cfg: &LlavaOnevisionConfig) -> usize {
    video_token_count(frames, cfg)
}

/// One image ready for the model.
#[derive(Debug, Clone)]
pub struct ProcessedImage {
    /// (1 + tiles, 3, s, s) for AnyRes, (1, 3, s, s) for a square-padded image.
    pub pixels: Pixels,
    /// Original (height, width).
    pub size: (usize, usize),
    pub layout: ImageLayout,
    /// Placeholder tokens it owns in `input_ids`.
    pub tokens: usize,
}

/// One video ready for the model.
#[derive(Debug, Clone)]
pub struct ProcessedVideo {
    /// (frames, 3, s, s)
    pub pixels: Pixels,
    pub tokens: usize,
}

/// A prompt ready for the model: ids with every placeholder expanded, media in prompt order.
#[derive(Debug, Clone)]
pub struct ProcessedPrompt {
    pub input_ids: Vec<u32>,
    pub images: Vec<ProcessedImage>,
    pub videos: Vec<ProcessedVideo>,
    /// The rendered chat template (before expansion), for debugging and `--verbose` output.
    pub text: String,
}

impl ProcessedPrompt {
    /// Placeholder tokens of all media.
    pub fn media_tokens(&self) -> usize {
        self.images.iter().map(|i| i.tokens).sum::<usize>()
            + self.videos.iter().map(|v| v.tokens).sum::<usize>()
    }
}

/// Everything needed to turn a conversation into model input for one checkpoint.
#[derive(Debug)]
pub struct Processor {
    pub configs: ProcessorConfigs,
    pub model: LlavaOnevisionConfig,
    pub template: ChatTemplate,
    pub tokenizer: TextTokenizer,
}

impl Processor {
    /// Loads the processor files of a checkpoint directory and checks them against the model
    /// config they must agree with (placeholder ids, tile size, AnyRes pinpoints).
    pub fn from_dir(dir: &Path, model: &LlavaOnevisionConfig) -> Result<Self> {
        let configs = ProcessorConfigs::from_dir(dir)?;
        let template = ChatTemplate::from_dir(dir)?;
        let tokenizer = TextTokenizer::from_dir(dir)?;
        let this = Self {
            configs,
            model: model.clone(),
            template,
            tokenizer,
        };
        this.check(dir)?;
        Ok(this)
    }

    fn check(&self, dir: &Path) -> Result<()> {
        let err = |reason: String| Error::Config {
            what: dir.display().to_string(),
            reason,
        };
        for (tok, id) in [
            ("<image>", self.model.image_token_id),
            ("<video>", self.model.video_token_id),
        ] {
            match self.tokenizer.token_id(tok) {
                Some(t) if t == id => {}
                Some(t) => {
                    return Err(err(format!(
                        "the tokenizer maps {tok} to {t} but config.json expects {id}"
                    )))
                }
                None => {
                    return Err(err(format!(
                        "the tokenizer has no {tok} token (config.json expects id {id})"
                    )))
                }
            }
        }
        let side = self.model.vision.image_size;
        for (what, c) in [
            ("image", &self.configs.image),
            ("video", &self.configs.video),
        ] {
            if c.size != (side, side) {
                return Err(err(format!(
                    "the {what} processor resizes to {:?} but the vision tower takes {side}x{side}",
                    c.size
                )));
            }
        }
        if self.configs.image.grid_pinpoints != self.model.grid_pinpoints {
            return Err(err(
                "the image processor's image_grid_pinpoints differ from config.json's; \
                 the token counts would not match the model's features"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The layout of each image: square-padded when its message carries several images (as
    /// the original LLaVA-NeXT and lmms-eval do), AnyRes otherwise.
    pub fn image_layouts(&self, messages: &[Message]) -> Vec<ImageLayout> {
        let mut out = vec![];
        for m in messages {
            let n = m.parts.iter().filter(|p| matches!(p, Part::Image)).count();
            let layout = if n > 1 || self.model.aspect_ratio == AspectRatio::Pad {
                ImageLayout::Single
            } else {
                ImageLayout::AnyRes
            };
            out.extend(std::iter::repeat_n(layout, n));
        }
        out
    }

    /// Preprocesses one image in the given layout.
    pub fn image(&self, image: &RgbImage, layout: ImageLayout) -> ProcessedImage {
        let cfg = &self.configs.image;
        let tiles = match layout {
            ImageLayout::AnyRes => anyres_tiles(image, cfg),
            ImageLayout::Single => vec![square_tile(image, cfg)],
            ImageLayout::Base => vec![frame_tile(image, cfg)],
        };
        ProcessedImage {
            pixels: normalize(&tiles, &cfg.normalize),
            size: image.size_hw(),
            layout,
            tokens: image_token_count(image.size_hw(), layout, &self.model),
        }
    }

    /// Preprocesses the (already sampled) frames of one video.
    pub fn video(&self, frames: &[RgbImage]) -> Result<ProcessedVideo> {
        if frames.is_empty() {
            return Err(Error::Prompt("a video needs at least one frame".into()));
        }
        let cfg = &self.configs.video;
        let tiles: Vec<RgbImage> = frames.iter().map(|f| frame_tile(f, cfg)).collect();
        Ok(ProcessedVideo {
            pixels: normalize(&tiles, &cfg.normalize),
            tokens: video_token_count(frames.len(), &self.model),
        })
    }

    /// Renders, tokenizes and expands a conversation. `images` and `videos` are matched, in
    /// order, to the `Part::Image` and `Part::Video` entries of the messages.
    pub fn process(
        &self,
        messages: &[Message],
        images: &[RgbImage],
        videos: &[Vec<RgbImage>],
        add_generation_prompt: bool,
    ) -> Result<ProcessedPrompt> {
        let count = |want: fn(&Part) -> bool| -> usize {
            messages
                .iter()
                .flat_map(|m| &m.parts)
                .filter(|p| want(p))
                .count()
        };
        let (n_img, n_vid) = (
            count(|p| matches!(p, Part::Image)),
            count(|p| matches!(p, Part::Video)),
        );
        if n_img != images.len() || n_vid != videos.len() {
            return Err(Error::Prompt(format!(
                "the messages have {n_img} image and {n_vid} video slots but {} images and {} videos were given",
                images.len(),
                videos.len()
            )));
        }
        let layouts = self.image_layouts(messages);
        let images: Vec<ProcessedImage> = images
            .iter()
            .zip(layouts)
            .map(|(img, layout)| self.image(img, layout))
            .collect();
        let videos = videos
            .iter()
            .map(|f| self.video(f))
            .collect::<Result<Vec<_>>>()?;
        let text = self.template.render(messages, add_generation_prompt)?;
        let ids = self.tokenizer.encode(&text)?;
        let image_counts: Vec<usize> = images.iter().map(|i| i.tokens).collect();
        let video_counts: Vec<usize> = videos.iter().map(|v| v.tokens).collect();
        let input_ids = expand_placeholders(
            &ids,
            self.model.image_token_id,
            &image_counts,
            self.model.video_token_id,
            &video_counts,
        )?;
        Ok(ProcessedPrompt {
            input_ids,
            images,
            videos,
            text,
        })
    }
}
