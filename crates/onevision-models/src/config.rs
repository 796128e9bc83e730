//! `config.json` of LLaVA-OneVision checkpoints, in the three forms found in the wild:
//!
//! - transformers 5 saves: `rope_parameters.rope_theta`, `dtype`;
//! - the Hub's llava-hf files (transformers 4.4x): `text_config.rope_theta`, `torch_dtype`,
//!   `use_image_newline_parameter`;
//! - the original lmms-lab checkpoints (`LlavaQwenForCausalLM`): Qwen2 keys at the top level plus
//!   `mm_*` keys and `image_aspect_ratio`.
//!
//! All become one [`LlavaOnevisionConfig`]; strings become enums here, and a value we do not
//! implement is an error naming the key and the accepted values. Missing keys take the defaults
//! of transformers' config classes (`LlavaOnevisionConfig`, `SiglipVisionConfig`, `Qwen2Config`).

use std::path::Path;

use onevision_nn::Activation;
use serde::Deserialize;
use serde_json::Value;

use crate::{Error, Result};

/// How a single image is cut into tiles and packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AspectRatio {
    /// Padded to a square, one tile (original `"pad"`).
    Pad,
    /// AnyRes grid, unpadded features, no shrink (original `"anyres"`).
    AnyRes,
    /// AnyRes grid, then features shrunk bilinearly when they exceed N tiles' worth by more
    /// than 10 % (`"anyres_max_N"`).
    AnyResMax(usize),
}

impl AspectRatio {
    const ACCEPTED: &'static str = "anyres_max_N (N >= 1), anyres, pad";

    /// Parses a `vision_aspect_ratio` / `image_aspect_ratio` value (`anyres_max_9`, ...).
    pub fn from_name(s: &str) -> Result<Self> {
        Self::parse("image_aspect_ratio", s)
    }

    /// The config spelling (`anyres_max_9`, `anyres`, `pad`).
    pub fn name(&self) -> String {
        match self {
            Self::Pad => "pad".into(),
            Self::AnyRes => "anyres".into(),
            Self::AnyResMax(n) => format!("anyres_max_{n}"),
        }
    }

    fn parse(key: &str, s: &str) -> Result<Self> {
        let bad = || Error::Unsupported {
            key: key.to_string(),
            found: format!("{s:?}"),
            accepted: Self::ACCEPTED.to_string(),
        };
        match s {
            "pad" => Ok(Self::Pad),
            "anyres" => Ok(Self::AnyRes),
            _ => match s.strip_prefix("anyres_max_").map(str::parse::<usize>) {
                Some(Ok(n)) if n >= 1 => Ok(Self::AnyResMax(n)),
                _ => Err(bad()),
            },
        }
    }
}

/// The SigLIP vision tower (`SiglipVisionConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct SiglipConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    /// Layers stored in the checkpoint.
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

impl SiglipConfig {
    /// Tokens along one side of a tile (27 for 384/14).
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Tokens per tile (729 for 384/14).
    pub fn tokens_per_tile(&self) -> usize {
        self.grid() * self.grid()
    }

    /// google/siglip-so400m-patch14-384 with its last layer removed, as LLaVA-OneVision uses it.
    pub fn so400m() -> Self {
        Self {
            hidden_size: 1152,
            intermediate_size: 4304,
            num_hidden_layers: 26,
            num_attention_heads: 16,
            num_channels: 3,
            image_size: 384,
            patch_size: 14,
            hidden_act: Activation::GeluTanh,
            layer_norm_eps: 1e-6,
        }
    }
}

/// The Qwen2 language model (`Qwen2Config`).
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub hidden_act: Activation,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
}

/// Everything the model needs to know, whatever form the checkpoint's config had.
#[derive(Debug, Clone, PartialEq)]
pub struct LlavaOnevisionConfig {
    pub vision: SiglipConfig,
    pub text: Qwen2Config,
    pub projector_act: Activation,
    pub projector_bias: bool,
    /// Index into the vision tower's hidden states (0 = embeddings, -1 = last layer).
    pub vision_feature_layer: i64,
    pub aspect_ratio: AspectRatio,
    /// AnyRes candidate resolutions as (height, width) in pixels, in config order.
    pub grid_pinpoints: Vec<(usize, usize)>,
    pub image_token_id: u32,
    pub video_token_id: u32,
    pub tie_word_embeddings: bool,
    /// End-of-sequence ids named by the config (generation_config.json may add more).
    pub eos_token_ids: Vec<u32>,
    /// The dtype the checkpoint says it was saved in, if it says.
    pub stored_dtype: Option<String>,
}

