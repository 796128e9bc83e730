//! The vision tower's sigmoid image-text pretraining on a tiny checkpoint: gradients against
//! central finite differences, a short run on a tiny world (the loss falls, two runs are
//! identical), the output checkpoint (only the tower's tensors change; it loads), and the
//! errors for unusable data and settings.
//!
//! The tiny checkpoint is fixtures/models/tied/checkpoint (SigLIP hidden 32, 2 layers) with a
//! 56-px tile (a 4x4 patch grid instead of 27x27): config.json and processor_config.json edited,
//! the position embedding cut to its first 16 rows.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use onevision_models::{LlavaOnevision, LlavaOnevisionConfig};
use onevision_nano::vision_pretrain::{
    caption_pairs, forward_backward, pretrain_vision, Batch, ImageTextModel, VisionPretrainConfig,
    LOG_FILE,
};
use onevision_nn::ComputeDType;
use onevision_processor::Processor;
use onevision_train::optim::Group;
use onevision_train::params::ModelState;
use onevision_train::Rng;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::{json, Value};

const TILE: usize = 56;
const GRID_TOKENS: usize = (TILE / 14) * (TILE / 14);

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/tied/checkpoint")
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// The bytes of f32 little-endian `data` as bf16.
fn to_bf16(data: &[u8]) -> Vec<u8> {
    data.chunks_exact(4)
        .flat_map(|c| {
            let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            half::bf16::from_f32(x).to_le_bytes()
        })
        .collect()
}

/// The tiny checkpoint in `dir`, its tensors stored as f32 or (with `bf16`) bf16.
fn tiny_checkpoint(dir: &Path, bf16: bool) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for e in std::fs::read_dir(fixture()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    let pinpoints = json!([[56, 56], [56, 112], [112, 56], [112, 112]]);
    edit_json(&dir.join("config.json"), |v| {
        v["vision_config"]["image_size"] = json!(TILE);
        v["image_grid_pinpoints"] = pinpoints.clone();
        if bf16 {
            v["dtype"] = json!("bfloat16");
        }
    });
    edit_json(&dir.join("processor_config.json"), |v| {
        v["image_processor"]["size"] = json!({"height": TILE, "width": TILE});
        v["image_processor"]["image_grid_pinpoints"] = pinpoints.clone();
        v["video_processor"]["size"] = json!({"height": TILE, "width": TILE});
        v["num_image_tokens"] = json!(GRID_TOKENS);
    });
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = vec![];
    for (name, view) in st.tensors() {
        assert_eq!(view.dtype(), Dtype::F32, "{name}");
        let mut shape = view.shape().to_vec();
        let mut data = view.data().to_vec();
        if name.ends_with("embeddings.position_embedding.weight") {
            shape[0] = GRID_TOKENS;
            data.truncate(GRID_TOKENS * shape[1] * 4);
        }
        if bf16 {
            data = to_bf16(&data);
        }
        owned.push((name, shape, data));
    }
    let dtype = if bf16 { Dtype::BF16 } else { Dtype::F32 };
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, s, d)| (n.clone(), TensorView::new(dtype, s.clone(), d).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
    dir.to_path_buf()
}

/// A world of `count` samples at 64 px in `dir`; returns its train.json.
fn tiny_world(dir: &Path, count: usize) -> PathBuf {
    let opts = onevision_world::Options {
        image_size: 64,
        ..Default::default()
    };
    let summary =
        onevision_world::generate_with(dir, onevision_world::Split::Train, 1, count, &opts)
            .unwrap();
    summary.json
}

fn model_config(dir: &Path) -> LlavaOnevisionConfig {
    LlavaOnevisionConfig::from_file(&dir.join("config.json")).unwrap()
}

