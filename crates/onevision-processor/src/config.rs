//! The image and video processor settings of a checkpoint, read from either layout:
//! transformers 5 (`processor_config.json` holding `image_processor` and `video_processor`) or
//! the Hub's older one (`preprocessor_config.json`, `video_preprocessor_config.json`).
//! Keys and defaults follow `LlavaOnevisionImageProcessorPil` / `LlavaOnevisionVideoProcessor`.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::{Error, Result};

/// How uint8 samples become model inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Normalize {
    /// The PIL backend: `f32(x · rescale_f64)`, then `(x − mean) / std` in f32 (either step
    /// may be switched off by the config).
    Separate {
        rescale: Option<f64>,
        mean_std: Option<([f32; 3], [f32; 3])>,
    },
    /// The torchvision backend (the video processor): rescale folded into the statistics,
    /// `(x − mean/r) / (std/r)` in f32.
    Fused { mean: [f32; 3], std: [f32; 3] },
}

impl Normalize {
    /// The 256 values one channel's uint8 samples map to.
    pub fn table(&self, channel: usize) -> [f32; 256] {
        let mut t = [0f32; 256];
        for (v, out) in t.iter_mut().enumerate() {
            *out = match *self {
                Normalize::Separate { rescale, mean_std } => {
                    let x = match rescale {
                        Some(r) => (v as f64 * r) as f32,
                        None => v as f32,
                    };
                    match mean_std {
                        Some((m, s)) => (x - m[channel]) / s[channel],
                        None => x,
                    }
                }
                Normalize::Fused { mean, std } => (v as f32 - mean[channel]) / std[channel],
            };
        }
        t
    }
}

/// One processor's settings (image or video).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessorConfig {
    /// Output side of a tile or frame, (height, width).
    pub size: (usize, usize),
    pub normalize: Normalize,
    /// AnyRes candidate resolutions (height, width); empty for the video processor.
    pub grid_pinpoints: Vec<(usize, usize)>,
    /// Square-pad fill for multi-image prompts: `int(mean · 255)` per channel.
    pub pad_fill: [u8; 3],
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    size: Option<Value>,
    #[serde(default)]
    resample: Option<i64>,
    #[serde(default)]
    do_resize: Option<bool>,
    #[serde(default)]
    do_rescale: Option<bool>,
    #[serde(default)]
    rescale_factor: Option<f64>,
    #[serde(default)]
    do_normalize: Option<bool>,
    #[serde(default)]
    image_mean: Option<Value>,
    #[serde(default)]
    image_std: Option<Value>,
    #[serde(default)]
    do_center_crop: Option<bool>,
    #[serde(default)]
    image_grid_pinpoints: Option<Vec<(usize, usize)>>,
}

/// transformers' class defaults (OPENAI_CLIP statistics): the Hub files override them.
const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

fn three(v: &Option<Value>, default: [f32; 3], key: &str, what: &str) -> Result<[f32; 3]> {
    let bad = || Error::Config {
        what: what.to_string(),
        reason: format!("`{key}` must be a number or a list of 3 numbers, got {v:?}"),
    };
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => Ok([n.as_f64().ok_or_else(bad)? as f32; 3]),
        Some(Value::Array(a)) if a.len() == 3 => {
            let mut out = [0f32; 3];
            for (o, x) in out.iter_mut().zip(a) {
                *o = x.as_f64().ok_or_else(bad)? as f32;
            }
            Ok(out)
        }
        _ => Err(bad()),
    }
}