impl LlavaOnevisionConfig {
    /// Reads and parses `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let json: Value = serde_json::from_str(&text).map_err(|e| Error::BadJson {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_json(&json)
    }

    /// Parses any of the accepted config forms.
    pub fn from_json(json: &Value) -> Result<Self> {
        let model_type = json.get("model_type").and_then(Value::as_str).unwrap_or("");
        let archs: Vec<&str> = json
            .get("architectures")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if model_type == "llava_onevision" || json.get("text_config").is_some() {
            from_hf(json)
        } else if json.get("mm_vision_tower").is_some()
            || archs.iter().any(|a| a.starts_with("LlavaQwen"))
        {
            from_lmms(json)
        } else {
            Err(Error::Unsupported {
                key: "model_type".into(),
                found: format!("{model_type:?} (architectures {archs:?})"),
                accepted: "llava_onevision (transformers), or an lmms-lab LlavaQwenForCausalLM config with mm_vision_tower".into(),
            })
        }
    }

    /// Vision layers that must run to produce the selected features.
    pub fn vision_layers_used(&self) -> usize {
        resolve_feature_layer(self.vision_feature_layer, self.vision.num_hidden_layers)
            .expect("checked at config load")
    }
}

fn resolve_feature_layer(layer: i64, num_layers: usize) -> Option<usize> {
    let states = num_layers as i64 + 1; // hidden_states = embeddings + one per layer
    let idx = if layer < 0 { states + layer } else { layer };
    (0..states).contains(&idx).then_some(idx as usize)
}

fn parse<T: for<'de> Deserialize<'de>>(key: &str, v: &Value) -> Result<T> {
    T::deserialize(v).map_err(|e| Error::BadConfig {
        key: key.into(),
        reason: e.to_string(),
    })
}

/// Qwen2 keys; missing ones take `Qwen2Config`'s defaults.
#[derive(Debug, Default, Deserialize)]
struct RawQwen2 {
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    /// Absent: 32 (the class default); `null`: as many as attention heads.
    #[serde(default, deserialize_with = "present")]
    num_key_value_heads: Option<Option<usize>>,
    head_dim: Option<usize>,
    hidden_act: Option<String>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_parameters: Option<Value>,
    rope_scaling: Option<Value>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    use_sliding_window: Option<bool>,
    eos_token_id: Option<Value>,
}

impl RawQwen2 {
    fn build(self, prefix: &str) -> Result<Qwen2Config> {
        let key = |k: &str| format!("{prefix}{k}");
        let hidden_size = self.hidden_size.unwrap_or(4096);
        let heads = self.num_attention_heads.unwrap_or(32);
        let act = self.hidden_act.unwrap_or_else(|| "silu".into());
        let hidden_act = Activation::parse(&act).ok_or_else(|| Error::Unsupported {
            key: key("hidden_act"),
            found: format!("{act:?}"),
            accepted: Activation::ACCEPTED.into(),
        })?;
        let mut rope_theta = self.rope_theta;
        if let Some(p) = &self.rope_parameters {
            let rope_type = p
                .get("rope_type")
                .and_then(Value::as_str)
                .unwrap_or("default");
            if rope_type != "default" {
                return Err(Error::Unsupported {
                    key: key("rope_parameters.rope_type"),
                    found: format!("{rope_type:?}"),
                    accepted: "default".into(),
                });
            }
            if let Some(t) = p.get("rope_theta").and_then(Value::as_f64) {
                rope_theta = Some(t);
            }
        }
        if let Some(s) = self.rope_scaling.filter(|v| !v.is_null()) {
            let rope_type = s
                .get("rope_type")
                .or_else(|| s.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("?");
            if rope_type != "default" {
                return Err(Error::Unsupported {
                    key: key("rope_scaling"),
                    found: s.to_string(),
                    accepted: "null or {\"rope_type\": \"default\"}".into(),
                });
            }
        }
        if self.use_sliding_window == Some(true) {
            return Err(Error::Unsupported {
                key: key("use_sliding_window"),
                found: "true".into(),
                accepted: "false (LLaVA-OneVision's Qwen2 attends to the full context)".into(),
            });
        }
        if heads == 0 || !hidden_size.is_multiple_of(heads) && self.head_dim.is_none() {
            return Err(Error::BadConfig {
                key: key("num_attention_heads"),
                reason: format!("{heads} heads do not divide hidden_size {hidden_size}"),
            });
        }
        let kv_heads = match self.num_key_value_heads {
            None => 32,
            Some(n) => n.unwrap_or(heads),
        };
        if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(Error::BadConfig {
                key: key("num_key_value_heads"),
                reason: format!("{kv_heads} key/value heads do not divide {heads} attention heads"),
            });
        }
        Ok(Qwen2Config {
            vocab_size: self.vocab_size.unwrap_or(151936),
            hidden_size,
            intermediate_size: self.intermediate_size.unwrap_or(22016),
            num_hidden_layers: self.num_hidden_layers.unwrap_or(32),
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim: self.head_dim.unwrap_or(hidden_size / heads),
            hidden_act,
            rms_norm_eps: self.rms_norm_eps.unwrap_or(1e-6),
            rope_theta: rope_theta.unwrap_or(10000.0),
            max_position_embeddings: self.max_position_embeddings.unwrap_or(32768),
        })
    }
}