/// A seeded batch of `b` random tiles in [-1, 1] and `b` distinct texts.
fn random_batch(b: usize, seed: u64) -> Batch {
    let dev = Device::Cpu;
    let mut rng = Rng::new(seed);
    let n = b * 3 * TILE * TILE;
    let px: Vec<f32> = (0..n)
        .map(|_| (rng.next_u64() >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0)
        .collect();
    let pixels = Tensor::from_vec(px, (b, 3, TILE, TILE), &dev).unwrap();
    let texts: Vec<Vec<u32>> = (0..b as u32)
        .map(|i| (0..3 + i).map(|k| (7 * i + 3 * k + 1) % 250).collect())
        .collect();
    let refs: Vec<&[u32]> = texts.iter().map(Vec::as_slice).collect();
    Batch::new(pixels, &refs, &dev).unwrap()
}

fn loss_of(model: &ImageTextModel, batch: &Batch) -> f64 {
    let (loss, _) = model.loss(batch).unwrap();
    loss.to_scalar::<f32>().unwrap() as f64
}

fn l2(t: &Tensor) -> f64 {
    (t.sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64)
        .sqrt()
}

/// (1) The gradient of the loss matches central differences of the loss, along two directions
/// in each of a few tower weights and in t' and b: the analytic gradient's own (whose
/// derivative is |g| exactly when the gradient is right, which catches a wrong sign, a missing
/// factor or a missing path) and a seeded random one. In f32: the loss (about 10) carries
/// rounding noise of about 1e-6, so the steps are 3e-3 and the tolerance 1% of |g| + 1e-4
/// (the largest error seen is 0.06%; detaching the softplus's exp term, exp(t'), the L2 norm or
/// the patch mean each fails it, the first by 3%).
#[test]
fn gradients_match_finite_differences() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tiny_checkpoint(&tmp.path().join("ckpt"), false);
    let cfg = model_config(&ckpt);
    let dev = Device::Cpu;
    let model = ImageTextModel::load(&ckpt, &cfg, 320, 16, 3, &dev).unwrap();
    let batch = random_batch(4, 11);
    let out = forward_backward(&model, &batch).unwrap();
    assert!((out.loss - loss_of(&model, &batch)).abs() < 1e-6);

    let names = [
        "model.vision_tower.embeddings.patch_embedding.weight",
        "model.vision_tower.embeddings.position_embedding.weight",
        "model.vision_tower.encoder.layers.0.self_attn.q_proj.weight",
        "model.vision_tower.encoder.layers.0.layer_norm1.weight",
        "model.vision_tower.encoder.layers.1.mlp.fc2.bias",
        "model.vision_tower.encoder.layers.1.self_attn.v_proj.weight",
        "siglip_heads.image_projection.weight",
        "siglip_heads.text_embedding.weight",
        "siglip_heads.logit_scale",
        "siglip_heads.logit_bias",
    ];
    let mut rng = Rng::new(5);
    for name in names {
        let p = model
            .params()
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no parameter {name}"));
        let g = out
            .grads
            .get(name)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let gnorm = l2(g);
        assert!(gnorm > 1e-3, "{name}: |g| = {gnorm}, too small to test");
        let w0 = p.var.as_tensor().copy().unwrap();
        let n = w0.elem_count();
        let random: Vec<f32> = (0..n)
            .map(|_| if rng.next_u64() & 1 == 0 { 1.0 } else { -1.0 })
            .collect();
        let random =
            (Tensor::from_vec(random, w0.shape(), &dev).unwrap() / (n as f64).sqrt()).unwrap();
        let along_g = (g / gnorm).unwrap();
        for (what, d) in [("gradient", &along_g), ("random", &random)] {
            let h = 3e-3;
            let at = |s: f64| {
                p.var.set(&(&w0 + (d * (s * h)).unwrap()).unwrap()).unwrap();
                loss_of(&model, &batch)
            };
            let fd = (at(1.0) - at(-1.0)) / (2.0 * h);
            p.var.set(&w0).unwrap();
            let analytic = (g * d)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64;
            let tol = 1e-2 * gnorm + 1e-4;
            assert!(
                (fd - analytic).abs() <= tol,
                "{name} along the {what} direction: finite differences {fd:.6}, gradient {analytic:.6} (|g| {gnorm:.6}, tolerance {tol:.2e})"
            );
        }
    }
}

fn read_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn pretrain_config(ckpt: &Path, data: &Path, out: &Path) -> VisionPretrainConfig {
    let mut cfg =
        VisionPretrainConfig::new(ckpt.to_path_buf(), data.to_path_buf(), out.to_path_buf());
    cfg.steps = 30;
    cfg.batch_size = 8;
    cfg.lr = 3e-3;
    cfg.warmup_ratio = 0.1;
    cfg.weight_decay = 1e-4;
    cfg.seed = 4;
    cfg.embed_dim = 32;
    cfg
}

