//! The whole processor on a fixture checkpoint: which images take which path, how media are
//! matched to placeholders, and that the Hub's file layout gives the same result as the
//! transformers-5 one.

use std::path::{Path, PathBuf};

use onevision_models::llava_ov::packing::ImageLayout;
use onevision_models::LlavaOnevisionConfig;
use onevision_processor::{Message, Part, Processor, RgbImage, Role};

fn checkpoint() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/tied/checkpoint")
}

fn load(dir: &Path) -> Processor {
    let cfg = LlavaOnevisionConfig::from_file(&checkpoint().join("config.json")).unwrap();
    Processor::from_dir(dir, &cfg).unwrap()
}

fn user(parts: Vec<Part>) -> Message {
    Message {
        role: Role::User,
        parts,
    }
}

fn image(w: usize, h: usize, seed: u8) -> RgbImage {
    let data = (0..w * h * 3)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    RgbImage::from_raw(w, h, data).unwrap()
}

#[test]
fn one_image_per_message_is_anyres_several_are_square_padded() {
    let p = load(&checkpoint());
    let id = p.model.image_token_id;
    // Two turns with one image each: AnyRes both (per-message rule).
    let turns = vec![
        user(vec![Part::Image, Part::Text("first".into())]),
        Message {
            role: Role::Assistant,
            parts: vec![Part::Text("ok".into())],
        },
        user(vec![Part::Image, Part::Text("second".into())]),
    ];
    let imgs = [image(640, 480, 1), image(300, 1000, 2)];
    let out = p.process(&turns, &imgs, &[], true).unwrap();
    assert!(out.images.iter().all(|i| i.layout == ImageLayout::AnyRes));
    assert_eq!(out.images[0].tokens, 2929); // 480x640, spec §2.5
    assert_eq!(out.images[0].pixels.shape, [5, 3, 384, 384]);
    // One message with two images: the square-pad path, 730 tokens and one tile each.
    let one = vec![user(vec![
        Part::Image,
        Part::Image,
        Part::Text("compare".into()),
    ])];
    let out2 = p.process(&one, &imgs, &[], true).unwrap();
    assert!(out2
        .images
        .iter()
        .all(|i| i.layout == ImageLayout::Single && i.tokens == 730));
    assert!(out2
        .images
        .iter()
        .all(|i| i.pixels.shape == [1, 3, 384, 384]));
    for o in [&out, &out2] {
        let n = o.input_ids.iter().filter(|&&t| t == id).count();
        assert_eq!(n, o.images.iter().map(|i| i.tokens).sum::<usize>());
        assert_eq!(o.media_tokens(), n);
    }
    // Media count mismatch: a clear error naming both counts.
    let e = p
        .process(&one, &imgs[..1], &[], true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 image") && e.contains("1 images"), "{e}");
}

#[test]
fn video_frames_and_tokens() {
    let p = load(&checkpoint());
    let frames: Vec<RgbImage> = (0..3).map(|i| image(160, 120, i)).collect();
    let msg = vec![user(vec![Part::Video, Part::Text("what happens?".into())])];
    let out = p.process(&msg, &[], &[frames], true).unwrap();
    assert_eq!(out.videos[0].pixels.shape, [3, 3, 384, 384]);
    assert_eq!(out.videos[0].tokens, 3 * 196 + 1);
    let vid = p.model.video_token_id;
    assert_eq!(out.input_ids.iter().filter(|&&t| t == vid).count(), 589);
    assert!(p.process(&msg, &[], &[vec![]], true).is_err());
}

/// The same checkpoint rewritten in the Hub's processor layout (preprocessor_config.json,
/// video_preprocessor_config.json, chat_template.json) processes identically.
#[test]
fn hub_layout_equals_transformers5_layout() {
    let v5 = checkpoint();
    let hub = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(v5.join(f), hub.path().join(f)).unwrap();
    }
    let proc_cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(v5.join("processor_config.json")).unwrap())
            .unwrap();
    std::fs::write(
        hub.path().join("preprocessor_config.json"),
        proc_cfg["image_processor"].to_string(),
    )
    .unwrap();
    std::fs::write(
        hub.path().join("video_preprocessor_config.json"),
        proc_cfg["video_processor"].to_string(),
    )
    .unwrap();
    let template = std::fs::read_to_string(v5.join("chat_template.jinja")).unwrap();
    std::fs::write(
        hub.path().join("chat_template.json"),
        serde_json::json!({ "chat_template": template }).to_string(),
    )
    .unwrap();
    std::fs::write(
        hub.path().join("processor_config.json"),
        serde_json::json!({"num_image_tokens": 729, "processor_class": "LlavaOnevisionProcessor",
                           "vision_feature_select_strategy": "full"})
        .to_string(),
    )
    .unwrap();
    let (a, b) = (load(&v5), load(hub.path()));
    let msg = vec![
        Message {
            role: Role::System,
            parts: vec![Part::Text("Be brief.".into())],
        },
        user(vec![
            Part::Image,
            Part::Video,
            Part::Text("Describe both.".into()),
        ]),
    ];
    let imgs = [image(500, 333, 7)];
    let vids = [vec![image(64, 48, 1), image(64, 48, 2)]];
    let (x, y) = (
        a.process(&msg, &imgs, &vids, true).unwrap(),
        b.process(&msg, &imgs, &vids, true).unwrap(),
    );
    assert_eq!(x.text, y.text);
    assert_eq!(x.input_ids, y.input_ids);
    assert_eq!(x.images[0].pixels, y.images[0].pixels);
    assert_eq!(x.videos[0].pixels, y.videos[0].pixels);
}

/// A checkpoint whose tokenizer disagrees with config.json about the placeholder ids is refused
/// at load, naming both ids.
#[test]
fn placeholder_id_mismatch_is_a_load_error() {
    let mut cfg = LlavaOnevisionConfig::from_file(&checkpoint().join("config.json")).unwrap();
    cfg.image_token_id = 5;
    let e = Processor::from_dir(&checkpoint(), &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("<image>") && e.contains('5') && e.contains("300"),
        "{e}"
    );
}
