//! A new nano checkpoint in the llava-hf layout (the files `from_pretrained` and every
//! onevision command read): `config.json`, `model.safetensors` with freshly initialised f32
//! weights under transformers 5's saved names, the tokenizer files ([`crate::tokenizer`]),
//! `chat_template.jinja`, `processor_config.json` and `generation_config.json`.
//!
//! The geometry is LLaVA-OneVision's at small widths: a SigLIP tower of `tile`-px tiles in
//! `patch`-px patches (no head, its last layer's output used, as the released models use
//! theirs), the 2-layer GELU projector, and a Qwen2 decoder with grouped-query attention and
//! tied embeddings. The AnyRes grid points are the multiples of the tile up to 3x3 tiles (the
//! released models list 1x1 to 6x6 of 384 px), the aspect rule `anyres_max_9`, and videos take
//! the 2x2 bilinear pooling of every frame: the same three paths as the 384-px models.
//!
//! Initialisation is transformers' for these modules (normal with std 0.02 for every matrix,
//! the embeddings and SigLIP's position table; zero biases; unit norm weights) except
//! `image_newline`, drawn as LLaVA-NeXT draws it (std 1/sqrt(hidden)). The normal draws come
//! from onevision-train's SplitMix64 through Box-Muller, so a seed gives the same bytes everywhere.

use std::collections::BTreeMap;
use std::path::Path;

use half::bf16;
use onevision_train::Rng;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::io;
use crate::tokenizer::{self, Trained};
use crate::{Error, Result};

/// The system prompt the `qwen_1_5` training template writes; the nano chat template adds it
/// when a conversation has none, so a request asked without one sees what training saw.
pub use onevision_train::labels::QWEN_SYSTEM_PROMPT as SYSTEM_PROMPT;

/// Widths and depths of a nano model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NanoDims {
    pub tile: usize,
    pub patch: usize,
    pub vision_hidden: usize,
    pub vision_layers: usize,
    pub vision_heads: usize,
    pub vision_intermediate: usize,
    pub text_hidden: usize,
    pub text_layers: usize,
    pub text_heads: usize,
    pub text_kv_heads: usize,
    pub text_intermediate: usize,
    pub rope_theta: f64,
}

impl NanoDims {
    /// The shipped model's shape.
    pub const DEFAULT: NanoDims = NanoDims {
        tile: 96,
        patch: 16,
        vision_hidden: 192,
        vision_layers: 4,
        vision_heads: 3,
        vision_intermediate: 512,
        text_hidden: 192,
        text_layers: 4,
        text_heads: 6,
        text_kv_heads: 2,
        text_intermediate: 512,
        rope_theta: 10000.0,
    };

    /// For tests and the curriculum's smoke run: seconds per stage.
    pub const MICRO: NanoDims = NanoDims {
        tile: 48,
        patch: 16,
        vision_hidden: 32,
        vision_layers: 1,
        vision_heads: 2,
        vision_intermediate: 64,
        text_hidden: 32,
        text_layers: 1,
        text_heads: 2,
        text_kv_heads: 1,
        text_intermediate: 64,
        rope_theta: 10000.0,
    };

    fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Invalid(what));
        if self.patch == 0 || self.tile == 0 || self.tile % self.patch != 0 {
            return bad(format!(
                "tile {} px is not a whole number of {} px patches",
                self.tile, self.patch
            ));
        }
        if self.vision_heads == 0 || self.vision_hidden % self.vision_heads != 0 {
            return bad(format!(
                "vision width {} does not split into {} heads",
                self.vision_hidden, self.vision_heads
            ));
        }
        if self.text_heads == 0
            || self.text_hidden % self.text_heads != 0
            || self.text_kv_heads == 0
            || self.text_heads % self.text_kv_heads != 0
        {
            return bad(format!(
                "text width {} with {} heads and {} key/value heads: expected the width to split \
                 into the heads and the heads into the key/value heads",
                self.text_hidden, self.text_heads, self.text_kv_heads
            ));
        }
        if (self.text_hidden / self.text_heads) % 2 != 0 {
            return bad(format!(
                "text head width {} is odd; rotary embeddings need an even one",
                self.text_hidden / self.text_heads
            ));
        }
        if [
            self.vision_layers,
            self.text_layers,
            self.vision_intermediate,
            self.text_intermediate,
        ]
        .contains(&0)
        {
            return bad("every layer count and MLP width must be at least 1".into());
        }
        Ok(())
    }

    /// Patch tokens of one tile.
    pub fn tile_tokens(&self) -> usize {
        (self.tile / self.patch).pow(2)
    }

    /// The AnyRes grid points: every `rows x cols` tiles up to 3x3, in (height, width) pixels,
    /// rows outer as the released lists are.
    pub fn grid_pinpoints(&self) -> Vec<[usize; 2]> {
        let mut v = Vec::new();
        for r in 1..=3 {
            for c in 1..=3 {
                v.push([r * self.tile, c * self.tile]);
            }
        }
        v
    }
}

