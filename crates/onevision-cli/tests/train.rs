//! `onevision train` as a user runs it.
//!
//! - What it saves loads in transformers and in onevision with equal logits: the generator
//!   (tools/fixtures/make_train_fixtures.py --check-saved) ran this binary with the same flags
//!   and recorded transformers' logits of its output (fixtures/train/grads/saved_logits.*);
//!   here onevision loads its own output of the same run and must give those logits.
//! - Bad data ends with exit code 1 and a message naming the file, the line, the sample and
//!   what was expected, before any step runs; `--skip-bad-samples` trains on the rest and
//!   says how many were skipped; `--check-data` reports modalities, token lengths and problems.
//! - Bad flags and a wrong checkpoint are refused with a clear message.

use std::path::PathBuf;
use std::process::{Command, Output};

use candle_core::{DType, Device, Tensor};
use onevision_models::LlavaOnevision;
use onevision_nn::ComputeDType;
use onevision_processor::{DecodeLimits, Processor};
use onevision_train::data::{self, DataOptions};
use onevision_train::example::{prepare, ImageStrategy, PrepSettings};
use onevision_train::labels::{LabelMask, Template};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn onevision(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_onevision"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run onevision")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const DATA: &str = "fixtures/train/grads/data";

#[test]
fn saved_checkpoint_gives_transformers_logits() {
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/train/grads/saved_logits.json")).unwrap(),
    )
    .unwrap();
    let want = candle_core::safetensors::load(
        root().join("fixtures/train/grads/saved_logits.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let extra: Vec<String> = meta["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    for name in ["tied", "gqa"] {
        let tmp = tempfile::tempdir().unwrap();
        let out_dir = tmp.path().to_str().unwrap().to_string();
        let ckpt = format!("fixtures/models/{name}/checkpoint");
        let mut args = vec![
            "train",
            "--model",
            &ckpt,
            "--data",
            "fixtures/train/grads/data/run.jsonl",
            "--image-folder",
            "fixtures/images/photos",
            "--video-folder",
            "fixtures/video",
            "--output",
            &out_dir,
        ];
        args.extend(extra.iter().map(String::as_str));
        let out = onevision(&args);
        assert!(
            out.status.success(),
            "{name}: train failed: {}",
            stderr(&out)
        );

        let (model, report) =
            LlavaOnevision::load(tmp.path(), ComputeDType::F32, &Device::Cpu).unwrap();
        assert!(
            report
                .unused
                .iter()
                .all(|u| !u.starts_with("language_model")),
            "{name}: unused language tensors {:?}",
            report.unused
        );
        let proc = Processor::from_dir(tmp.path(), model.config()).unwrap();
        let ds = data::load(
            &root().join(DATA).join("anyres.jsonl"),
            &DataOptions {
                image_folder: Some(root().join("fixtures/images/photos")),
                ..Default::default()
            },
        )
        .unwrap();
        let settings = PrepSettings {
            template: Template::Qwen15,
            mask: LabelMask::Original,
            max_length: 32768,
            image_strategy: ImageStrategy::AnyRes,
            video_fps: 1.0,
            frames_upbound: 32,
            limits: DecodeLimits::default(),
        };
        let ex = prepare(&ds.samples[0], &proc, &settings, &Device::Cpu).unwrap();
        let input = onevision_models::MultimodalInput {
            input_ids: ex.input_ids.clone(),
            media: ex.media.clone(),
        };
        let hidden = model.forward(&input, &mut model.new_cache()).unwrap(); // (1, t, H)
        let t = hidden.dim(1).unwrap();
        let logits = model
            .logits(&hidden.narrow(1, t - 8, 8).unwrap().squeeze(0).unwrap())
            .unwrap();
        let reference = &want[&format!("{name}.logits_last8")];
        let diff = (logits.to_dtype(DType::F32).unwrap() - reference)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let scale = reference
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        println!("{name}: logits of the saved checkpoint, max|Δ| {diff:.2e} of {scale:.2e}");
        assert!(
            diff <= 2e-5 * scale,
            "{name}: onevision's logits of its saved checkpoint differ from transformers' by {diff}"
        );
        let _: &Tensor = reference;
    }
}

/// Writes a data file with one bad sample among good ones, in a temp dir.
fn bad_data(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("mixed.jsonl");
    let good = std::fs::read_to_string(root().join(DATA).join("text.jsonl")).unwrap();
    let lines = [
        good.trim().to_string(),
        r#"{"id": "two-markers", "image": "astronaut.png", "conversations": [{"from": "human", "value": "<image><image> hi"}, {"from": "gpt", "value": "x"}]}"#.to_string(),
        r#"{"id": "gone", "image": "no_such.png", "conversations": [{"from": "human", "value": "<image> hi"}, {"from": "gpt", "value": "x"}]}"#.to_string(),
        "{ not json".to_string(),
        good.trim().to_string(),
    ];
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn bad_data_is_refused_before_any_step_then_skipped_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let data = bad_data(tmp.path());
    let data = data.to_str().unwrap();
    let out_dir = tmp.path().join("out");
    let out_dir = out_dir.to_str().unwrap();
    let base = [
        "train",
        "--model",
        "fixtures/models/tied/checkpoint",
        "--data",
        data,
        "--image-folder",
        "fixtures/images/photos",
        "--output",
        out_dir,
        "--max-steps",
        "1",
        "--no-progress",
    ];
    let out = onevision(&base);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("3 problem(s) in the training data"), "{err}");
    assert!(
        err.contains("mixed.jsonl:2 (id two-markers): 2 `<image>` markers for 1 image; expected one marker per image"),
        "{err}"
    );
    assert!(
        err.contains("mixed.jsonl:3 (id gone): image \"no_such.png\" not found"),
        "{err}"
    );
    assert!(err.contains("mixed.jsonl:4: not valid JSON"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !std::path::Path::new(out_dir)
            .join("train_log.jsonl")
            .exists(),
        "no step may run"
    );

    let mut skip = base.to_vec();
    skip.push("--skip-bad-samples");
    let out = onevision(&skip);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("skipping 3 bad sample(s)"), "{err}");
    assert!(err.contains("samples          2"), "{err}");
    let log =
        std::fs::read_to_string(std::path::Path::new(out_dir).join("train_log.jsonl")).unwrap();
    assert!(
        log.contains("\"skipped_samples\":3"),
        "the log counts the skipped samples: {log}"
    );
}

