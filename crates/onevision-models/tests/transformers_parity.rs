//! Rust f32 against transformers 5.24 f32 (eager attention) on the fixture checkpoints:
//! every intermediate stage, the logits of every position, and 20 greedy tokens.

mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use onevision_models::generate::{all_logits, greedy, FinishReason};
use onevision_models::{LlavaOnevision, Media};
use onevision_nn::ComputeDType;

/// Bound on |ours - transformers| for logits, relative to the largest stored logit. f32 with a
/// different summation order (gemm blocking, fused ops) lands at 0.3e-6 .. 1.4e-6 of the scale
/// on the fixtures; the bound leaves ~15x room for other seeds and sizes.
const LOGITS_REL_TOL: f32 = 2e-5;
/// The same bound for intermediate activations (vision features, projector, packed rows),
/// observed at <= 0.8e-6 of their scale.
const FEATURES_REL_TOL: f32 = 2e-5;
/// Row sums of C values carry C rounding errors: allow sqrt(C) times the element bound.
fn row_sum_tol(scale: f32, cols: usize, rel: f32) -> f32 {
    rel * scale.max(1.0) * (cols as f32).sqrt() * 4.0
}

fn check(
    stage: &str,
    case: &str,
    ours: &Tensor,
    t: &std::collections::HashMap<String, Tensor>,
    rel: f32,
) -> f32 {
    let d = deviation(stage, ours, t).unwrap();
    let cols = *ours.dims().last().unwrap();
    let tol = rel * d.scale.max(1.0);
    println!(
        "{case:>18} {stage:<17} max|Δ| {:.2e} (scale {:.2e}, bound {:.1e})  row-sum |Δ| {:.2e}  row-sumsq rel {:.2e}",
        d.sample_max_abs, d.scale, tol, d.row_sum_max_abs, d.row_sumsq_max_rel
    );
    assert!(
        d.sample_max_abs <= tol,
        "{case} {stage}: max |Δ| {} > {tol}",
        d.sample_max_abs
    );
    assert!(
        d.row_sum_max_abs <= row_sum_tol(d.scale, cols, rel),
        "{case} {stage}: row sum |Δ| {} > {}",
        d.row_sum_max_abs,
        row_sum_tol(d.scale, cols, rel)
    );
    assert!(
        d.row_sumsq_max_rel <= 10.0 * rel,
        "{case} {stage}: row sumsq rel {}",
        d.row_sumsq_max_rel
    );
    d.sample_max_abs / d.scale.max(1.0)
}

fn run_model(name: &str) {
    let m = manifest();
    let entry = &m.models[name];
    let (model, report) = LlavaOnevision::load(
        &fixtures().join(name).join("checkpoint"),
        ComputeDType::F32,
        &Device::Cpu,
    )
    .unwrap();
    println!("{name}: unused tensors {:?}", report.unused);
    let mut worst = 0f32;
    for case in &entry.cases {
        let t = case_tensors(name, &case.name);
        let input = input(case, &t).unwrap();
        // Intermediate stages, concatenated over the media as the fixture stores them.
        if !input.media.is_empty() {
            let pixels: Vec<Tensor> = input
                .media
                .iter()
                .map(|m| match m {
                    Media::Image { pixels, .. } => pixels.clone(),
                    Media::Video { frames } => frames.clone(),
                })
                .collect();
            let feats = model
                .vision_features(&Tensor::cat(&pixels, 0).unwrap())
                .unwrap();
            check("vision_features", &case.name, &feats, &t, FEATURES_REL_TOL);
            let proj = model.project(&feats).unwrap();
            check("projector_output", &case.name, &proj, &t, FEATURES_REL_TOL);
            let packed: Vec<Tensor> = input
                .media
                .iter()
                .map(|m| model.encode_media(m).unwrap())
                .collect();
            check(
                "packed_features",
                &case.name,
                &Tensor::cat(&packed, 0).unwrap(),
                &t,
                FEATURES_REL_TOL,
            );
        }
        let mut cache = model.new_cache();
        let hidden = model.forward(&input, &mut cache).unwrap();
        let logits = all_logits(&model, &hidden).unwrap();
        worst = worst.max(check("logits", &case.name, &logits, &t, LOGITS_REL_TOL));
        let g = greedy(&model, &input, 20, &[entry.eos_token_id], |_| {}).unwrap();
        assert_eq!(
            g.tokens, case.greedy,
            "{name}/{}: greedy tokens differ from transformers",
            case.name
        );
        let want_finish = if case.greedy.last() == Some(&entry.eos_token_id) {
            FinishReason::Eos
        } else {
            FinishReason::Length
        };
        assert_eq!(g.finish, want_finish);
    }
    println!("{name}: worst logits max|Δ| / scale = {worst:.2e} (bound {LOGITS_REL_TOL:.0e})");
}

