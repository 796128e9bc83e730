//! `num_image_tokens` against transformers' `_get_number_of_features` on the committed table
//! (fixtures/models/token_counts.json, tools/fixtures/make_token_table.py): 2100 sizes, the
//! spec's worked examples first, under anyres_max_9 and anyres_max_4.

use std::collections::HashMap;
use std::path::PathBuf;

use onevision_models::config::AspectRatio;
use onevision_models::LlavaOnevisionConfig;
use onevision_processor::processor::{num_image_tokens, num_video_tokens};

#[derive(serde::Deserialize)]
struct Table {
    sizes_hw: Vec<(usize, usize)>,
    counts: HashMap<String, Vec<usize>>,
}

fn config(ratio: AspectRatio) -> LlavaOnevisionConfig {
    let mut c =
        LlavaOnevisionConfig::from_json(&serde_json::json!({"model_type": "llava_onevision"}))
            .expect("default config");
    c.aspect_ratio = ratio;
    c
}

#[test]
fn image_token_counts_equal_transformers() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/token_counts.json");
    let table: Table = serde_json::from_str(&std::fs::read_to_string(path).expect("token table"))
        .expect("token table JSON");
    assert!(table.sizes_hw.len() >= 2000, "{}", table.sizes_hw.len());
    for (key, ratio) in [
        ("anyres_max_9", AspectRatio::AnyResMax(9)),
        ("anyres_max_4", AspectRatio::AnyResMax(4)),
    ] {
        let cfg = config(ratio);
        let mut mismatches = vec![];
        for (&(h, w), &want) in table.sizes_hw.iter().zip(&table.counts[key]) {
            let got = num_image_tokens(h, w, &cfg);
            if got != want {
                mismatches.push(format!("{h}x{w}: {got} != {want}"));
            }
        }
        assert!(
            mismatches.is_empty(),
            "{key}: {} mismatches, e.g. {:?}",
            mismatches.len(),
            &mismatches[..mismatches.len().min(5)]
        );
    }
    // The spec's worked examples (§2.5).
    let cfg = config(AspectRatio::AnyResMax(9));
    for ((h, w), n) in [
        ((100, 100), 1485),
        ((480, 640), 2929),
        ((899, 1024), 6551),
        ((1080, 1920), 7269),
        ((1156, 946), 8765),
        ((768, 1920), 8073),
        ((3000, 3000), 7371),
    ] {
        assert_eq!(num_image_tokens(h, w, &cfg), n, "{h}x{w}");
    }
    assert_eq!(num_video_tokens(8, &cfg), 1569);
    assert_eq!(num_video_tokens(32, &cfg), 6273);
}