/// (2) A few dozen steps on a tiny world lower the loss, and a second run with the same
/// settings writes the same bytes.
/// (3) Only the tower's tensors change (same names, dtype, shapes; every other tensor's bytes
/// and every other file as they were), and the output loads as a model and as a trainer state.
#[test]
fn pretraining_lowers_the_loss_is_deterministic_and_keeps_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tiny_checkpoint(&tmp.path().join("ckpt"), true);
    let data = tiny_world(&tmp.path().join("world"), 480);
    let pairs = caption_pairs(&data, None).unwrap();
    assert!(pairs.len() >= 16, "{} caption pairs", pairs.len());
    assert!(pairs.iter().all(|p| p.image.is_file()));

    let out_a = tmp.path().join("a");
    let sa = pretrain_vision(&pretrain_config(&ckpt, &data, &out_a)).unwrap();
    assert_eq!(sa.steps, 30);
    assert_eq!(sa.losses.len(), 30);
    let first: f64 = sa.losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = sa.losses[25..].iter().sum::<f64>() / 5.0;
    assert!(
        last < 0.8 * first,
        "loss did not fall: first five {first:.4}, last five {last:.4}: {:?}",
        sa.losses
    );
    assert!(sa.samples_per_s > 0.0 && sa.final_accuracy >= 0.0);
    eprintln!(
        "{} pairs, {} steps of 8 in {:.2} s: {:.1} samples/s, loss {:.4} -> {:.4}, accuracy {:.3}",
        sa.pairs,
        sa.steps,
        sa.seconds,
        sa.samples_per_s,
        sa.losses[0],
        sa.final_loss,
        sa.final_accuracy
    );

    let log = read_log(&out_a.join(LOG_FILE));
    assert_eq!(log.len(), 30);
    for (k, line) in log.iter().enumerate() {
        assert_eq!(line["step"], json!(k + 1));
        for field in ["loss", "lr", "accuracy", "seconds", "grad_norm"] {
            assert!(line[field].is_number(), "{field} in {line}");
        }
        // serde_json's parser may be one ulp off (no `float_roundtrip`).
        assert!((line["loss"].as_f64().unwrap() - sa.losses[k]).abs() < 1e-12 * sa.losses[k]);
    }
    assert_eq!(log[0]["lr"].as_f64().unwrap(), 0.0, "warmup starts at 0");

    // (2) determinism
    let out_b = tmp.path().join("b");
    let sb = pretrain_vision(&pretrain_config(&ckpt, &data, &out_b)).unwrap();
    assert_eq!(sa.losses, sb.losses);
    let weights = |dir: &Path| std::fs::read(dir.join("model.safetensors")).unwrap();
    assert!(
        weights(&out_a) == weights(&out_b),
        "two runs wrote different weights"
    );

    // (3) what changed and what did not
    let cfg = model_config(&ckpt);
    let used = cfg.vision_layers_used();
    let input = weights(&ckpt);
    let output = weights(&out_a);
    let (si, so) = (
        SafeTensors::deserialize(&input).unwrap(),
        SafeTensors::deserialize(&output).unwrap(),
    );
    let mut a = si.names();
    let mut b = so.names();
    a.sort();
    b.sort();
    assert_eq!(a, b, "the output has other tensor names");
    let mut changed = 0;
    for name in a {
        let (x, y) = (si.tensor(name).unwrap(), so.tensor(name).unwrap());
        assert_eq!(x.dtype(), y.dtype(), "{name}");
        assert_eq!(x.shape(), y.shape(), "{name}");
        let tower = name.starts_with("vision_tower.embeddings.")
            || (0..used).any(|i| name.starts_with(&format!("vision_tower.encoder.layers.{i}.")));
        if tower {
            changed += usize::from(x.data() != y.data());
        } else {
            assert!(
                x.data() == y.data(),
                "{name} changed but is not in the tower"
            );
        }
    }
    assert!(changed >= 10, "only {changed} tower tensors changed");
    let metadata = |b: &[u8]| SafeTensors::read_metadata(b).unwrap().1.metadata().clone();
    assert_eq!(metadata(&input), metadata(&output));
    for e in std::fs::read_dir(&ckpt).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap();
        let copied = out_a.join(name);
        assert!(copied.is_file(), "{} was not copied", p.display());
        if p.extension().and_then(|e| e.to_str()) != Some("safetensors") {
            assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&copied).unwrap());
        }
    }

    // (3) the output loads: as a model (leaving unused what the input left: post_layernorm),
    // and in the trainer
    let (_, before) = LlavaOnevision::load(&ckpt, ComputeDType::F32, &Device::Cpu).unwrap();
    let (model, report) = LlavaOnevision::load(&out_a, ComputeDType::F32, &Device::Cpu).unwrap();
    assert_eq!(report.unused, before.unused);
    let px = Tensor::zeros((1, 3, TILE, TILE), DType::F32, &Device::Cpu).unwrap();
    let feats = model.vision_features(&px).unwrap();
    assert_eq!(feats.dims()[1], GRID_TOKENS);
    let (run_cfg, _) =
        onevision_train::trainer::run_config(&out_a, onevision_train::settings::Images::Base)
            .unwrap_or_else(|e| panic!("{e}"));
    let state = ModelState::load(&out_a, &run_cfg, &[Group::Vision], &Device::Cpu).unwrap();
    assert!(state.params().iter().all(|p| p.group == Group::Vision));
    Processor::from_dir(&out_a, &run_cfg).unwrap();
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