#[test]
fn tied_model_matches_transformers() {
    run_model("tied");
}

#[test]
fn gqa_model_matches_transformers() {
    run_model("gqa");
}

/// The Hub's llava-hf layout (`vision_tower.vision_model.*`, transformers-4.4x config with
/// `torch_dtype: float16`), stored in float16, loaded into f32 compute as transformers does.
#[test]
fn hub_float16_layout_matches_transformers() {
    let dir = fixtures().join("tied/hub_f16");
    let (model, report) = LlavaOnevision::load(&dir, ComputeDType::F32, &Device::Cpu).unwrap();
    assert_eq!(model.config().stored_dtype.as_deref(), Some("float16"));
    assert!(
        report.unused.iter().all(|n| n.contains("post_layernorm")),
        "{:?}",
        report.unused
    );
    let m = manifest();
    let entry = &m.models["tied"];
    let case = entry.cases.iter().find(|c| c.name == "image_wide").unwrap();
    let t = case_tensors("tied", "image_wide");
    let reference =
        candle_core::safetensors::load(dir.join("image_wide.safetensors"), &Device::Cpu).unwrap();
    let input = input(case, &t).unwrap();
    let hidden = model.forward(&input, &mut model.new_cache()).unwrap();
    check(
        "logits",
        "hub_f16",
        &all_logits(&model, &hidden).unwrap(),
        &reference,
        LOGITS_REL_TOL,
    );
    let want: Vec<i64> = reference["greedy"].to_vec1().unwrap();
    let g = greedy(&model, &input, 20, &[entry.eos_token_id], |_| {}).unwrap();
    assert_eq!(g.tokens.iter().map(|&x| x as i64).collect::<Vec<_>>(), want);
}

/// f32 logits can only rank two tokens reliably in half precision when they are further apart
/// than its rounding noise; positions whose f32 top-1/top-2 gap is below this margin are
/// counted, not asserted (bf16 keeps 8 mantissa bits, f16 11).
const TOP1_MARGIN_BF16: f32 = 0.25;
const TOP1_MARGIN_F16: f32 = 0.05;

/// bf16 and f16 compute run every case and pick f32's top-1 token at every position where f32
/// is not near a tie (see the margins above): at the last position of each case in particular.
#[test]
fn half_precision_agrees_with_f32_on_top1() {
    let m = manifest();
    for name in ["tied", "gqa"] {
        let dir = fixtures().join(name).join("checkpoint");
        let (f32m, _) = LlavaOnevision::load(&dir, ComputeDType::F32, &Device::Cpu).unwrap();
        let halves: Vec<_> = [
            (ComputeDType::BF16, TOP1_MARGIN_BF16),
            (ComputeDType::F16, TOP1_MARGIN_F16),
        ]
        .into_iter()
        .map(|(dt, margin)| {
            (
                LlavaOnevision::load(&dir, dt, &Device::Cpu).unwrap().0,
                dt,
                margin,
            )
        })
        .collect();
        for case in &m.models[name].cases {
            let t = case_tensors(name, &case.name);
            let input = input(case, &t).unwrap();
            let logits = |model: &LlavaOnevision| -> Vec<Vec<f32>> {
                let h = model.forward(&input, &mut model.new_cache()).unwrap();
                let l = all_logits(model, &h).unwrap();
                assert_eq!(l.dtype(), DType::F32);
                l.to_vec2().unwrap()
            };
            let reference = logits(&f32m);
            let top2 = |row: &[f32]| -> (usize, f32) {
                let mut idx: Vec<usize> = (0..row.len()).collect();
                idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
                (idx[0], row[idx[0]] - row[idx[1]])
            };
            for (half, dt, margin) in &halves {
                assert_eq!(half.dtype(), dt.dtype());
                let ours = logits(half);
                let (mut agree, mut clear, mut clear_agree) = (0, 0, 0);
                for (pos, (r, o)) in reference.iter().zip(&ours).enumerate() {
                    let (want, gap) = top2(r);
                    let got = top2(o).0;
                    agree += (want == got) as usize;
                    if gap >= *margin {
                        clear += 1;
                        clear_agree += (want == got) as usize;
                        assert_eq!(
                            want, got,
                            "{name} {dt} {}: position {pos}: top-1 {got}, f32 says {want} (gap {gap})",
                            case.name
                        );
                    } else if pos + 1 == reference.len() {
                        println!(
                            "{name} {dt} {}: last position is a near tie in f32 (gap {gap:.3})",
                            case.name
                        );
                    }
                }
                println!(
                    "{name} {dt} {:>14}: top-1 agrees at {agree}/{} positions; {clear_agree}/{clear} where the f32 gap >= {margin}",
                    case.name,
                    reference.len()
                );
            }
        }
    }
}
