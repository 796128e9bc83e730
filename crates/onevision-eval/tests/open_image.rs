//! The open-answer image recipes (ai2d, chartqa, docvqa_val, textvqa_val, pope, mme) against
//! what lmms-eval 0.2.1 builds from the same documents: the prompt (doc_to_text with the
//! yaml's kwargs), the visual, doc_to_target, and the yaml's dataset, max_new_tokens, filter,
//! metrics and version. The references are the `prompt` / `target` / `yaml` keys that
//! tools/eval_fixtures/make_open_image.py writes into fixtures/eval/metrics/<task>.json (the
//! scores themselves are checked by tests/metrics.rs). The small parquet files beside them
//! (fixtures/eval/data/) must have the columns each recipe reads, where the Hub has them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use onevision_eval::doc::{EncodedImage, Row, Visual};
use onevision_eval::task::{Aggregation, Context};
use onevision_eval::tasks;
use serde_json::Value;

const TASKS: [&str; 6] = [
    "ai2d",
    "chartqa",
    "docvqa_val",
    "textvqa_val",
    "pope",
    "mme",
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/eval")
}

fn load(task: &str) -> Value {
    let path = fixtures().join("metrics").join(format!("{task}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn task(name: &str) -> Box<dyn onevision_eval::task::Task> {
    tasks::find(name)
        .unwrap()
        .into_iter()
        .find(|t| t.name() == name)
        .unwrap()
}

#[test]
fn prompts_visuals_and_targets_equal_lmms_eval() {
    let image = EncodedImage {
        bytes: vec![1, 2, 3],
        path: Some("x.png".into()),
    };
    for name in TASKS {
        let fx = load(name);
        let t = task(name);
        let cases = fx["cases"].as_array().unwrap();
        let mut bad = vec![];
        for (i, case) in cases.iter().enumerate() {
            let doc = case["doc"].as_object().unwrap().clone();
            let row = Row {
                fields: doc.clone(),
                images: BTreeMap::from([("image".to_string(), vec![image.clone()])]),
            };
            match t.prompt(&row, &Context::default()) {
                Ok(p) => {
                    if case["prompt"] != p.text.as_str() {
                        bad.push(format!(
                            "case {i}: prompt {:?} vs {}",
                            p.text, case["prompt"]
                        ));
                    }
                    if p.visual != Visual::Images(vec![image.clone()]) {
                        bad.push(format!("case {i}: visual {:?}", p.visual));
                    }
                }
                Err(e) => bad.push(format!("case {i}: prompt failed: {e}")),
            }
            if t.target(&doc) != case["target"] {
                bad.push(format!(
                    "case {i}: target {} vs {}",
                    t.target(&doc),
                    case["target"]
                ));
            }
        }
        assert!(
            bad.is_empty(),
            "{name}: {} differences:\n{}",
            bad.len(),
            bad[..bad.len().min(20)].join("\n")
        );
        println!("{name:<12} {} prompts and targets ok", cases.len());
    }
}

#[test]
fn recipe_follows_the_yaml() {
    for name in TASKS {
        let fx = load(name);
        let y = &fx["yaml"];
        let t = task(name);
        let ds = t.dataset();
        assert_eq!(Value::from(ds.repo.clone()), y["dataset_path"], "{name}");
        assert_eq!(
            ds.config.clone().map(Value::from).unwrap_or(Value::Null),
            y["dataset_name"],
            "{name}"
        );
        assert_eq!(Value::from(ds.split.clone()), y["test_split"], "{name}");
        // lmms-eval's llava_onevision generates 1024 tokens when the yaml sets none.
        let want_tokens = y["max_new_tokens"].as_u64().unwrap_or(1024) as usize;
        assert_eq!(t.max_new_tokens(), want_tokens, "{name}");
        assert_eq!(Value::from(t.filter_name()), y["filter"], "{name}");
        assert_eq!(t.version().as_f64(), y["version"].as_f64(), "{name}");
        assert_eq!(t.version().is_null(), y["version"].is_null(), "{name}");
        let want: Vec<(String, bool)> = y["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m[0].as_str().unwrap().to_string(), m[1] == "mean"))
            // textvqa's `submission` aggregation writes a file and returns None: no score.
            .filter(|(m, _)| !(name == "textvqa_val" && m == "submission"))
            .collect();
        let got: Vec<(String, bool)> = t
            .metrics()
            .iter()
            .map(|m| (m.name.clone(), matches!(m.aggregation, Aggregation::Mean)))
            .collect();
        assert_eq!(got, want, "{name}");
    }
}

/// Column names of a parquet file, from its footer.
fn parquet_columns(path: &Path) -> Vec<String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = SerializedFileReader::new(file).unwrap();
    reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect()
}

#[test]
fn dataset_fixtures_have_the_columns_read() {
    for name in TASKS {
        let spec = task(name).dataset();
        let dir = fixtures()
            .join("data")
            .join(&spec.repo)
            .join(spec.config.as_deref().unwrap_or("data"));
        let path = dir.join(format!("{}-00000-of-00001.parquet", spec.split));
        let cols = parquet_columns(&path);
        for c in &spec.columns {
            assert!(
                cols.contains(c),
                "{name}: {} lacks {c} (has {cols:?})",
                path.display()
            );
        }
    }
}
