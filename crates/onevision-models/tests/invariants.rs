//! Reference-free invariants: cache equivalence, token counts against transformers' table,
//! checkpoint layouts, bad inputs.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use common::*;
use onevision_models::generate::all_logits;
use onevision_models::llava_ov::packing::{
    anyres_grid, image_token_count, pack_image, pack_video, video_token_count,
};
use onevision_models::llava_ov::ImageLayout;
use onevision_models::{
    AspectRatio, Error, LlavaOnevision, LlavaOnevisionConfig, Media, MultimodalInput,
};
use onevision_nn::{ComputeDType, Quantization};

/// Cached decoding reorders no arithmetic per row, but the matmul shapes differ (1 row vs t
/// rows), so gemm may block differently: allow f32 rounding noise.
const CACHE_TOL: f32 = 1e-4;

fn load(name: &str) -> LlavaOnevision {
    LlavaOnevision::load(
        &fixtures().join(name).join("checkpoint"),
        ComputeDType::F32,
        &Device::Cpu,
    )
    .unwrap()
    .0
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Prefilling a prompt at once gives the same logits as prefilling a prefix (with the media)
/// and feeding the rest one token at a time through the cache.
#[test]
fn prefill_equals_token_by_token_decode() {
    let m = manifest();
    for name in ["tied", "gqa"] {
        let model = load(name);
        for case_name in ["text", "image_small", "video"] {
            let case = m.models[name]
                .cases
                .iter()
                .find(|c| c.name == case_name)
                .unwrap();
            let t = case_tensors(name, case_name);
            let full_input = input(case, &t).unwrap();
            let full = all_logits(
                &model,
                &model.forward(&full_input, &mut model.new_cache()).unwrap(),
            )
            .unwrap();
            let n = full_input.input_ids.len();
            let tail = if case_name == "text" { n - 1 } else { 6 }; // text: every token alone
            let mut prefix = full_input.clone();
            prefix.input_ids.truncate(n - tail);
            let mut cache = model.new_cache();
            let mut rows =
                vec![all_logits(&model, &model.forward(&prefix, &mut cache).unwrap()).unwrap()];
            for &id in &full_input.input_ids[n - tail..] {
                rows.push(
                    all_logits(&model, &model.forward_tokens(&[id], &mut cache).unwrap()).unwrap(),
                );
            }
            assert_eq!(cache.len(), n);
            let stepped = Tensor::cat(&rows, 0).unwrap();
            let d = max_abs(&full, &stepped);
            println!("{name} {case_name}: prefill vs {tail} cached steps, max |Δ| {d:.2e}");
            assert!(d <= CACHE_TOL, "{name} {case_name}: {d}");
        }
    }
}

/// f32 logits rank two tokens reliably under weight quantization only when they are further
/// apart than its noise: positions whose f32 top-1/top-2 gap is below these margins are
/// counted, not asserted.
const TOP1_MARGIN_Q8_0: f32 = 0.05;
const TOP1_MARGIN_Q4_0: f32 = 0.5;

/// Weight-only quantized decoding (`--quantize`): teacher-forced over the last tokens of every
/// fixture case (the prefill is unquantized, so the steps are what differs), the quantized
/// model's top-1 equals f32's wherever f32 is not near a tie; the quantized path is really
/// taken (logits differ from f32).
#[test]
fn quantized_decode_agrees_with_f32_on_top1() {
    let m = manifest();
    for name in ["tied", "gqa"] {
        let reference = load(name);
        for (q, margin) in [
            (Quantization::Q8_0, TOP1_MARGIN_Q8_0),
            (Quantization::Q4_0, TOP1_MARGIN_Q4_0),
        ] {
            let mut quantized = load(name);
            let (done, skipped) = quantized.quantize_decode(q).unwrap();
            let (mut agree, mut total, mut max_d) = (0, 0, 0f32);
            for case in &m.models[name].cases {
                let t = case_tensors(name, &case.name);
                let full = input(case, &t).unwrap();
                let n = full.input_ids.len();
                // Steps after the last media placeholder (a prefix must keep them whole).
                let cfg = reference.config();
                let last_media = full
                    .input_ids
                    .iter()
                    .rposition(|&id| id == cfg.image_token_id || id == cfg.video_token_id)
                    .map_or(0, |p| p + 1);
                let tail = 12.min(n - last_media.max(1));
                if tail == 0 {
                    continue;
                }
                let mut prefix = full.clone();
                prefix.input_ids.truncate(n - tail);
                let (mut cr, mut cq) = (reference.new_cache(), quantized.new_cache());
                reference.forward(&prefix, &mut cr).unwrap();
                quantized.forward(&prefix, &mut cq).unwrap();
                for &id in &full.input_ids[n - tail..] {
                    let lr = all_logits(
                        &reference,
                        &reference.forward_tokens(&[id], &mut cr).unwrap(),
                    )
                    .unwrap();
                    let lq = all_logits(
                        &quantized,
                        &quantized.forward_tokens(&[id], &mut cq).unwrap(),
                    )
                    .unwrap();
                    max_d = max_d.max(max_abs(&lr, &lq));
                    let (r, qv): (Vec<f32>, Vec<f32>) = (
                        lr.flatten_all().unwrap().to_vec1().unwrap(),
                        lq.flatten_all().unwrap().to_vec1().unwrap(),
                    );
                    let mut idx: Vec<usize> = (0..r.len()).collect();
                    idx.sort_by(|&a, &b| r[b].total_cmp(&r[a]));
                    let gap = r[idx[0]] - r[idx[1]];
                    let top_q = (0..qv.len())
                        .max_by(|&a, &b| qv[a].total_cmp(&qv[b]))
                        .unwrap();
                    total += 1;
                    agree += (top_q == idx[0]) as usize;
                    if gap >= margin {
                        assert_eq!(
                            top_q, idx[0],
                            "{name} {q} {}: top-1 {top_q}, f32 {} (gap {gap})",
                            case.name, idx[0]
                        );
                    }
                }
            }
            println!(
                "{name} {q}: {done} matrices quantized, {skipped} kept (width not a multiple of 32); \
                 top-1 agrees with f32 at {agree}/{total} decode steps; max |Δ logits| {max_d:.3}"
            );
            if done > 0 {
                assert!(
                    max_d > 0.0,
                    "{name} {q}: the quantized weights were not used"
                );
            } else {
                // Nothing quantizable (the gqa model's width is 48): decoding is unchanged.
                assert_eq!(
                    max_d, 0.0,
                    "{name} {q}: nothing was quantized, yet logits changed"
                );
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct TokenTable {
    sizes_hw: Vec<[usize; 2]>,
    counts: HashMap<String, Vec<usize>>,
}

fn config_with(ratio: AspectRatio) -> LlavaOnevisionConfig {
    let mut c =
        LlavaOnevisionConfig::from_json(&serde_json::json!({"model_type": "llava_onevision"}))
            .unwrap();
    c.aspect_ratio = ratio;
    c
}

/// The pure count and the length the packer actually produces both equal transformers'
/// `_get_number_of_features`, for 2100 sizes and two shrink budgets.
#[test]
fn packed_length_equals_transformers_token_count() {
    let text = std::fs::read_to_string(fixtures().join("token_counts.json")).unwrap();
    let table: TokenTable = serde_json::from_str(&text).unwrap();
    assert!(table.sizes_hw.len() >= 2000);
    for (key, ratio) in [
        ("anyres_max_9", AspectRatio::AnyResMax(9)),
        ("anyres_max_4", AspectRatio::AnyResMax(4)),
    ] {
        let cfg = config_with(ratio);
        let newline = Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu).unwrap();
        for (i, &[h, w]) in table.sizes_hw.iter().enumerate() {
            let want = table.counts[key][i];
            assert_eq!(
                image_token_count((h, w), ImageLayout::AnyRes, &cfg),
                want,
                "{key} {h}x{w}"
            );
            let (r, c) = anyres_grid((h, w), &cfg);
            let tiles =
                Tensor::zeros((1 + r * c, 729, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
            let packed = pack_image(&tiles, (h, w), ImageLayout::AnyRes, &newline, &cfg).unwrap();
            assert_eq!(packed.dim(0).unwrap(), want, "{key} {h}x{w}: packed rows");
        }
    }
    // The spec's worked examples (§2.5).
    let cfg = config_with(AspectRatio::AnyResMax(9));
    for ((h, w), n) in [
        ((899, 1024), 6551),
        ((1080, 1920), 7269),
        ((1156, 946), 8765),
        ((768, 1920), 8073),
    ] {
        assert_eq!(image_token_count((h, w), ImageLayout::AnyRes, &cfg), n);
    }
    assert_eq!(
        image_token_count((500, 300), ImageLayout::Single, &cfg),
        730
    );
    assert_eq!(video_token_count(8, &cfg), 1569);
    assert_eq!(video_token_count(32, &cfg), 6273);
    let frames = Tensor::zeros((3, 729, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    let nl = Tensor::ones(2, candle_core::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(
        pack_video(&frames, &nl, &cfg).unwrap().dim(0).unwrap(),
        video_token_count(3, &cfg)
    );
}

/// transformers' shard file names (a single file is plain model.safetensors).
fn shard_file(k: usize, shards: usize) -> String {
    if shards == 1 {
        "model.safetensors".into()
    } else {
        format!("model-{:05}-of-{shards:05}.safetensors", k + 1)
    }
}

/// Maps a stored tensor name to another layout's name (None drops the tensor).
type Rename = dyn Fn(&str) -> Option<String>;

/// Writes the fixture's weights under another naming, optionally in shards.
fn write_layout(src: &Path, dst: &Path, rename: impl Fn(&str) -> Option<String>, shards: usize) {
    std::fs::create_dir_all(dst).unwrap();
    std::fs::copy(src.join("config.json"), dst.join("config.json")).unwrap();
    let tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut parts: Vec<HashMap<String, Tensor>> = vec![HashMap::new(); shards];
    let mut weight_map = serde_json::Map::new();
    for (i, n) in names.iter().enumerate() {
        let Some(new) = rename(n) else { continue };
        let k = i * shards / names.len();
        weight_map.insert(new.clone(), shard_file(k, shards).into());
        parts[k].insert(new, tensors[*n].clone());
    }
    for (k, p) in parts.iter().enumerate() {
        candle_core::safetensors::save(p, dst.join(shard_file(k, shards))).unwrap();
    }
    if shards > 1 {
        let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
        std::fs::write(dst.join("model.safetensors.index.json"), index.to_string()).unwrap();
    }
}

fn hub(n: &str) -> Option<String> {
    Some(if let Some(r) = n.strip_prefix("vision_tower.") {
        format!("vision_tower.vision_model.{r}")
    } else {
        n.to_string()
    })
}
fn in_memory(n: &str) -> Option<String> {
    Some(if let Some(r) = n.strip_prefix("language_model.model.") {
        format!("model.language_model.{r}")
    } else if n == "language_model.lm_head.weight" {
        "lm_head.weight".into()
    } else {
        format!("model.{n}")
    })
}
fn lmms(n: &str) -> Option<String> {
    Some(if let Some(r) = n.strip_prefix("language_model.model.") {
        format!("model.{r}")
    } else if let Some(r) = n.strip_prefix("vision_tower.") {
        format!("model.vision_tower.vision_tower.vision_model.{r}")
    } else if let Some(r) = n.strip_prefix("multi_modal_projector.linear_1.") {
        format!("model.mm_projector.0.{r}")
    } else if let Some(r) = n.strip_prefix("multi_modal_projector.linear_2.") {
        format!("model.mm_projector.2.{r}")
    } else if n == "image_newline" {
        "model.image_newline".into()
    } else {
        n.to_string()
    })
}

/// The same weights under every accepted naming, single-file and sharded, give bit-identical
/// logits; a stored lm_head next to tied embeddings is accepted and reported unused.
#[test]
fn every_checkpoint_layout_gives_identical_logits() {
    let m = manifest();
    let tmp = tempfile::tempdir().unwrap();
    for name in ["tied", "gqa"] {
        let src = fixtures().join(name).join("checkpoint");
        let case = m.models[name]
            .cases
            .iter()
            .find(|c| c.name == "image_small")
            .unwrap();
        let t = case_tensors(name, "image_small");
        let input = input(case, &t).unwrap();
        let logits = |dir: &Path| {
            let (model, report) =
                LlavaOnevision::load(dir, ComputeDType::F32, &Device::Cpu).unwrap();
            let h = model.forward(&input, &mut model.new_cache()).unwrap();
            (all_logits(&model, &h).unwrap(), report)
        };
        let (reference, _) = logits(&src);
        let layouts: [(&str, &Rename, usize); 5] = [
            ("hub", &hub, 1),
            ("in_memory", &in_memory, 1),
            ("lmms", &lmms, 1),
            ("sharded", &|n: &str| Some(n.to_string()), 3),
            ("hub_sharded", &hub, 2),
        ];
        for (label, rename, shards) in layouts {
            let dst = tmp.path().join(format!("{name}_{label}"));
            write_layout(&src, &dst, rename, shards);
            let (l, report) = logits(&dst);
            assert_eq!(max_abs(&reference, &l), 0.0, "{name} {label}");
            println!("{name} {label}: identical; unused {:?}", report.unused);
        }
        if name == "tied" {
            // A tied checkpoint that also stores lm_head (as lmms-lab conversions did).
            let dst = tmp.path().join("tied_with_head");
            write_layout(&src, &dst, |n| Some(n.to_string()), 1);
            let mut ts =
                candle_core::safetensors::load(dst.join("model.safetensors"), &Device::Cpu)
                    .unwrap();
            let emb = ts["language_model.model.embed_tokens.weight"].clone();
            ts.insert("language_model.lm_head.weight".into(), emb);
            candle_core::safetensors::save(&ts, dst.join("model.safetensors")).unwrap();
            let (l, report) = logits(&dst);
            assert_eq!(max_abs(&reference, &l), 0.0);
            assert!(report
                .unused
                .contains(&"language_model.lm_head.weight".to_string()));
        }
    }
}

#[test]
fn unused_tensors_are_reported() {
    let (_, report) = LlavaOnevision::load(
        &fixtures().join("gqa/checkpoint"),
        ComputeDType::F32,
        &Device::Cpu,
    )
    .unwrap();
    // gqa uses vision layer -2 of 3: the last layer, post_layernorm and the pooling head are unused.
    assert!(
        report
            .unused
            .iter()
            .any(|n| n.starts_with("vision_tower.encoder.layers.2.")),
        "{:?}",
        report.unused
    );
    assert!(report
        .unused
        .iter()
        .any(|n| n.starts_with("vision_tower.head.")));
    assert!(report
        .unused
        .iter()
        .any(|n| n.starts_with("vision_tower.post_layernorm")));
    assert!(!report
        .unused
        .iter()
        .any(|n| n.starts_with("language_model")));
}

#[test]
fn missing_tensor_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("gqa/checkpoint");
    write_layout(
        &src,
        tmp.path(),
        |n| (n != "language_model.model.layers.1.mlp.up_proj.weight").then(|| n.to_string()),
        1,
    );
    let e = LlavaOnevision::load(tmp.path(), ComputeDType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("text.layers.1.mlp.up_proj.weight") && e.contains("lacks"),
        "{e}"
    );
    // an untied model without its head
    write_layout(
        &src,
        tmp.path(),
        |n| (n != "language_model.lm_head.weight").then(|| n.to_string()),
        1,
    );
    let e = LlavaOnevision::load(tmp.path(), ComputeDType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("lm_head.weight"), "{e}");
}

#[test]
fn wrong_checkpoints_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("tied/checkpoint");
    // weights of another model size
    let other = tmp.path().join("other");
    write_layout(
        &fixtures().join("gqa/checkpoint"),
        &other,
        |n| Some(n.to_string()),
        1,
    );
    std::fs::copy(src.join("config.json"), other.join("config.json")).unwrap();
    let e = LlavaOnevision::load(&other, ComputeDType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("has shape") && e.contains("expected"), "{e}");
    // no weights at all
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::copy(src.join("config.json"), empty.join("config.json")).unwrap();
    let e = LlavaOnevision::load(&empty, ComputeDType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no weights"), "{e}");
    // a corrupt safetensors file
    std::fs::write(
        empty.join("model.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json",
    )
    .unwrap();
    let e = LlavaOnevision::load(&empty, ComputeDType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a valid safetensors"), "{e}");
    // no config
    let e = LlavaOnevision::load(tmp.path(), ComputeDType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn placeholder_count_mismatch_states_both_counts() {
    let model = load("tied");
    let cfg = model.config().clone();
    let mut ids = vec![1, 2];
    ids.extend(std::iter::repeat_n(cfg.image_token_id, 700));
    let input = MultimodalInput {
        input_ids: ids,
        media: vec![Media::Image {
            pixels: pattern_pixels(1, 1),
            size: (300, 500),
            layout: ImageLayout::Single,
        }],
    };
    let e = model.forward(&input, &mut model.new_cache()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::PlaceholderMismatch {
                tokens: 700,
                features: 730,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("700") && e.to_string().contains("730"));
    // wrong tile count for an AnyRes image
    let input = MultimodalInput {
        input_ids: vec![1],
        media: vec![Media::Image {
            pixels: pattern_pixels(1, 3),
            size: (600, 600),
            layout: ImageLayout::AnyRes,
        }],
    };
    let e = model
        .forward(&input, &mut model.new_cache())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("needs 1 + 2x2 tiles") && e.contains("got 3"),
        "{e}"
    );
    // out-of-vocabulary ids
    let input = MultimodalInput {
        input_ids: vec![5, 100_000],
        media: vec![],
    };
    let e = model
        .forward(&input, &mut model.new_cache())
        .unwrap_err()
        .to_string();
    assert!(e.contains("100000") && e.contains("vocabulary"), "{e}");
}

/// One batched decode step for several sequences (a text prompt, an image and a video, so
/// different cache lengths) gives each the hidden states of its own step alone: bit for bit at
/// the AVX2 and AVX-512 levels (the few-row products' rows do not depend on each other, and
/// rotary and attention run per sequence), to rounding at the reference level (candle's matmul
/// may block 1 and 3 rows differently). In f32, bf16, and with q8_0 decode weights.
#[test]
fn batched_decode_equals_each_sequence_alone() {
    let m = manifest();
    let exact = onevision_nn::cpu::level() >= onevision_nn::cpu::KernelLevel::Avx2;
    for name in ["tied", "gqa"] {
        let case = |c: &str| m.models[name].cases.iter().find(|x| x.name == c).unwrap();
        let text = input(case("text"), &case_tensors(name, "text")).unwrap();
        for (dtype, quant) in [
            (ComputeDType::F32, None),
            (ComputeDType::BF16, None),
            (ComputeDType::F32, Some(Quantization::Q8_0)),
        ] {
            let dir = fixtures().join(name).join("checkpoint");
            let mut model = LlavaOnevision::load(&dir, dtype, &Device::Cpu).unwrap().0;
            if let Some(q) = quant {
                model.quantize_decode(q).unwrap();
            }
            let mut alone = Vec::new();
            for c in ["text", "image_small", "video"] {
                let inp = input(case(c), &case_tensors(name, c)).unwrap();
                let mut cache = model.new_cache();
                model.forward(&inp, &mut cache).unwrap();
                alone.push(cache);
            }
            let mut batched: Vec<_> = alone.to_vec();
            let ids = &text.input_ids;
            for step in 0..3 {
                let tokens: Vec<u32> = (0..alone.len())
                    .map(|i| ids[(5 * i + step) % ids.len()])
                    .collect();
                let mut refs: Vec<&mut onevision_nn::KvCache> = batched.iter_mut().collect();
                let together = model.forward_decode_batch(&tokens, &mut refs).unwrap();
                assert_eq!(together.dims3().unwrap().0, tokens.len());
                for (i, cache) in alone.iter_mut().enumerate() {
                    let one = model.forward_tokens(&[tokens[i]], cache).unwrap();
                    let row = together.narrow(0, i, 1).unwrap();
                    let f = |t: &Tensor| {
                        t.to_dtype(candle_core::DType::F32)
                            .unwrap()
                            .flatten_all()
                            .unwrap()
                            .to_vec1::<f32>()
                            .unwrap()
                    };
                    let (a, b) = (f(&one), f(&row));
                    let what = format!("{name} {dtype:?} {quant:?} step {step} sequence {i}");
                    if exact {
                        let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(same, "{what}: batched differs from alone");
                    } else {
                        let scale = a.iter().fold(0f32, |s, x| s.max(x.abs()));
                        let d = a
                            .iter()
                            .zip(&b)
                            .fold(0f32, |s, (x, y)| s.max((x - y).abs()));
                        assert!(d <= 1e-2 * scale, "{what}: off by {d} (scale {scale})");
                    }
                    assert_eq!(cache.len(), batched[i].len(), "{what}: cache lengths");
                }
            }
        }
    }
}

/// A batched step with a cache per token only: a mismatch is refused, not guessed.
#[test]
fn batched_decode_needs_one_cache_per_token() {
    let model = load("tied");
    let mut cache = model.new_cache();
    let e = model
        .forward_decode_batch(&[1, 2], &mut [&mut cache])
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 tokens, 1 caches"), "{e}");
}
