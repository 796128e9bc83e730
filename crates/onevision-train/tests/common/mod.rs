//! Shared helpers of the training tests: fixture paths, a run configuration over the fixture
//! data, and tensor comparisons with their measured deviations.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use onevision_nn::ComputeDType;
use onevision_train::labels::{LabelMask, Template};
use onevision_train::optim::Group;
use onevision_train::settings::{Images, Length, TrainConfig};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn grads_dir() -> PathBuf {
    root().join("fixtures/train/grads")
}

pub fn checkpoint(model: &str) -> PathBuf {
    root()
        .join("fixtures/models")
        .join(model)
        .join("checkpoint")
}

pub fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(grads_dir().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest.json is JSON")
}

/// A configuration over the fixture data: all parts, qwen_1_5, the checkpoint's AnyRes rule,
/// file order, one step, f32, no progress bar.
pub fn config(model: &str, data: &str, out: &Path) -> TrainConfig {
    TrainConfig {
        model: checkpoint(model),
        data: grads_dir().join("data").join(data),
        image_folder: Some(root().join("fixtures/images/photos")),
        video_folder: Some(root().join("fixtures/video")),
        output: out.to_path_buf(),
        log: out.join("train_log.jsonl"),
        stage: None,
        parts: vec![Group::Projector, Group::Vision, Group::Language],
        lr: 1e-5,
        vision_lr: 2e-6,
        projector_lr: 1e-5,
        weight_decay: 0.0,
        warmup_ratio: 0.0,
        template: Template::Qwen15,
        label_mask: LabelMask::Original,
        images: Images::Checkpoint,
        length: Length::Steps(1),
        batch_size: 1,
        grad_accum: 1,
        max_grad_norm: 1.0,
        seed: 0,
        shuffle: false,
        dtype: ComputeDType::F32,
        gradient_checkpointing: false,
        max_length: 32768,
        video_fps: 1.0,
        frames_upbound: 32,
        save_steps: None,
        resume: None,
        dump_grads: None,
        skip_bad_samples: false,
        progress: false,
    }
}

pub fn load(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f64>())
        .expect("a numeric tensor")
}

pub fn i64s(t: &Tensor) -> Vec<i64> {
    t.to_dtype(DType::I64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<i64>())
        .expect("an integer tensor")
}

/// (max |a - b|, max |b|) over two tensors of the same shape.
pub fn deviation(a: &Tensor, b: &Tensor) -> (f64, f64) {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let (a, b) = (f64s(a), f64s(b));
    let dev = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let scale = b.iter().map(|y| y.abs()).fold(0.0, f64::max);
    (dev, scale)
}
