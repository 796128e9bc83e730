//! The multiple-choice image recipes (mmbench_en_dev, scienceqa_img, mmstar, realworldqa,
//! seedbench, mmmu_val) against what lmms-eval 0.2.1 builds from the same documents: the
//! prompt (doc_to_text with the yaml's default kwargs), the visual (which image columns
//! doc_to_visual returns, in order), doc_to_target; and the yaml's dataset, max_new_tokens,
//! filter, metrics. The references are the `prompt` / `visual` / `target` keys that
//! tools/eval_fixtures/make_choice_image.py writes into fixtures/eval/metrics/<task>.json (the
//! scores are checked by tests/metrics.rs). The small parquet files in fixtures/eval/data/
//! are read through the dataset layer, and every row must give a prompt.

use std::collections::BTreeMap;
use std::path::PathBuf;

use onevision_eval::dataset::Dataset;
use onevision_eval::doc::{EncodedImage, Row, Visual};
use onevision_eval::task::{Aggregation, Context, Task};
use onevision_eval::tasks;
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/eval")
}

fn load(task: &str) -> Value {
    let path = fixtures().join("metrics").join(format!("{task}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn task(name: &str) -> Box<dyn Task> {
    tasks::find(name)
        .unwrap()
        .into_iter()
        .find(|t| t.name() == name)
        .unwrap()
}

/// A stand-in image whose path names the column (and list position) it came from.
fn marker(name: &str) -> EncodedImage {
    EncodedImage {
        bytes: vec![0],
        path: Some(name.to_string()),
    }
}

/// The row a case's document came from: its fields, and marker images where lmms-eval's doc
/// had images (`image`, `image_1`..`image_7` when doc_to_visual used them, or a list).
fn row_of(case: &Value) -> Row {
    let fields = case["doc"].as_object().unwrap().clone();
    let mut images = BTreeMap::new();
    match case.get("visual").and_then(Value::as_array) {
        None => {
            images.insert("image".to_string(), vec![marker("image")]);
        }
        Some(cols) => {
            for c in cols.iter().map(|c| c.as_str().unwrap()) {
                match c.strip_prefix("image[") {
                    // a list column: image[0], image[1], ...
                    Some(_) => images
                        .entry("image".to_string())
                        .or_insert_with(Vec::new)
                        .push(marker(c)),
                    None => {
                        images.insert(c.to_string(), vec![marker(c)]);
                    }
                }
            }
            for i in 1..=7 {
                images.entry(format!("image_{i}")).or_insert_with(Vec::new);
            }
            images.entry("image".to_string()).or_insert_with(Vec::new);
        }
    }
    Row { fields, images }
}

const TASKS: [&str; 6] = [
    "mmbench_en_dev",
    "scienceqa_img",
    "mmstar",
    "realworldqa",
    "seedbench",
    "mmmu_val",
];

#[test]
fn prompts_visuals_and_targets_equal_lmms_eval() {
    for name in TASKS {
        let fx = load(name);
        let t = task(name);
        let mut bad = vec![];
        for (i, case) in fx["cases"].as_array().unwrap().iter().enumerate() {
            let row = row_of(case);
            let want_visual: Vec<String> = match case.get("visual").and_then(Value::as_array) {
                Some(cols) => cols
                    .iter()
                    .map(|c| c.as_str().unwrap().to_string())
                    .collect(),
                None => vec!["image".into()],
            };
            match t.prompt(&row, &Context::default()) {
                Ok(p) => {
                    if case["prompt"] != p.text.as_str() {
                        bad.push(format!(
                            "case {i}: prompt {:?}\n   lmms-eval {}",
                            p.text, case["prompt"]
                        ));
                    }
                    let got: Vec<String> = match &p.visual {
                        Visual::Images(v) => v.iter().filter_map(|im| im.path.clone()).collect(),
                        other => panic!("{name}: unexpected visual {other:?}"),
                    };
                    if got != want_visual {
                        bad.push(format!(
                            "case {i}: visual {got:?}, lmms-eval {want_visual:?}"
                        ));
                    }
                }
                Err(e) => bad.push(format!("case {i}: prompt failed: {e}")),
            }
            let target = t.target(case["doc"].as_object().unwrap());
            if target != case["target"] {
                bad.push(format!(
                    "case {i}: target {target}, lmms-eval {}",
                    case["target"]
                ));
            }
        }
        assert!(
            bad.is_empty(),
            "{name}:\n{}",
            bad[..bad.len().min(10)].join("\n")
        );
    }
}

/// (task, repo, config, split, max_new_tokens, filter, metrics as `M:` mean / `C:` custom)
type YamlFacts<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    &'a str,
    usize,
    &'a str,
    &'a [&'a str],
);

#[test]
fn yaml_settings() {
    let want: [YamlFacts; 6] = [
        (
            "mmbench_en_dev",
            "lmms-lab/MMBench",
            Some("en"),
            "dev",
            1024,
            "none",
            &["C:gpt_eval_score"],
        ),
        (
            "scienceqa_img",
            "lmms-lab/ScienceQA",
            Some("ScienceQA-IMG"),
            "test",
            16,
            "none",
            &["M:exact_match"],
        ),
        (
            "mmstar",
            "Lin-Chen/MMStar",
            None,
            "val",
            1024,
            "none",
            &[
                "C:coarse perception",
                "C:fine-grained perception",
                "C:instance reasoning",
                "C:logical reasoning",
                "C:science & technology",
                "C:math",
                "C:average",
            ],
        ),
        (
            "realworldqa",
            "lmms-lab/RealWorldQA",
            None,
            "test",
            16,
            "flexible-extract",
            &["M:exact_match"],
        ),
        (
            "seedbench",
            "lmms-lab/SEED-Bench",
            None,
            "test",
            1024,
            "none",
            &["C:seed_image", "C:seed_video", "C:seed_all"],
        ),
        (
            "mmmu_val",
            "lmms-lab/MMMU",
            None,
            "validation",
            16,
            "none",
            &["C:mmmu_acc"],
        ),
    ];
    for (name, repo, config, split, tokens, filter, metrics) in want {
        let t = task(name);
        let d = t.dataset();
        assert_eq!(
            (d.repo.as_str(), d.config.as_deref(), d.split.as_str()),
            (repo, config, split),
            "{name}"
        );
        assert_eq!(t.max_new_tokens(), tokens, "{name}");
        assert_eq!(t.filter_name(), filter, "{name}");
        let got: Vec<String> = t
            .metrics()
            .iter()
            .map(|m| {
                let kind = match m.aggregation {
                    Aggregation::Mean => "M",
                    Aggregation::Custom(_) => "C",
                };
                format!("{kind}:{}", m.name)
            })
            .collect();
        assert_eq!(got, metrics, "{name}");
        assert_eq!(t.version(), Value::from(0.0), "{name}");
    }
}

#[test]
fn data_fixtures_read_through_the_dataset_layer() {
    let data = fixtures().join("data");
    let no_cache = PathBuf::from("/nonexistent-hf-cache");
    for name in TASKS {
        let t = task(name);
        let spec = t.dataset();
        let ds = Dataset::for_task(&spec, Some(&data), &no_cache)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(ds.len() >= 3, "{name}: {} rows", ds.len());
        for row in ds.rows(0..ds.len()).unwrap() {
            let row = row.unwrap();
            let p = t
                .prompt(&row, &Context::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            match p.visual {
                Visual::Images(v) => {
                    assert!(!v.is_empty() && v.iter().all(|i| !i.bytes.is_empty()))
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}