fn sample(id: &str, image: &str, task: Option<&str>, answer: &str) -> Value {
    let mut v = json!({
        "id": id,
        "image": image,
        "conversations": [
            {"from": "human", "value": "<image>\nWrite a short caption for the image."},
            {"from": "gpt", "value": answer},
        ],
    });
    if let Some(t) = task {
        v["task"] = json!(t);
    }
    v
}

/// (4) Data without caption pairs, an unreadable image and bad batch sizes each say what was
/// wrong and what was expected.
#[test]
fn unusable_data_and_settings_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tiny_checkpoint(&tmp.path().join("ckpt"), false);
    let world = tiny_world(&tmp.path().join("world"), 40);
    let dir = world.parent().unwrap();
    let images: Vec<String> = caption_pairs(&world, None)
        .unwrap()
        .iter()
        .map(|p| p.image.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    assert!(images.len() >= 2);

    // No caption pairs: every sample is another task.
    let data = dir.join("colors.json");
    write_json(
        &data,
        &json!([
            sample("a", &images[0], Some("color"), "red"),
            sample("b", &images[1], Some("count"), "2")
        ]),
    );
    let err = caption_pairs(&data, None).unwrap_err().to_string();
    assert!(err.contains("has no caption pairs"), "{err}");
    assert!(err.contains("\"task\": \"caption\""), "{err}");
    assert!(err.contains("color 1"), "{err}");
    let err = pretrain_vision(&pretrain_config(&ckpt, &data, &tmp.path().join("o1")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no caption pairs"), "{err}");

    // Without any `task` field every one-image sample is a pair.
    let data = dir.join("untagged.json");
    write_json(
        &data,
        &json!([
            sample("a", &images[0], None, "one red circle"),
            sample("b", &images[1], None, "two blue squares")
        ]),
    );
    let pairs = caption_pairs(&data, None).unwrap();
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[1].text, "two blue squares");

    // A caption whose image is not an image.
    std::fs::write(dir.join("broken.png"), b"not a png").unwrap();
    let data = dir.join("broken.json");
    write_json(
        &data,
        &json!([
            sample("a", &images[0], Some("caption"), "one red circle"),
            sample("bad", "broken.png", Some("caption"), "two blue squares")
        ]),
    );
    let err = caption_pairs(&data, None).unwrap_err().to_string();
    assert!(err.contains("broken.png"), "{err}");
    assert!(err.contains("cannot be used"), "{err}");

    // Batch sizes: more than the pairs, and fewer than two.
    let mut cfg = pretrain_config(&ckpt, &world, &tmp.path().join("o2"));
    cfg.batch_size = 1000;
    let err = pretrain_vision(&cfg).unwrap_err().to_string();
    assert!(err.contains("batch size 1000 is larger than the"), "{err}");
    cfg.batch_size = 1;
    let err = pretrain_vision(&cfg).unwrap_err().to_string();
    assert!(err.contains("at least 2 pairs"), "{err}");

    // The output may not be the input.
    let cfg = pretrain_config(&ckpt, &world, &ckpt);
    let err = pretrain_vision(&cfg).unwrap_err().to_string();
    assert!(err.contains("is the input checkpoint"), "{err}");
}