/// Tells a key given as `null` (`Some(None)`) from an absent one (`None`, via `default`).
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<usize>>, D::Error> {
    Option::<usize>::deserialize(d).map(Some)
}

/// SigLIP vision keys; missing ones take `SiglipVisionConfig`'s defaults.
#[derive(Debug, Default, Deserialize)]
struct RawSiglip {
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_channels: Option<usize>,
    image_size: Option<usize>,
    patch_size: Option<usize>,
    hidden_act: Option<String>,
    layer_norm_eps: Option<f64>,
}

impl RawSiglip {
    fn build(self) -> Result<SiglipConfig> {
        let act = self
            .hidden_act
            .unwrap_or_else(|| "gelu_pytorch_tanh".into());
        let hidden_act = Activation::parse(&act).ok_or_else(|| Error::Unsupported {
            key: "vision_config.hidden_act".into(),
            found: format!("{act:?}"),
            accepted: Activation::ACCEPTED.into(),
        })?;
        let c = SiglipConfig {
            hidden_size: self.hidden_size.unwrap_or(768),
            intermediate_size: self.intermediate_size.unwrap_or(3072),
            num_hidden_layers: self.num_hidden_layers.unwrap_or(12),
            num_attention_heads: self.num_attention_heads.unwrap_or(12),
            num_channels: self.num_channels.unwrap_or(3),
            image_size: self.image_size.unwrap_or(224),
            patch_size: self.patch_size.unwrap_or(16),
            hidden_act,
            layer_norm_eps: self.layer_norm_eps.unwrap_or(1e-6),
        };
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(Error::BadConfig {
                key: "vision_config.num_attention_heads".into(),
                reason: format!(
                    "{} heads do not divide hidden_size {}",
                    c.num_attention_heads, c.hidden_size
                ),
            });
        }
        if c.patch_size == 0 || c.image_size % c.patch_size == c.image_size {
            return Err(Error::BadConfig {
                key: "vision_config.patch_size".into(),
                reason: format!(
                    "patch {} does not fit image_size {}",
                    c.patch_size, c.image_size
                ),
            });
        }
        Ok(c)
    }
}

fn eos_ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_u64)
            .map(|n| n as u32)
            .collect(),
        _ => vec![],
    }
}

/// The 36 AnyRes resolutions of the released checkpoints (1x1 to 6x6 tiles of 384), (h, w).
fn default_grid_pinpoints() -> Vec<(usize, usize)> {
    let mut v = Vec::with_capacity(36);
    for a in 1..=6 {
        for b in 1..=6 {
            v.push((a * 384, b * 384));
        }
    }
    v
}