impl ProcessorConfig {
    /// Parses one processor's JSON object. `video` selects the video processor's arithmetic.
    pub fn from_json(json: &Value, what: &str, video: bool) -> Result<Self> {
        let err = |reason: String| Error::Config {
            what: what.to_string(),
            reason,
        };
        let raw: Raw = serde_json::from_value(json.clone()).map_err(|e| err(e.to_string()))?;
        let size = match &raw.size {
            None | Some(Value::Null) => (384, 384),
            Some(v) => {
                let get = |k: &str| v.get(k).and_then(Value::as_u64).map(|x| x as usize);
                match (get("height"), get("width"), get("shortest_edge")) {
                    (Some(h), Some(w), _) => (h, w),
                    (_, _, Some(s)) => (s, s),
                    _ => {
                        return Err(err(format!(
                            "`size` must be {{\"height\": H, \"width\": W}} or {{\"shortest_edge\": S}}, got {v}"
                        )))
                    }
                }
            }
        };
        if size.0 == 0 || size.1 == 0 {
            return Err(err(format!("`size` must be positive, got {size:?}")));
        }
        if let Some(r) = raw.resample {
            if r != 3 {
                return Err(err(format!(
                    "`resample` {r} is not supported; LLaVA-OneVision uses 3 (bicubic)"
                )));
            }
        }
        if raw.do_resize == Some(false) {
            return Err(err(
                "`do_resize: false` is not supported; tiles and frames must be resized to the vision tower's size".into(),
            ));
        }
        if raw.do_center_crop == Some(true) {
            return Err(err(
                "`do_center_crop: true` is not supported by LLaVA-OneVision".into(),
            ));
        }
        let mean = three(&raw.image_mean, CLIP_MEAN, "image_mean", what)?;
        let std = three(&raw.image_std, CLIP_STD, "image_std", what)?;
        if std.contains(&0.0) {
            return Err(err(format!("`image_std` must be non-zero, got {std:?}")));
        }
        let rescale =
            (raw.do_rescale != Some(false)).then_some(raw.rescale_factor.unwrap_or(1.0 / 255.0));
        let do_normalize = raw.do_normalize != Some(false);
        let normalize = match (video, rescale, do_normalize) {
            (true, Some(r), true) => Normalize::Fused {
                // torch: `tensor(mean, f32) * (1.0 / rescale_factor)`, multiplied in f32.
                mean: mean.map(|m| m * (1.0 / r) as f32),
                std: std.map(|s| s * (1.0 / r) as f32),
            },
            _ => Normalize::Separate {
                rescale,
                mean_std: do_normalize.then_some((mean, std)),
            },
        };
        let grid_pinpoints = match raw.image_grid_pinpoints {
            Some(p) if !video => p,
            _ if video => Vec::new(),
            // The class default: 1x1 .. 6x6 tiles.
            _ => (1..=6)
                .flat_map(|a| (1..=6).map(move |b| (a * size.0, b * size.1)))
                .collect(),
        };
        let tiles_fit =
            |&(h, w): &(usize, usize)| h > 0 && w > 0 && h % size.0 == 0 && w % size.1 == 0;
        if !video && (grid_pinpoints.is_empty() || !grid_pinpoints.iter().all(tiles_fit)) {
            return Err(err(format!(
                "`image_grid_pinpoints` must be a non-empty list of [height, width] multiples of the \
                 tile size {size:?}, got {grid_pinpoints:?}"
            )));
        }
        Ok(Self {
            size,
            normalize,
            grid_pinpoints,
            pad_fill: mean.map(|m| (m * 255.0) as u8),
        })
    }
}

/// The image and video processor settings of a checkpoint directory.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessorConfigs {
    pub image: ProcessorConfig,
    pub video: ProcessorConfig,
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Config {
            what: path.display().to_string(),
            reason: format!("not valid JSON: {e}"),
        })
}