/// The chat template: the llava-hf LLaVA-OneVision template (each message's images, then its
/// video, then its text) preceded by the training system prompt when the first message is not
/// a system message. A message's content may be a string or a list of parts.
pub fn chat_template() -> String {
    let body = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}\
{% if message['content'] is string %}{{ message['content'] }}{% else %}\
{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}\
{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\\n' }}{% endfor %}\
{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}\
{% endif %}{{'<|im_end|>' + '\\n'}}{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    format!(
        "{{% if messages[0]['role'] != 'system' %}}{{{{ '<|im_start|>system\\n{SYSTEM_PROMPT}<|im_end|>\\n' }}}}{{% endif %}}{body}"
    )
    .replace("\\n", "\n")
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(v)? + "\n").map_err(io(path))
}

/// `config.json` of a nano model.
pub fn config_json(dims: &NanoDims, tok: &Trained) -> serde_json::Value {
    json!({
        "architectures": ["LlavaOnevisionForConditionalGeneration"],
        "dtype": "float32",
        "image_grid_pinpoints": dims.grid_pinpoints(),
        "image_token_index": tok.image_id,
        "video_token_index": tok.video_id,
        "model_type": "llava_onevision",
        "multimodal_projector_bias": true,
        "projector_hidden_act": "gelu",
        "text_config": {
            "attention_dropout": 0.0,
            "bos_token_id": null,
            "eos_token_id": tok.im_end_id,
            "pad_token_id": tok.pad_id,
            "hidden_act": "silu",
            "hidden_size": dims.text_hidden,
            "initializer_range": 0.02,
            "intermediate_size": dims.text_intermediate,
            "layer_types": vec!["full_attention"; dims.text_layers],
            "max_position_embeddings": 32768,
            "max_window_layers": dims.text_layers,
            "model_type": "qwen2",
            "num_attention_heads": dims.text_heads,
            "num_hidden_layers": dims.text_layers,
            "num_key_value_heads": dims.text_kv_heads,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_theta": dims.rope_theta, "rope_type": "default"},
            "sliding_window": null,
            "tie_word_embeddings": true,
            "use_cache": true,
            "use_sliding_window": false,
            "vocab_size": tok.vocab_size()
        },
        "tie_word_embeddings": true,
        "transformers_version": "5.24.0",
        "vision_aspect_ratio": "anyres_max_9",
        "vision_config": {
            "attention_dropout": 0.0,
            "hidden_act": "gelu_pytorch_tanh",
            "hidden_size": dims.vision_hidden,
            "image_size": dims.tile,
            "intermediate_size": dims.vision_intermediate,
            "layer_norm_eps": 1e-6,
            "model_type": "siglip_vision_model",
            "num_attention_heads": dims.vision_heads,
            "num_channels": 3,
            "num_hidden_layers": dims.vision_layers,
            "patch_size": dims.patch,
            "vision_use_head": false
        },
        "vision_feature_layer": -1,
        "vision_feature_select_strategy": "full"
    })
}

