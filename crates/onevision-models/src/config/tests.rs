use serde_json::json;

use super::*;

fn hf5() -> Value {
    json!({
        "architectures": ["LlavaOnevisionForConditionalGeneration"],
        "model_type": "llava_onevision",
        "dtype": "float32",
        "image_token_index": 151646,
        "video_token_index": 151647,
        "projector_hidden_act": "gelu",
        "vision_aspect_ratio": "anyres_max_9",
        "vision_feature_layer": -1,
        "vision_feature_select_strategy": "full",
        "tie_word_embeddings": false,
        "text_config": {
            "model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
            "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
            "vocab_size": 152000, "rms_norm_eps": 1e-6, "tie_word_embeddings": true,
            "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
            "eos_token_id": 151645
        },
        "vision_config": {
            "model_type": "siglip_vision_model", "hidden_size": 1152, "intermediate_size": 4304,
            "num_hidden_layers": 26, "num_attention_heads": 16, "image_size": 384, "patch_size": 14
        }
    })
}

#[test]
fn transformers5_config() {
    let c = LlavaOnevisionConfig::from_json(&hf5()).unwrap();
    assert_eq!(c.text.rope_theta, 1e6);
    assert_eq!(c.text.head_dim, 64);
    assert!(c.tie_word_embeddings, "v5 ties when text_config says so");
    assert_eq!(c.aspect_ratio, AspectRatio::AnyResMax(9));
    assert_eq!(c.grid_pinpoints.len(), 36);
    assert_eq!(c.grid_pinpoints[1], (384, 768));
    assert_eq!(c.vision_layers_used(), 26);
    assert_eq!(c.stored_dtype.as_deref(), Some("float32"));
    assert_eq!(c.eos_token_ids, vec![151645]);
}

#[test]
fn hub_4x_config() {
    let mut j = hf5();
    let t = j["text_config"].as_object_mut().unwrap();
    t.remove("rope_parameters");
    t.insert("rope_theta".into(), json!(1000000.0));
    let o = j.as_object_mut().unwrap();
    o.remove("dtype");
    o.insert("torch_dtype".into(), json!("float16"));
    o.insert("use_image_newline_parameter".into(), json!(true));
    let c = LlavaOnevisionConfig::from_json(&j).unwrap();
    assert_eq!(c.text.rope_theta, 1e6);
    assert_eq!(c.stored_dtype.as_deref(), Some("float16"));
    assert_eq!(
        c,
        LlavaOnevisionConfig {
            stored_dtype: Some("float16".into()),
            ..LlavaOnevisionConfig::from_json(&hf5()).unwrap()
        }
    );
}

#[test]
fn missing_sub_configs_take_transformers_defaults() {
    let c = LlavaOnevisionConfig::from_json(&json!({"model_type": "llava_onevision"})).unwrap();
    assert_eq!(c.vision, SiglipConfig::so400m());
    assert_eq!(c.text.hidden_size, 4096);
    assert_eq!(c.text.rope_theta, 10000.0);
    assert_eq!(c.image_token_id, 151646);
}

#[test]
fn lmms_lab_config() {
    let j = json!({
        "architectures": ["LlavaQwenForCausalLM"], "model_type": "llava",
        "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
        "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
        "rope_theta": 1000000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
        "eos_token_id": 151645, "image_aspect_ratio": "anyres_max_9",
        "image_grid_pinpoints": [[384, 384], [384, 768], [768, 384]],
        "mm_hidden_size": 1152, "mm_patch_merge_type": "spatial_unpad",
        "mm_projector_type": "mlp2x_gelu", "mm_spatial_pool_mode": "bilinear",
        "mm_vision_select_feature": "patch", "mm_vision_select_layer": -2,
        "mm_vision_tower": "google/siglip-so400m-patch14-384", "use_sliding_window": false
    });
    let c = LlavaOnevisionConfig::from_json(&j).unwrap();
    assert_eq!(c.vision, SiglipConfig::so400m());
    assert_eq!(c.vision_layers_used(), 26);
    assert_eq!(c.projector_act, Activation::GeluErf);
    assert!(c.tie_word_embeddings);
    assert_eq!(c.grid_pinpoints, vec![(384, 384), (384, 768), (768, 384)]);
    assert_eq!(c.text.vocab_size, 151936);
}

#[test]
fn pinpoint_range_string() {
    let pts = parse_pinpoints("k", Some(&json!("(1x1),...,(6x6)")), 384).unwrap();
    assert_eq!(pts.len(), 36);
    assert_eq!(pts[0], (384, 384));
    assert_eq!(pts[35], (2304, 2304));
}

fn err(j: Value) -> String {
    LlavaOnevisionConfig::from_json(&j).unwrap_err().to_string()
}

#[test]
fn unsupported_values_name_the_key_and_the_accepted_values() {
    let mut j = hf5();
    j["vision_feature_select_strategy"] = json!("default");
    let e = err(j);
    assert!(
        e.contains("vision_feature_select_strategy") && e.contains("full"),
        "{e}"
    );

    let mut j = hf5();
    j["projector_hidden_act"] = json!("relu6");
    let e = err(j);
    assert!(
        e.contains("projector_hidden_act") && e.contains("gelu_pytorch_tanh"),
        "{e}"
    );

    let mut j = hf5();
    j["vision_aspect_ratio"] = json!("square");
    let e = err(j);
    assert!(
        e.contains("vision_aspect_ratio") && e.contains("anyres_max_N"),
        "{e}"
    );

    let mut j = hf5();
    j["vision_feature_layer"] = json!([-2, -1]);
    assert!(err(j).contains("vision_feature_layer"));

    let mut j = hf5();
    j["vision_feature_layer"] = json!(-40);
    assert!(err(j).contains("outside"));

    let mut j = hf5();
    j["text_config"]["rope_parameters"]["rope_type"] = json!("yarn");
    assert!(err(j).contains("rope_type"));

    let mut j = hf5();
    j["text_config"]["num_key_value_heads"] = json!(3);
    assert!(err(j).contains("num_key_value_heads"));

    let e = err(json!({"model_type": "bert"}));
    assert!(
        e.contains("model_type") && e.contains("llava_onevision"),
        "{e}"
    );

    let e = err(
        json!({"architectures": ["LlavaQwenForCausalLM"], "mm_vision_tower": "openai/clip-vit-large-patch14"}),
    );
    assert!(
        e.contains("mm_vision_tower") && e.contains("siglip-so400m"),
        "{e}"
    );

    let e = err(
        json!({"architectures": ["LlavaQwenForCausalLM"], "mm_vision_tower": "google/siglip-so400m-patch14-384", "mm_spatial_pool_mode": "average"}),
    );
    assert!(
        e.contains("mm_spatial_pool_mode") && e.contains("bilinear"),
        "{e}"
    );

    let e = err(json!({"model_type": "llava_onevision", "text_config": {"hidden_size": "big"}}));
    assert!(e.contains("text_config"), "{e}");
}

#[test]
fn kv_heads_default_like_qwen2config() {
    let with = |kv: Option<Value>| {
        let mut t = json!({"num_attention_heads": 64, "hidden_size": 128});
        if let Some(v) = kv {
            t["num_key_value_heads"] = v;
        }
        LlavaOnevisionConfig::from_json(&json!({"model_type": "llava_onevision", "text_config": t}))
            .map(|c| c.text.num_key_value_heads)
    };
    assert_eq!(with(None).unwrap(), 32, "absent: the class default");
    assert_eq!(
        with(Some(Value::Null)).unwrap(),
        64,
        "null: one per attention head"
    );
    assert_eq!(with(Some(json!(4))).unwrap(), 4);
}