impl ProcessorConfigs {
    /// Reads `processor_config.json` (transformers 5) or `preprocessor_config.json` +
    /// `video_preprocessor_config.json` (Hub); a missing video config takes the image one's
    /// statistics, as the Hub's checkpoints have identical values.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let v5 = dir.join("processor_config.json");
        let (image, image_what, video, video_what) = match read_json(&v5)? {
            Some(p) if p.get("image_processor").is_some() => {
                let what = v5.display().to_string();
                (
                    p["image_processor"].clone(),
                    format!("{what} (image_processor)"),
                    p.get("video_processor").cloned(),
                    format!("{what} (video_processor)"),
                )
            }
            _ => {
                let pre = dir.join("preprocessor_config.json");
                let image = read_json(&pre)?.ok_or_else(|| Error::Config {
                    what: dir.display().to_string(),
                    reason: "no processor settings: expected processor_config.json with an \
                             `image_processor` entry (transformers 5) or preprocessor_config.json (Hub)"
                        .into(),
                })?;
                let vid = dir.join("video_preprocessor_config.json");
                (
                    image,
                    pre.display().to_string(),
                    read_json(&vid)?,
                    vid.display().to_string(),
                )
            }
        };
        let image_cfg = ProcessorConfig::from_json(&image, &image_what, false)?;
        let video_cfg =
            ProcessorConfig::from_json(video.as_ref().unwrap_or(&image), &video_what, true)?;
        Ok(Self {
            image: image_cfg,
            video: video_cfg,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pil_table_matches_hand_arithmetic() {
        let c = ProcessorConfig::from_json(
            &json!({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}),
            "t",
            false,
        )
        .unwrap();
        let t = c.normalize.table(0);
        assert_eq!(t[0], -1.0);
        assert_eq!(t[255], 1.0);
        assert_eq!(c.pad_fill, [127, 127, 127]);
        assert_eq!(c.grid_pinpoints.len(), 36);
    }

    #[test]
    fn shortest_edge_and_errors() {
        let c = ProcessorConfig::from_json(&json!({"size": {"shortest_edge": 336}}), "t", false)
            .unwrap();
        assert_eq!(c.size, (336, 336));
        let e = ProcessorConfig::from_json(&json!({"resample": 2}), "t", false).unwrap_err();
        assert!(e.to_string().contains("bicubic"), "{e}");
        for bad in [json!([]), json!([[384, 500]]), json!([[0, 384]])] {
            let e = ProcessorConfig::from_json(&json!({"image_grid_pinpoints": bad}), "t", false)
                .unwrap_err();
            assert!(e.to_string().contains("multiples of the tile size"), "{e}");
        }
        let e = ProcessorConfig::from_json(&json!({"image_mean": [1, 2]}), "t", false).unwrap_err();
        assert!(e.to_string().contains("image_mean"), "{e}");
    }

    /// The Hub layout (preprocessor_config.json + video_preprocessor_config.json) and the
    /// transformers-5 layout (processor_config.json) give the same settings; a directory with
    /// neither is an error that names both.
    #[test]
    fn both_checkpoint_layouts_read_the_same() {
        let image = json!({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 3,
                           "size": {"height": 384, "width": 384}, "image_processor_type": "LlavaOnevisionImageProcessor"});
        let video = json!({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 3,
                           "size": {"height": 384, "width": 384}, "do_sample_frames": false});
        let hub = tempfile::tempdir().unwrap();
        std::fs::write(
            hub.path().join("preprocessor_config.json"),
            image.to_string(),
        )
        .unwrap();
        std::fs::write(
            hub.path().join("video_preprocessor_config.json"),
            video.to_string(),
        )
        .unwrap();
        let v5 = tempfile::tempdir().unwrap();
        let both =
            json!({"image_processor": image, "video_processor": video, "num_image_tokens": 729});
        std::fs::write(v5.path().join("processor_config.json"), both.to_string()).unwrap();
        let (a, b) = (
            ProcessorConfigs::from_dir(hub.path()).unwrap(),
            ProcessorConfigs::from_dir(v5.path()).unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(a.image.grid_pinpoints.len(), 36);
        assert!(matches!(a.video.normalize, Normalize::Fused { .. }));
        // A Hub processor_config.json without the image processor falls back to the Hub files.
        std::fs::write(
            hub.path().join("processor_config.json"),
            json!({"num_image_tokens": 729}).to_string(),
        )
        .unwrap();
        assert_eq!(ProcessorConfigs::from_dir(hub.path()).unwrap(), a);
        let empty = tempfile::tempdir().unwrap();
        let e = ProcessorConfigs::from_dir(empty.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("processor_config.json") && e.contains("preprocessor_config.json"),
            "{e}"
        );
        std::fs::write(empty.path().join("preprocessor_config.json"), "{not json").unwrap();
        let e = ProcessorConfigs::from_dir(empty.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid JSON"), "{e}");
    }

    #[test]
    fn video_uses_fused_statistics() {
        let c = ProcessorConfig::from_json(
            &json!({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}),
            "t",
            true,
        )
        .unwrap();
        assert_eq!(
            c.normalize,
            Normalize::Fused {
                mean: [127.5; 3],
                std: [127.5; 3]
            }
        );
    }
}
