//! Tensor names of every LLaVA-OneVision checkpoint layout, mapped onto one canonical naming:
//! `vision.*` (inside `SiglipVisionTransformer`), `projector.linear_{1,2}.*`, `image_newline`,
//! `text.*` (inside `Qwen2Model`) and `lm_head.weight`.

use onevision_nn::RenameTable;

/// Longest prefixes first: the first match wins.
pub const RENAMES: RenameTable = RenameTable {
    prefixes: &[
        // original lmms-lab (LLaVA-NeXT `LlavaQwenForCausalLM`)
        ("model.vision_tower.vision_tower.vision_model.", "vision."),
        ("model.mm_projector.0.", "projector.linear_1."),
        ("model.mm_projector.2.", "projector.linear_2."),
        // transformers in-memory names (4.5x keeps `vision_model`, 5.x drops it)
        ("model.vision_tower.vision_model.", "vision."),
        ("model.vision_tower.", "vision."),
        ("model.multi_modal_projector.", "projector."),
        ("model.image_newline", "image_newline"),
        ("model.language_model.", "text."),
        // the Hub's llava-hf files (transformers 4.45 conversion) and transformers 5 saves
        ("vision_tower.vision_model.", "vision."),
        ("vision_tower.", "vision."),
        ("multi_modal_projector.", "projector."),
        ("language_model.model.", "text."),
        ("language_model.lm_head.", "lm_head."),
        // original lmms-lab language model: model.{embed_tokens,layers,norm}
        ("model.", "text."),
    ],
    ignored_suffixes: &[".inv_freq"],
    layouts: "transformers 5 saves (vision_tower.*, language_model.model.*), llava-hf Hub files \
              (vision_tower.vision_model.*, language_model.lm_head.weight), transformers in-memory \
              names (model.vision_tower.*, model.language_model.*, lm_head.weight), lmms-lab originals \
              (model.layers.*, model.vision_tower.vision_tower.vision_model.*, model.mm_projector.{0,2}.*)",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layout_reaches_the_same_canonical_names() {
        let cases = [
            (
                "vision_tower.embeddings.patch_embedding.weight",
                "vision.embeddings.patch_embedding.weight",
            ),
            (
                "vision_tower.vision_model.encoder.layers.3.mlp.fc1.bias",
                "vision.encoder.layers.3.mlp.fc1.bias",
            ),
            (
                "model.vision_tower.encoder.layers.3.mlp.fc1.bias",
                "vision.encoder.layers.3.mlp.fc1.bias",
            ),
            (
                "model.vision_tower.vision_tower.vision_model.encoder.layers.3.mlp.fc1.bias",
                "vision.encoder.layers.3.mlp.fc1.bias",
            ),
            ("model.mm_projector.0.weight", "projector.linear_1.weight"),
            ("model.mm_projector.2.bias", "projector.linear_2.bias"),
            (
                "multi_modal_projector.linear_2.bias",
                "projector.linear_2.bias",
            ),
            (
                "model.multi_modal_projector.linear_1.weight",
                "projector.linear_1.weight",
            ),
            ("image_newline", "image_newline"),
            ("model.image_newline", "image_newline"),
            (
                "language_model.model.layers.0.self_attn.q_proj.bias",
                "text.layers.0.self_attn.q_proj.bias",
            ),
            (
                "model.language_model.layers.0.self_attn.q_proj.bias",
                "text.layers.0.self_attn.q_proj.bias",
            ),
            (
                "model.layers.0.self_attn.q_proj.bias",
                "text.layers.0.self_attn.q_proj.bias",
            ),
            ("model.embed_tokens.weight", "text.embed_tokens.weight"),
            ("language_model.lm_head.weight", "lm_head.weight"),
            ("lm_head.weight", "lm_head.weight"),
        ];
        for (stored, canonical) in cases {
            assert_eq!(
                RENAMES.canonical(stored).as_deref(),
                Some(canonical),
                "{stored}"
            );
        }
        assert_eq!(
            RENAMES.canonical("model.layers.0.self_attn.rotary_emb.inv_freq"),
            None
        );
    }
}