#[test]
fn check_data_reports_modalities_lengths_and_problems() {
    let args = [
        "train",
        "--check-data",
        "--model",
        "fixtures/models/tied/checkpoint",
        "--data",
        "fixtures/train/grads/data/run.jsonl",
        "--image-folder",
        "fixtures/images/photos",
        "--video-folder",
        "fixtures/video",
        "--max-length",
        "3800",
    ];
    let out = onevision(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{}", text, stderr(&out));
    for want in [
        "samples: 5",
        "text          1",
        "single image  2",
        "multi-image   1",
        "video         1",
        "tokens per sample (media included): min 152, p50 1563, p90 3837, p99 3837, max 3837",
        "truncated at --max-length 3800: 1",
        "run.jsonl:1 (id astro): 3837 -> 3800 tokens",
        "problems: 0",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // Samples whose media alone exceed --max-length would be skipped: reported as problems.
    let mut short = args.to_vec();
    short[11] = "2000";
    let out = onevision(&short);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("problems: 2"), "{text}");
    assert!(
        text.contains("run.jsonl:1 (id astro): would be skipped: its media take 3699 tokens, more than --max-length 2000"),
        "{text}"
    );
    // A bad set: exit 1, every problem listed.
    let tmp = tempfile::tempdir().unwrap();
    let data = bad_data(tmp.path());
    let mut args = args.to_vec();
    args[5] = data.to_str().unwrap();
    let out = onevision(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("problems: 3"), "{text}");
}

#[test]
fn bad_flags_and_checkpoints_are_refused() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "train",
                "--model",
                "fixtures/models/tied/checkpoint",
                "--data",
                "x.jsonl",
                "--output",
                "/tmp/x",
                "--stage",
                "3",
            ],
            "unknown stage \"3\"; expected one of 1, 1.5, 2-si, 2-ov",
        ),
        (
            &[
                "train",
                "--model",
                "fixtures/models/tied/checkpoint",
                "--data",
                "x.jsonl",
                "--output",
                "/tmp/x",
                "--tunable-parts",
                "projector,eyes",
            ],
            "unknown part \"eyes\"",
        ),
        (
            &[
                "train",
                "--model",
                "fixtures/models/tied/checkpoint",
                "--data",
                "x.jsonl",
                "--output",
                "/tmp/x",
                "--batch-size",
                "0",
            ],
            "--batch-size must be at least 1",
        ),
        (
            &[
                "train",
                "--model",
                "fixtures/models/tied/checkpoint",
                "--data",
                "x.jsonl",
                "--output",
                "/tmp/x",
                "--dtype",
                "f16",
            ],
            "--dtype f16 is not supported for training",
        ),
        (
            &[
                "train",
                "--model",
                "fixtures/images",
                "--data",
                "fixtures/train/grads/data/text.jsonl",
                "--output",
                "/tmp/x",
            ],
            "config.json",
        ),
        (
            &[
                "train",
                "--model",
                "fixtures/models/tied/checkpoint",
                "--data",
                "fixtures/train/grads/data/text.jsonl",
                "--output",
                "/tmp/x",
                "--resume",
                "fixtures/models/tied/checkpoint",
            ],
            "cannot resume from",
        ),
    ];
    for (args, want) in cases {
        let out = onevision(args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