/// Pinpoints as a list of `[h, w]` pairs, or the original code's range string
/// `"(1x1),...,(6x6)"` (tile counts, multiplied by the tile size).
fn parse_pinpoints(key: &str, v: Option<&Value>, tile: usize) -> Result<Vec<(usize, usize)>> {
    let bad = |reason: String| Error::BadConfig {
        key: key.into(),
        reason,
    };
    let pts = match v {
        None | Some(Value::Null) => default_grid_pinpoints(),
        Some(Value::String(s)) => {
            let nums: Vec<usize> = s
                .split(|c: char| !c.is_ascii_digit())
                .filter(|p| !p.is_empty())
                .map(|p| p.parse().map_err(|_| bad(format!("bad number in {s:?}"))))
                .collect::<Result<_>>()?;
            if nums.len() < 4 || !s.contains('x') {
                return Err(bad(format!("expected \"(AxB),...,(CxD)\", found {s:?}")));
            }
            let (a0, b0, a1, b1) = (nums[0], nums[1], nums[nums.len() - 2], nums[nums.len() - 1]);
            let mut v = vec![];
            for a in a0..=a1 {
                for b in b0..=b1 {
                    v.push((a * tile, b * tile));
                }
            }
            v
        }
        Some(v) => {
            let pairs: Vec<[usize; 2]> = parse(key, v)?;
            pairs.into_iter().map(|[h, w]| (h, w)).collect()
        }
    };
    if pts.is_empty()
        || pts
            .iter()
            .any(|&(h, w)| h == 0 || w == 0 || h % tile != 0 || w % tile != 0)
    {
        return Err(bad(format!(
            "every pinpoint must be a positive multiple of the {tile}-px tile, found {pts:?}"
        )));
    }
    Ok(pts)
}

fn from_hf(json: &Value) -> Result<LlavaOnevisionConfig> {
    let text_raw: RawQwen2 = match json.get("text_config") {
        Some(v) if !v.is_null() => parse("text_config", v)?,
        _ => RawQwen2::default(),
    };
    let text_tie = text_raw.tie_word_embeddings.unwrap_or(false);
    let text_eos = eos_ids(text_raw.eos_token_id.as_ref());
    let text = text_raw.build("text_config.")?;
    let vision = match json.get("vision_config") {
        Some(v) if !v.is_null() => parse::<RawSiglip>("vision_config", v)?.build()?,
        _ => SiglipConfig::so400m(),
    };
    let str_key = |k: &str, default: &str| -> Result<String> {
        match json.get(k) {
            None | Some(Value::Null) => Ok(default.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(Error::BadConfig {
                key: k.into(),
                reason: format!("expected a string, found {v}"),
            }),
        }
    };
    let strategy = str_key("vision_feature_select_strategy", "full")?;
    if strategy != "full" {
        return Err(Error::Unsupported {
            key: "vision_feature_select_strategy".into(),
            found: format!("{strategy:?}"),
            accepted: "full (SigLIP has no CLS token to drop)".into(),
        });
    }
    let layer = match json.get("vision_feature_layer") {
        None | Some(Value::Null) => -1,
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64().unwrap_or(-1),
        Some(v) => {
            return Err(Error::Unsupported {
                key: "vision_feature_layer".into(),
                found: v.to_string(),
                accepted: "a single layer index, e.g. -1".into(),
            })
        }
    };
    let act = str_key("projector_hidden_act", "gelu")?;
    let projector_act = Activation::parse(&act).ok_or_else(|| Error::Unsupported {
        key: "projector_hidden_act".into(),
        found: format!("{act:?}"),
        accepted: Activation::ACCEPTED.into(),
    })?;
    let aspect_ratio = AspectRatio::parse(
        "vision_aspect_ratio",
        &str_key("vision_aspect_ratio", "anyres_max_9")?,
    )?;
    let get_u32 = |k: &str, alt: &str, default: u32| -> Result<u32> {
        match json.get(k).or_else(|| json.get(alt)) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => parse(k, v),
        }
    };
    let get_bool = |k: &str, default: bool| -> Result<bool> {
        match json.get(k) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => parse(k, v),
        }
    };
    let mut eos = eos_ids(json.get("eos_token_id"));
    eos.extend(text_eos);
    finish(LlavaOnevisionConfig {
        grid_pinpoints: parse_pinpoints(
            "image_grid_pinpoints",
            json.get("image_grid_pinpoints"),
            vision.image_size,
        )?,
        vision,
        text,
        projector_act,
        projector_bias: get_bool("multimodal_projector_bias", true)?,
        vision_feature_layer: layer,
        aspect_ratio,
        image_token_id: get_u32("image_token_index", "image_token_id", 151646)?,
        video_token_id: get_u32("video_token_index", "video_token_id", 151647)?,
        // transformers 5 ties when either level asks for it (0.5B: text_config says true).
        tie_word_embeddings: get_bool("tie_word_embeddings", false)? || text_tie,
        eos_token_ids: eos,
        stored_dtype: json
            .get("dtype")
            .or_else(|| json.get("torch_dtype"))
            .and_then(Value::as_str)
            .map(String::from),
    })
}

