//! The model's weights as a trainer holds them: every stored tensor in f32 (master weights),
//! the trainable ones as `Var`s, named three ways: our canonical names (the model code's), the
//! names transformers 5.24 gives them in `model.named_parameters()` (for gradients and logs),
//! and the names its `save_pretrained` writes (for checkpoints).
//!
//! Which part a tensor belongs to follows LLaVA-NeXT's `mm_tunable_parts` rule
//! (`llava/train/train.py`): the vision tower (`mm_vision_tower`), the projector
//! (`mm_mlp_adapter`), and everything else, `image_newline` included, is the language model
//! (`mm_language_model`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use onevision_models::llava_ov::weights::RENAMES;
use onevision_models::{LlavaOnevision, LlavaOnevisionConfig};
use onevision_nn::{RenameTable, WeightFiles};

use crate::optim::{decays, Group, Param};
use crate::Result;

/// Canonical names are already canonical: nothing to rename when the model is built from them.
const IDENTITY: RenameTable = RenameTable {
    prefixes: &[],
    ignored_suffixes: &[],
    layouts: "canonical names (vision.*, projector.*, image_newline, text.*, lm_head.weight)",
};

/// The part of the model a canonical tensor name belongs to.
pub fn group_of(canonical: &str) -> Group {
    if canonical.starts_with("vision.") {
        Group::Vision
    } else if canonical.starts_with("projector.") {
        Group::Projector
    } else {
        Group::Language
    }
}

/// (canonical prefix, transformers 5 `named_parameters()` prefix, `save_pretrained` prefix).
const NAMES: &[(&str, &str, &str)] = &[
    ("vision.", "model.vision_tower.", "vision_tower."),
    (
        "projector.",
        "model.multi_modal_projector.",
        "multi_modal_projector.",
    ),
    ("image_newline", "model.image_newline", "image_newline"),
    ("text.", "model.language_model.", "language_model.model."),
    ("lm_head.", "lm_head.", "language_model.lm_head."),
];

/// `canonical` with its prefix replaced by column `which` (1: parameter, 2: saved) of [`NAMES`].
fn renamed(canonical: &str, which: usize) -> String {
    for entry in NAMES {
        if let Some(rest) = canonical.strip_prefix(entry.0) {
            let to = if which == 1 { entry.1 } else { entry.2 };
            return format!("{to}{rest}");
        }
    }
    canonical.to_string()
}

/// The name transformers 5.24 gives this tensor in `model.named_parameters()`
/// (`model.language_model.layers.0.self_attn.q_proj.weight`, `lm_head.weight`, ...).
pub fn param_name(canonical: &str) -> String {
    renamed(canonical, 1)
}

/// The name transformers 5.24's `save_pretrained` writes for this tensor
/// (`language_model.model.layers.0...`, `vision_tower.encoder...`), which every loader reads.
pub fn saved_name(canonical: &str) -> String {
    renamed(canonical, 2)
}

/// Every stored tensor of a checkpoint in f32, the trainable ones as `Var`s.
pub struct ModelState {
    pub cfg: LlavaOnevisionConfig,
    /// canonical name -> f32 tensor (a `Var`'s tensor for trainable ones: same storage).
    tensors: BTreeMap<String, Tensor>,
    /// The trainable tensors, in canonical-name order.
    params: Vec<Param>,
    device: Device,
}

impl ModelState {
    /// Loads every tensor of the checkpoint in `dir` as f32 and makes those of `parts`
    /// trainable. A stored `lm_head.weight` of a tied model is dropped: the head is the
    /// embedding matrix (as transformers ties them), and saving writes it once.
    pub fn load(
        dir: &Path,
        cfg: &LlavaOnevisionConfig,
        parts: &[Group],
        device: &Device,
    ) -> Result<Self> {
        let files = WeightFiles::open_dir(dir, RENAMES)?;
        let mut tensors = BTreeMap::new();
        let mut params = vec![];
        for name in files.canonical_names() {
            if cfg.tie_word_embeddings && name == "lm_head.weight" {
                continue;
            }
            let t = files.tensor(&name, DType::F32, device)?;
            let group = group_of(&name);
            let t = if parts.contains(&group) {
                let var = Var::from_tensor(&t)?;
                let pname = param_name(&name);
                params.push(Param {
                    decay: decays(&pname),
                    name: pname,
                    var: var.clone(),
                    group,
                });
                var.as_tensor().clone()
            } else {
                t
            };
            tensors.insert(name, t);
        }
        Ok(Self {
            cfg: cfg.clone(),
            tensors,
            params,
            device: device.clone(),
        })
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The f32 tensor of a canonical name.
    pub fn tensor(&self, canonical: &str) -> Option<&Tensor> {
        self.tensors.get(canonical)
    }

    /// Canonical names and tensors, sorted by name.
    pub fn tensors(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.tensors.iter()
    }

    /// Builds the model on these tensors. In f32 it computes with the tensors themselves (an
    /// optimizer update is seen at once); in another dtype each weight is a cast of its master
    /// tensor (a tracked op: gradients reach the f32 `Var`), so rebuild after every update.
    pub fn build(&self, dtype: DType) -> Result<LlavaOnevision> {
        let map: HashMap<String, Tensor> = self
            .tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let files = Arc::new(WeightFiles::from_tensors(map, IDENTITY)?);
        Ok(LlavaOnevision::new(
            &self.cfg,
            &files.weights(dtype, &self.device),
        )?)
    }

    /// Parameter counts: (trainable, all stored).
    pub fn counts(&self) -> (usize, usize) {
        let trainable = self.params.iter().map(|p| p.var.elem_count()).sum();
        let all = self.tensors.values().map(|t| t.elem_count()).sum();
        (trainable, all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_transformers_5() {
        let cases = [
            (
                "text.layers.0.self_attn.q_proj.weight",
                "model.language_model.layers.0.self_attn.q_proj.weight",
                "language_model.model.layers.0.self_attn.q_proj.weight",
                Group::Language,
            ),
            (
                "projector.linear_1.weight",
                "model.multi_modal_projector.linear_1.weight",
                "multi_modal_projector.linear_1.weight",
                Group::Projector,
            ),
            (
                "vision.encoder.layers.1.mlp.fc2.bias",
                "model.vision_tower.encoder.layers.1.mlp.fc2.bias",
                "vision_tower.encoder.layers.1.mlp.fc2.bias",
                Group::Vision,
            ),
            (
                "image_newline",
                "model.image_newline",
                "image_newline",
                Group::Language,
            ),
            (
                "lm_head.weight",
                "lm_head.weight",
                "language_model.lm_head.weight",
                Group::Language,
            ),
        ];
        for (canonical, param, saved, group) in cases {
            assert_eq!(param_name(canonical), param);
            assert_eq!(saved_name(canonical), saved);
            assert_eq!(group_of(canonical), group);
            // What we save loads back to the same canonical name.
            assert_eq!(RENAMES.canonical(saved).as_deref(), Some(canonical));
        }
    }
}