/// `processor_config.json`: the llava-hf processor at the nano tile size.
pub fn processor_json(dims: &NanoDims) -> serde_json::Value {
    let size = json!({"height": dims.tile, "width": dims.tile});
    json!({
        "image_processor": {
            "do_convert_rgb": true,
            "do_normalize": true,
            "do_pad": true,
            "do_rescale": true,
            "do_resize": true,
            "image_grid_pinpoints": dims.grid_pinpoints(),
            "image_mean": [0.5, 0.5, 0.5],
            "image_processor_type": "LlavaOnevisionImageProcessor",
            "image_std": [0.5, 0.5, 0.5],
            "resample": 3,
            "rescale_factor": 1.0 / 255.0,
            "size": size
        },
        "image_token": tokenizer::IMAGE,
        "num_image_tokens": dims.tile_tokens(),
        "processor_class": "LlavaOnevisionProcessor",
        "video_processor": {
            "do_convert_rgb": true,
            "do_normalize": true,
            "do_rescale": true,
            "do_resize": true,
            "do_sample_frames": false,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            "resample": 3,
            "rescale_factor": 1.0 / 255.0,
            "return_metadata": false,
            "size": size,
            "video_processor_type": "LlavaOnevisionVideoProcessor"
        },
        "video_token": tokenizer::VIDEO,
        "vision_aspect_ratio": "anyres_max_9",
        "vision_feature_select_strategy": "full"
    })
}

/// Normals by Box-Muller (both halves used) over onevision-train's SplitMix64.
struct Normal {
    rng: Rng,
    spare: Option<f64>,
}

impl Normal {
    fn new(seed: u64) -> Self {
        Normal {
            rng: Rng::new(seed),
            spare: None,
        }
    }