fn from_lmms(json: &Value) -> Result<LlavaOnevisionConfig> {
    let text_raw: RawQwen2 = parse("(top level)", json)?;
    let tie = text_raw.tie_word_embeddings.unwrap_or(false);
    let eos = eos_ids(text_raw.eos_token_id.as_ref());
    let text = text_raw.build("")?;
    let s = |k: &str| json.get(k).and_then(Value::as_str);
    let check = |k: &str, accepted: &[&str], default: Option<&str>| -> Result<()> {
        match s(k).or(default) {
            Some(v) if accepted.contains(&v) => Ok(()),
            None if json.get(k).is_none_or(Value::is_null) => Ok(()),
            _ => Err(Error::Unsupported {
                key: k.into(),
                found: json.get(k).map(|v| v.to_string()).unwrap_or_default(),
                accepted: accepted.join(", "),
            }),
        }
    };
    let tower = s("mm_vision_tower").unwrap_or("");
    if !tower.contains("siglip-so400m-patch14-384") {
        return Err(Error::Unsupported {
            key: "mm_vision_tower".into(),
            found: format!("{tower:?}"),
            accepted: "google/siglip-so400m-patch14-384".into(),
        });
    }
    check("mm_projector_type", &["mlp2x_gelu"], None)?;
    check("mm_spatial_pool_mode", &["bilinear"], Some("bilinear"))?;
    check("mm_newline_position", &["one_token"], Some("one_token"))?;
    check(
        "mm_patch_merge_type",
        &["spatial_unpad", "spatial_unpad_pad"],
        Some("spatial_unpad"),
    )?;
    check(
        "mm_vision_select_feature",
        &["patch", "full"],
        Some("patch"),
    )?;
    if let Some(v) = json.get("mm_spatial_pool_stride").filter(|v| !v.is_null()) {
        if v.as_u64() != Some(2) {
            return Err(Error::Unsupported {
                key: "mm_spatial_pool_stride".into(),
                found: v.to_string(),
                accepted: "2".into(),
            });
        }
    }
    // The original tower deletes SigLIP's last layer and takes the output of the layer before
    // (`hidden_states[-1]` of the shortened tower); `mm_vision_select_layer` is not consulted.
    let vision = SiglipConfig::so400m();
    if let Some(h) = json.get("mm_hidden_size").and_then(Value::as_u64) {
        if h as usize != vision.hidden_size {
            return Err(Error::Unsupported {
                key: "mm_hidden_size".into(),
                found: h.to_string(),
                accepted: vision.hidden_size.to_string(),
            });
        }
    }
    let aspect_ratio = AspectRatio::parse(
        "image_aspect_ratio",
        s("image_aspect_ratio").unwrap_or("pad"),
    )?;
    finish(LlavaOnevisionConfig {
        grid_pinpoints: parse_pinpoints(
            "image_grid_pinpoints",
            json.get("image_grid_pinpoints"),
            vision.image_size,
        )?,
        vision,
        text,
        projector_act: Activation::GeluErf,
        projector_bias: true,
        vision_feature_layer: -1,
        aspect_ratio,
        image_token_id: 151646,
        video_token_id: 151647,
        tie_word_embeddings: tie,
        eos_token_ids: eos,
        stored_dtype: s("torch_dtype").map(String::from),
    })
}

fn finish(c: LlavaOnevisionConfig) -> Result<LlavaOnevisionConfig> {
    if resolve_feature_layer(c.vision_feature_layer, c.vision.num_hidden_layers).is_none() {
        return Err(Error::BadConfig {
            key: "vision_feature_layer".into(),
            reason: format!(
                "{} is outside the {} hidden states of a {}-layer tower",
                c.vision_feature_layer,
                c.vision.num_hidden_layers + 1,
                c.vision.num_hidden_layers
            ),
        });
    }
    Ok(c)
}

#[cfg(test)]
mod tests;
