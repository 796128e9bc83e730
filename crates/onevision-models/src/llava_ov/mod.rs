//! LLaVA-OneVision: vision tower -> projector -> feature packing -> spliced into the Qwen2
//! token embeddings (transformers `LlavaOnevisionForConditionalGeneration`).

pub mod packing;
pub mod weights;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use onevision_nn::{ComputeDType, KvCache, WeightFiles, Weights};

pub use packing::ImageLayout;

use crate::config::LlavaOnevisionConfig;
use crate::projector::Projector;
use crate::qwen2::Qwen2;
use crate::siglip::SiglipVision;
use crate::{Error, Result};

/// Tiles or frames the vision tower encodes at once.
const VISION_BATCH: usize = 8;

/// One image or video of a prompt, already preprocessed into normalized tiles or frames.
#[derive(Debug, Clone)]
pub enum Media {
    Image {
        /// (p, 3, s, s): base tile then the grid row-major (AnyRes), or one padded tile.
        pixels: Tensor,
        /// Original (height, width) in pixels.
        size: (usize, usize),
        layout: ImageLayout,
    },
    Video {
        /// (T, 3, s, s)
        frames: Tensor,
    },
}

/// A prompt whose placeholders are already expanded: each image or video owns as many
/// placeholder ids as it yields feature rows, in order.
#[derive(Debug, Clone)]
pub struct MultimodalInput {
    pub input_ids: Vec<u32>,
    pub media: Vec<Media>,
}

/// What loading found besides the model.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub files: Vec<PathBuf>,
    /// Stored tensors the model did not use (e.g. SigLIP's `post_layernorm` and `head`, layers
    /// after the feature layer, a stored `lm_head` when embeddings are tied).
    pub unused: Vec<String>,
}

/// The whole model.
#[derive(Debug, Clone)]
pub struct LlavaOnevision {
    cfg: LlavaOnevisionConfig,
    vision: SiglipVision,
    projector: Projector,
    image_newline: Tensor, // (H,)
    lm: Qwen2,
    dtype: DType,
    device: Device,
}

impl LlavaOnevision {
    /// Loads `config.json` and the safetensors weights of a checkpoint directory.
    pub fn load(dir: &Path, dtype: ComputeDType, device: &Device) -> Result<(Self, LoadReport)> {
        let cfg = LlavaOnevisionConfig::from_file(&dir.join("config.json"))?;
        let files = Arc::new(WeightFiles::open_dir(dir, weights::RENAMES)?);
        let model = Self::new(&cfg, &files.weights(dtype.dtype(), device))?;
        let report = LoadReport {
            files: files.files().to_vec(),
            unused: files.unused(),
        };
        Ok((model, report))
    }

    /// Builds the model from canonically named weights (see [`weights::RENAMES`]).
    pub fn new(cfg: &LlavaOnevisionConfig, w: &Weights) -> Result<Self> {
        let h = cfg.text.hidden_size;
        let vision = SiglipVision::new(&cfg.vision, cfg.vision_layers_used(), &w.pp("vision"))?;
        let projector = Projector::new(
            cfg.vision.hidden_size,
            h,
            cfg.projector_act,
            cfg.projector_bias,
            &w.pp("projector"),
        )?;
        let image_newline = w.get(h, "image_newline")?;
        let lm = Qwen2::new(
            &cfg.text,
            cfg.tie_word_embeddings,
            &w.pp("text"),
            &w.pp("lm_head"),
        )?;
        Ok(Self {
            cfg: cfg.clone(),
            vision,
            projector,
            image_newline,
            lm,
            dtype: w.dtype(),
            device: w.device().clone(),
        })
    }