    /// In (0, 1]: never 0, so the logarithm is finite.
    fn uniform(&mut self) -> f64 {
        ((self.rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    fn sample(&mut self) -> f64 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let (u, v) = (self.uniform(), self.uniform());
        let r = (-2.0 * u.ln()).sqrt();
        let t = std::f64::consts::TAU * v;
        self.spare = Some(r * t.sin());
        r * t.cos()
    }
}

/// The weights of a new model: (saved name, shape, values).
pub fn init_weights(
    dims: &NanoDims,
    vocab: usize,
    seed: u64,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut rng = Normal::new(seed);
    let mut out = Vec::new();
    let mut normal = |name: String, shape: Vec<usize>, std: f64| {
        let n = shape.iter().product();
        let v = (0..n).map(|_| (rng.sample() * std) as f32).collect();
        (name, shape, v)
    };
    let filled = |name: String, shape: Vec<usize>, x: f32| {
        let n = shape.iter().product();
        (name, shape, vec![x; n])
    };
    let (dv, iv) = (dims.vision_hidden, dims.vision_intermediate);
    let v = "vision_tower";
    out.push(normal(
        format!("{v}.embeddings.patch_embedding.weight"),
        vec![dv, 3, dims.patch, dims.patch],
        0.02,
    ));
    out.push(filled(
        format!("{v}.embeddings.patch_embedding.bias"),
        vec![dv],
        0.0,
    ));
    out.push(normal(
        format!("{v}.embeddings.position_embedding.weight"),
        vec![dims.tile_tokens(), dv],
        0.02,
    ));
    for l in 0..dims.vision_layers {
        let p = format!("{v}.encoder.layers.{l}");
        for n in ["layer_norm1", "layer_norm2"] {
            out.push(filled(format!("{p}.{n}.weight"), vec![dv], 1.0));
            out.push(filled(format!("{p}.{n}.bias"), vec![dv], 0.0));
        }
        for n in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            out.push(normal(
                format!("{p}.self_attn.{n}.weight"),
                vec![dv, dv],
                0.02,
            ));
            out.push(filled(format!("{p}.self_attn.{n}.bias"), vec![dv], 0.0));
        }
        out.push(normal(format!("{p}.mlp.fc1.weight"), vec![iv, dv], 0.02));
        out.push(filled(format!("{p}.mlp.fc1.bias"), vec![iv], 0.0));
        out.push(normal(format!("{p}.mlp.fc2.weight"), vec![dv, iv], 0.02));
        out.push(filled(format!("{p}.mlp.fc2.bias"), vec![dv], 0.0));
    }
    out.push(filled(format!("{v}.post_layernorm.weight"), vec![dv], 1.0));
    out.push(filled(format!("{v}.post_layernorm.bias"), vec![dv], 0.0));

    let (dt, it) = (dims.text_hidden, dims.text_intermediate);
    let kv = dims.text_kv_heads * (dt / dims.text_heads);
    let pr = "multi_modal_projector";
    out.push(normal(format!("{pr}.linear_1.weight"), vec![dt, dv], 0.02));
    out.push(filled(format!("{pr}.linear_1.bias"), vec![dt], 0.0));
    out.push(normal(format!("{pr}.linear_2.weight"), vec![dt, dt], 0.02));
    out.push(filled(format!("{pr}.linear_2.bias"), vec![dt], 0.0));
    out.push(normal(
        "image_newline".into(),
        vec![dt],
        1.0 / (dt as f64).sqrt(),
    ));
    let t = "language_model.model";
    out.push(normal(
        format!("{t}.embed_tokens.weight"),
        vec![vocab, dt],
        0.02,
    ));
    for l in 0..dims.text_layers {
        let p = format!("{t}.layers.{l}");
        out.push(filled(format!("{p}.input_layernorm.weight"), vec![dt], 1.0));
        out.push(filled(
            format!("{p}.post_attention_layernorm.weight"),
            vec![dt],
            1.0,
        ));
        for (n, rows) in [("q_proj", dt), ("k_proj", kv), ("v_proj", kv)] {
            out.push(normal(
                format!("{p}.self_attn.{n}.weight"),
                vec![rows, dt],
                0.02,
            ));
            out.push(filled(format!("{p}.self_attn.{n}.bias"), vec![rows], 0.0));
        }
        out.push(normal(
            format!("{p}.self_attn.o_proj.weight"),
            vec![dt, dt],
            0.02,
        ));
        out.push(normal(
            format!("{p}.mlp.gate_proj.weight"),
            vec![it, dt],
            0.02,
        ));
        out.push(normal(
            format!("{p}.mlp.up_proj.weight"),
            vec![it, dt],
            0.02,
        ));
        out.push(normal(
            format!("{p}.mlp.down_proj.weight"),
            vec![dt, it],
            0.02,
        ));
    }
    out.push(filled(format!("{t}.norm.weight"), vec![dt], 1.0));
    out
}

/// Writes tensors as one safetensors file, f32 or bf16, with transformers' `format: pt`.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    as_bf16: bool,
) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| {
            if as_bf16 {
                v.iter()
                    .flat_map(|x| bf16::from_f32(*x).to_le_bytes())
                    .collect()
            } else {
                v.iter().flat_map(|x| x.to_le_bytes()).collect()
            }
        })
        .collect();
    let dtype = if as_bf16 { Dtype::BF16 } else { Dtype::F32 };
    let mut views = BTreeMap::new();
    for ((name, shape, _), b) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(dtype, shape.clone(), b)
            .map_err(|e| Error::Invalid(format!("tensor {name}: {e}")))?;
        views.insert(name.clone(), view);
    }
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(meta), path)
        .map_err(|e| Error::Invalid(format!("{}: cannot write safetensors: {e}", path.display())))
}

/// Writes a complete new checkpoint into `dir` (created): tokenizer trained over `texts`,
/// config, processor, chat template, generation config and initial weights.
pub fn create(
    dir: &Path,
    dims: &NanoDims,
    texts: &[String],
    learned_vocab: usize,
    seed: u64,
) -> Result<Trained> {
    dims.check()?;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tok = tokenizer::train(texts, learned_vocab)?;
    tokenizer::save(&tok, dir)?;
    write_json(&dir.join("config.json"), &config_json(dims, &tok))?;
    write_json(&dir.join("processor_config.json"), &processor_json(dims))?;
    write_json(
        &dir.join("generation_config.json"),
        &json!({"eos_token_id": tok.im_end_id, "pad_token_id": tok.pad_id}),
    )?;
    let path = dir.join("chat_template.jinja");
    std::fs::write(&path, chat_template()).map_err(io(&path))?;
    let weights = init_weights(dims, tok.vocab_size(), seed);
    write_safetensors(&dir.join("model.safetensors"), &weights, false)?;
    Ok(tok)
}
