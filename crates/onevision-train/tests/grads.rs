//! The loss and every parameter's gradient of one training step equal PyTorch's
//! (fixtures/train/grads, made by tools/fixtures/make_train_fixtures.py), for both tiny models
//! and every batch kind: one AnyRes image, a multi-image set, a video, text only, a padded batch
//! of two mixed samples, and stage 1 (plain template, base tile, projector only). The batch
//! itself, as `--dump-grads` writes it, equals the reference's token for token and pixel for pixel.
//!
//! Tolerances (llm.c's f32 check as the model): the loss within 2e-6 relative; each gradient
//! tensor within 1e-5 of its own largest magnitude (max |Δ| / max |g|; observed <= 1e-6).
//! Gradients that are zero in exact arithmetic carry only rounding noise (SigLIP's key
//! biases: softmax is invariant to a bias added to every key; PyTorch's are ~1e-10, ours
//! ~1e-9); a tensor's scale is therefore taken as at least 1e-3 of the largest gradient of the
//! whole model. Observed values are printed per tensor.

mod common;

use common::*;
use onevision_train::example::ImageStrategy;
use onevision_train::labels::Template;
use onevision_train::optim::Group;
use onevision_train::settings::Images;

const LOSS_REL: f64 = 2e-6;
const GRAD_REL: f64 = 1e-5;
/// The smallest scale a gradient tensor is measured against, relative to the model's largest.
const SCALE_FLOOR: f64 = 1e-3;

/// (case, template, parts, single-image rule, batch size): as GRAD_CASES in the generator.
fn case_settings(case: &str) -> (Template, Vec<Group>, Images, usize) {
    let all = vec![Group::Projector, Group::Vision, Group::Language];
    match case {
        "stage1" => (Template::Plain, vec![Group::Projector], Images::Base, 1),
        "batch2" => (Template::Qwen15, all, Images::Checkpoint, 2),
        _ => (Template::Qwen15, all, Images::Checkpoint, 1),
    }
}

fn check_case(model: &str, case: &str, checkpointing: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(model, &format!("case_{case}.jsonl"), tmp.path());
    let (template, parts, images, bs) = case_settings(case);
    cfg.template = template;
    cfg.parts = parts;
    cfg.images = images;
    cfg.batch_size = bs;
    cfg.gradient_checkpointing = checkpointing;
    let dump = tmp.path().join("dump.safetensors");
    cfg.dump_grads = Some(dump.clone());
    assert_eq!(images.strategy() == ImageStrategy::Base, case == "stage1");
    onevision_train::trainer::train(&cfg).unwrap();

    let ours = load(&dump);
    let want = load(&grads_dir().join(model).join(format!("{case}.safetensors")));
    // The batch, exactly.
    for key in ["input_ids", "labels", "attention_mask"] {
        assert_eq!(
            i64s(&ours[key]),
            i64s(&want[key]),
            "{model}/{case}: {key} differs"
        );
        assert_eq!(
            ours[key].dims(),
            want[key].dims(),
            "{model}/{case}: {key} shape"
        );
    }
    if let Some(sizes) = want.get("image_sizes") {
        assert_eq!(
            i64s(&ours["image_sizes"]),
            i64s(sizes),
            "{model}/{case}: image_sizes"
        );
        let tiles = i64s(&want["image_tiles"]);
        let px = &ours["pixel_values"]; // (n, max tiles, 3, s, s)
        let mut sums = vec![];
        for (i, &n) in tiles.iter().enumerate() {
            for t in 0..n as usize {
                let v = f64s(&px.get(i).unwrap().get(t).unwrap());
                sums.push(v.iter().sum::<f64>());
                sums.push(v.iter().map(|x| x * x).sum::<f64>());
            }
        }
        let want_sums = f64s(&want["pixel_sums"]);
        assert_eq!(sums.len(), want_sums.len(), "{model}/{case}: tile count");
        for (a, b) in sums.iter().zip(&want_sums) {
            assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "{model}/{case}: pixels {a} vs {b}"
            );
        }
    }
    if let Some(idx) = want.get("video_frame_indices") {
        assert_eq!(
            i64s(&ours["video_frame_indices"]),
            i64s(idx),
            "{model}/{case}: frames"
        );
        let px = &ours["pixel_values_videos"];
        let mut sums = vec![];
        for t in 0..px.dim(1).unwrap() {
            let v = f64s(&px.get(0).unwrap().get(t).unwrap());
            sums.push(v.iter().sum::<f64>());
            sums.push(v.iter().map(|x| x * x).sum::<f64>());
        }
        let want_sums = f64s(&want["video_pixel_sums"]);
        for (a, b) in sums.iter().zip(&want_sums) {
            assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "{model}/{case}: video pixels {a} vs {b}"
            );
        }
    }
    // The loss.
    let (l, w) = (f64s(&ours["loss"])[0], f64s(&want["loss"])[0]);
    let rel = (l - w).abs() / w.abs();
    println!(
        "{model}/{case} (checkpointing {checkpointing}): loss {l:.7} vs {w:.7} (rel {rel:.1e})"
    );
    assert!(
        rel <= LOSS_REL,
        "{model}/{case}: loss {l} vs PyTorch {w} (rel {rel:.2e})"
    );
    // Every gradient: the same set of parameters, each within tolerance.
    let is_param = |k: &String| k.starts_with("model.") || k.starts_with("lm_head.");
    let mut ours_names: Vec<&String> = ours.keys().filter(|k| is_param(k)).collect();
    let mut want_names: Vec<&String> = want.keys().filter(|k| is_param(k)).collect();
    ours_names.sort();
    want_names.sort();
    assert_eq!(
        ours_names, want_names,
        "{model}/{case}: parameters with a gradient differ"
    );
    let model_scale = want_names
        .iter()
        .map(|n| deviation(&want[*n], &want[*n]).1)
        .fold(0.0, f64::max);
    let mut worst = (0.0f64, String::new());
    let mut bad = vec![];
    for name in want_names {
        let (dev, scale) = deviation(&ours[name], &want[name]);
        let r = dev / scale.max(SCALE_FLOOR * model_scale);
        println!("  {name:<70} max|Δ| {dev:.2e} of {scale:.2e} ({r:.1e})");
        if r > GRAD_REL {
            bad.push(format!(
                "{name}: max|Δ| {dev:.3e}, scale {scale:.3e} ({r:.2e})"
            ));
        }
        if r > worst.0 {
            worst = (r, name.clone());
        }
    }
    println!(
        "{model}/{case}: worst gradient {:.2e} ({})",
        worst.0, worst.1
    );
    assert!(
        bad.is_empty(),
        "{model}/{case}: gradients off:\n{}",
        bad.join("\n")
    );
}

#[test]
fn tied_gradients_equal_pytorch() {
    for case in ["anyres", "multi_image", "video", "text", "batch2", "stage1"] {
        check_case("tied", case, false);
    }
}

#[test]
fn gqa_gradients_equal_pytorch() {
    for case in ["anyres", "multi_image", "video", "text", "batch2", "stage1"] {
        check_case("gqa", case, false);
    }
}

/// Recomputing each layer in the backward gives the same gradients.
#[test]
fn gradient_checkpointing_gives_the_same_gradients() {
    for (model, case) in [("tied", "batch2"), ("gqa", "video"), ("tied", "stage1")] {
        check_case(model, case, true);
    }
}