    pub fn config(&self) -> &LlavaOnevisionConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Weight-only quantized decoding: see [`Qwen2::quantize_decode`] (returns quantized and
    /// skipped matrix counts). The vision tower, the projector and the prefill keep the loaded
    /// dtype.
    pub fn quantize_decode(&mut self, q: onevision_nn::Quantization) -> Result<(usize, usize)> {
        self.lm.quantize_decode(q)
    }

    pub fn new_cache(&self) -> KvCache {
        self.lm.new_cache()
    }

    /// The selected vision hidden states (before `post_layernorm`). Pixels are cast to the
    /// compute dtype first, as transformers casts them to the tower's dtype.
    ///
    /// # Shapes
    /// `pixels`: (p, 3, s, s) -> (p, g·g, dv)
    pub fn vision_features(&self, pixels: &Tensor) -> Result<Tensor> {
        let pixels = pixels.to_device(&self.device)?.to_dtype(self.dtype)?;
        let p = pixels.dim(0)?;
        if p <= VISION_BATCH {
            return self.vision.forward(&pixels);
        }
        // Tiles are independent: encoding them a few at a time gives the same rows and bounds
        // the activations (32 video frames at once peaked at 9 GB on the 0.5B shapes).
        let mut parts = Vec::with_capacity(p.div_ceil(VISION_BATCH));
        for start in (0..p).step_by(VISION_BATCH) {
            let n = VISION_BATCH.min(p - start);
            parts.push(self.vision.forward(&pixels.narrow(0, start, n)?)?);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// # Shapes
    /// `features`: (..., dv) -> (..., H)
    pub fn project(&self, features: &Tensor) -> Result<Tensor> {
        self.projector.forward(features)
    }

    /// The feature rows one medium contributes.
    ///
    /// # Shapes
    /// returns (n, H), n = the medium's placeholder count
    pub fn encode_media(&self, media: &Media) -> Result<Tensor> {
        let pixels = match media {
            Media::Image { pixels, .. } => pixels,
            Media::Video { frames } => frames,
        };
        self.pack_media(media, &self.project(&self.vision_features(pixels)?)?)
    }

    /// Packs a medium's projected tiles or frames into its feature rows (AnyRes unpad, shrink
    /// and newlines; video pooling).
    ///
    /// # Shapes
    /// `projected`: (p, g·g, H) -> (n, H), n = the medium's placeholder count
    pub fn pack_media(&self, media: &Media, projected: &Tensor) -> Result<Tensor> {
        match media {
            Media::Image { size, layout, .. } => {
                packing::pack_image(projected, *size, *layout, &self.image_newline, &self.cfg)
            }
            Media::Video { .. } => packing::pack_video(projected, &self.image_newline, &self.cfg),
        }
    }

    /// Token embeddings with every placeholder replaced by its medium's feature rows: image
    /// rows fill the image-id positions in order, video rows the video-id positions
    /// (transformers `masked_scatter`).
    ///
    /// # Shapes
    /// returns (t, H)
    pub fn embed(&self, input: &MultimodalInput) -> Result<Tensor> {
        let rows = input
            .media
            .iter()
            .map(|m| self.encode_media(m))
            .collect::<Result<Vec<_>>>()?;
        self.splice(&input.input_ids, &input.media, rows)
    }

    /// [`Self::embed`] from each medium's packed rows (`rows[i]` belongs to `media[i]`), for a
    /// trainer that computes the features itself.
    ///
    /// # Shapes
    /// `rows[i]`: (n_i, H) -> (t, H)
    pub fn splice(&self, ids: &[u32], media: &[Media], rows: Vec<Tensor>) -> Result<Tensor> {
        if ids.is_empty() {
            return Err(Error::Input("the prompt has no tokens".into()));
        }
        let text = self.lm.embed(ids)?;
        let (mut images, mut videos) = (vec![], vec![]);
        for (m, r) in media.iter().zip(rows) {
            match m {
                Media::Image { .. } => images.push(r),
                Media::Video { .. } => videos.push(r),
            }
        }
        let cat = |v: Vec<Tensor>| -> Result<Option<Tensor>> {
            Ok(if v.is_empty() {
                None
            } else {
                Some(Tensor::cat(&v, 0)?.to_dtype(self.dtype)?)
            })
        };
        let (images, videos) = (cat(images)?, cat(videos)?);
        let (img_id, vid_id) = (self.cfg.image_token_id, self.cfg.video_token_id);
        for (what, id, feats) in [("images", img_id, &images), ("videos", vid_id, &videos)] {
            let tokens = ids.iter().filter(|&&t| t == id).count();
            let features = feats.as_ref().map_or(Ok(0), |f| f.dim(0))?;
            if tokens != features {
                return Err(Error::PlaceholderMismatch {
                    what,
                    token_id: id,
                    tokens,
                    features,
                });
            }
        }
        if images.is_none() && videos.is_none() {
            return Ok(text);
        }
        // Splice run by run: text rows from the embeddings, placeholder rows from the features.
        let mut parts = vec![];
        let (mut next_img, mut next_vid) = (0, 0);
        let mut start = 0;
        while start < ids.len() {
            let kind = ids[start];
            let mut end = start + 1;
            let same =
                |t: u32| (t == img_id) == (kind == img_id) && (t == vid_id) == (kind == vid_id);
            while end < ids.len() && same(ids[end]) {
                end += 1;
            }
            let n = end - start;
            let part = if kind == img_id {
                next_img += n;
                images
                    .as_ref()
                    .expect("counted above")
                    .narrow(0, next_img - n, n)?
            } else if kind == vid_id {
                next_vid += n;
                videos
                    .as_ref()
                    .expect("counted above")
                    .narrow(0, next_vid - n, n)?
            } else {
                text.narrow(0, start, n)?
            };
            parts.push(part);
            start = end;
        }
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// The vision tower, for a trainer that runs its layers one at a time.
    pub fn vision(&self) -> &SiglipVision {
        &self.vision
    }

    /// The language model, for a trainer that runs its layers one at a time.
    pub fn lm(&self) -> &Qwen2 {
        &self.lm
    }

    /// Runs the decoder over the prompt and returns the final hidden states.
    ///
    /// # Shapes
    /// returns (1, t, H)
    pub fn forward(&self, input: &MultimodalInput, cache: &mut KvCache) -> Result<Tensor> {
        self.forward_embeds(&self.embed(input)?, cache)
    }

    /// Runs the decoder over embeddings from [`Self::embed`] (so callers can time the vision
    /// encoder and the prefill apart).
    ///
    /// # Shapes
    /// `embeds`: (t, H) -> (1, t, H)
    pub fn forward_embeds(&self, embeds: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        self.lm.forward_embeds(&embeds.unsqueeze(0)?, cache)
    }

    /// Runs the decoder over more text tokens after the cached positions.
    ///
    /// # Shapes
    /// returns (1, t, H)
    pub fn forward_tokens(&self, ids: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let x = self.lm.embed(ids)?.unsqueeze(0)?;
        self.lm.forward_embeds(&x, cache)
    }

    /// One decode step for several sequences: `ids[i]` follows the positions in `caches[i]`
    /// (see [`crate::qwen2::Qwen2::forward_decode_batch`]: each weight read once for the step;
    /// each row equal to that sequence's own [`Self::forward_tokens`] for fewer than
    /// [`onevision_nn::gemm_nt::MIN_ROWS_PACKED`] rows).
    ///
    /// # Shapes
    /// returns (n, 1, H)
    pub fn forward_decode_batch(&self, ids: &[u32], caches: &mut [&mut KvCache]) -> Result<Tensor> {
        self.lm.forward_decode_batch(ids, caches)
    }

    /// # Shapes
    /// `hidden`: (..., H) -> (..., V)
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm.logits(hidden)
    }
}
