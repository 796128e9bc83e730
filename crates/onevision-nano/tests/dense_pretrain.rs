//! The vision tower's dense pretraining: the processor views it labels are the ones the
//! processor makes, the sub-cell targets name what the world drew under them, and a short run
//! on a micro checkpoint learns (its loss falls), repeats itself exactly, and changes only the
//! tower's tensors.

use std::path::Path;

use onevision_models::LlavaOnevisionConfig;
use onevision_nano::dense_pretrain::{
    anyres_views, draw, pretrain_dense, view_targets, DensePretrainConfig, Head, LOG_FILE, SUB,
};
use onevision_nano::init::{create, NanoDims};
use onevision_world::labels::label_scene;
use onevision_world::{Color, Object, Scene, Shape, Size};
use safetensors::SafeTensors;

fn checkpoint(dir: &Path, dims: &NanoDims) -> LlavaOnevisionConfig {
    let texts: Vec<String> = (0..200)
        .map(|i| format!("a red circle {i} and two blue squares at the top left"))
        .collect();
    create(dir, dims, &texts, 300, 3).unwrap();
    LlavaOnevisionConfig::from_file(&dir.join("config.json")).unwrap()
}

#[test]
fn views_are_the_base_tile_then_the_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = checkpoint(&tmp.path().join("default"), &NanoDims::DEFAULT);
    // 96-px tiles: a 192-px image is the base tile (squashed 2x) and 2x2 native crops.
    let v = anyres_views(192, &cfg);
    assert_eq!(v.len(), 5);
    assert!(v[0].base && v[0].scale == 2.0 && v[0].x0 == 0.0);
    let crops: Vec<(f64, f64, f64)> = v[1..].iter().map(|v| (v.x0, v.y0, v.scale)).collect();
    assert_eq!(
        crops,
        vec![
            (0.0, 0.0, 1.0),
            (96.0, 0.0, 1.0),
            (0.0, 96.0, 1.0),
            (96.0, 96.0, 1.0)
        ]
    );
    // 48-px tiles: the best grid within 3x3 is 144 px, so the image is shrunk by 3/4.
    let cfg = checkpoint(&tmp.path().join("micro"), &NanoDims::MICRO);
    let v = anyres_views(192, &cfg);
    assert_eq!(v.len(), 10);
    assert!(
        (v[5].x0 - 64.0).abs() < 1e-9 && (v[5].y0 - 64.0).abs() < 1e-9,
        "{:?}",
        v[5]
    );
    assert!((v[5].scale - 192.0 / 144.0).abs() < 1e-9);
}

#[test]
fn targets_name_what_lies_under_each_sub_cell() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = checkpoint(tmp.path(), &NanoDims::DEFAULT);
    // One large red square centered at (120, 40) px of a 192-px image: half-width 0.8 * 16.3.
    let scene = Scene {
        objects: vec![Object {
            shape: Shape::Square,
            color: Color::Red,
            size: Size::Large,
            x: 120.0 / 192.0,
            y: 40.0 / 192.0,
        }],
    };
    let map = label_scene(&scene, 192);
    let views = anyres_views(192, &cfg);
    let (grid, patch) = (cfg.vision.grid(), cfg.vision.patch_size);
    let sub = patch / SUB;
    let head = |h: Head| Head::ALL.iter().position(|&x| x == h).unwrap();
    // The top-right tile (view 2) covers x 96..192, y 0..96 at native scale: the center (120, 40)
    // is tile pixel (24, 40), sub-cell column 3, row 5 of the 12x12 sub-cells.
    let t = view_targets(&map, &views[2], grid, patch);
    assert_eq!(t.len(), grid * grid * SUB * SUB);
    let at = |sx: usize, sy: usize| {
        let (pc, pr, sc, sr) = (sx / SUB, sy / SUB, sx % SUB, sy % SUB);
        t[((pr * grid + pc) * SUB + sr) * SUB + sc]
    };
    let c = at(24 / sub, 40 / sub);
    assert_eq!(c[head(Head::Shape)], Some(2), "square is Shape::ALL[1]");
    assert_eq!(c[head(Head::Color)], Some(1), "red is Color::ALL[0]");
    assert_eq!(c[head(Head::Size)], Some(2));
    assert_eq!(c[head(Head::Center)], Some(1));
    assert_eq!(c[head(Head::Cell)], None, "no position off the base tile");
    // Exactly one sub-cell of the tile holds the center; the far corner is background.
    let centers = t
        .iter()
        .filter(|x| x[head(Head::Center)] == Some(1))
        .count();
    assert_eq!(centers, 1);
    let corner = at(11, 11);
    assert_eq!(corner[head(Head::Shape)], Some(0));
    assert_eq!(corner[head(Head::Color)], Some(0));
    // The other tiles show nothing of it.
    for v in [&views[1], &views[3], &views[4]] {
        let t = view_targets(&map, v, grid, patch);
        assert!(t.iter().all(|x| x[head(Head::Color)] == Some(0)), "{v:?}");
    }
    // The base tile: the object is at the top center cell (x 120 of 192 is in the middle
    // third), and each sub-cell knows its 3x3 position.
    let b = view_targets(&map, &views[0], grid, patch);
    let base_at = |sx: usize, sy: usize| {
        let (pc, pr, sc, sr) = (sx / SUB, sy / SUB, sx % SUB, sy % SUB);
        b[((pr * grid + pc) * SUB + sr) * SUB + sc]
    };
    let bc = base_at(60 / sub, 20 / sub);
    assert_eq!(bc[head(Head::Shape)], Some(2));
    assert_eq!(bc[head(Head::Cell)], Some(1), "top center");
    assert_eq!(base_at(0, 11)[head(Head::Cell)], Some(6), "bottom left");
}

#[test]
fn documents_carry_glyph_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = checkpoint(tmp.path(), &NanoDims::DEFAULT);
    let views = anyres_views(192, &cfg);
    let head = Head::ALL.iter().position(|&x| x == Head::Glyph).unwrap();
    let mut glyphs = 0;
    for k in 0..40 {
        let d = draw(5, k, 192, 1.0).unwrap();
        for v in &views[1..] {
            glyphs += view_targets(&d.labels, v, cfg.vision.grid(), cfg.vision.patch_size)
                .iter()
                .filter(|t| t[head].is_some_and(|g| g > 0))
                .count();
        }
    }
    assert!(
        glyphs > 40 * 4,
        "only {glyphs} glyph sub-cells in 40 documents"
    );
}

#[test]
fn a_short_run_learns_repeats_and_changes_only_the_tower() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("micro");
    checkpoint(&model, &NanoDims::MICRO);
    let run = |out: &str, steps: usize| {
        let mut cfg = DensePretrainConfig::new(model.clone(), tmp.path().join(out));
        cfg.steps = steps;
        cfg.batch_size = 4;
        cfg.lr = 3e-3;
        cfg.print_every = 0;
        pretrain_dense(&cfg).unwrap()
    };
    let s = run("a", 40);
    let first = s.losses[0];
    let last: f64 = s.losses[35..].iter().sum::<f64>() / 5.0;
    assert!(last < 0.8 * first, "loss {first} -> {last}");
    let t = run("b", 40);
    assert_eq!(s.losses, t.losses, "the same seed draws the same images");

    let read = |dir: &Path| std::fs::read(dir.join("model.safetensors")).unwrap();
    let (a, b) = (read(&model), read(&tmp.path().join("a")));
    let (a, b) = (
        SafeTensors::deserialize(&a).unwrap(),
        SafeTensors::deserialize(&b).unwrap(),
    );
    let mut changed = 0;
    for (name, t) in a.tensors() {
        let u = b.tensor(&name).unwrap();
        if t.data() != u.data() {
            assert!(name.contains("vision_tower"), "{name} changed");
            changed += 1;
        }
    }
    assert!(changed > 0, "the tower did not change");
}

#[test]
fn a_probe_trains_the_head_only_and_writes_no_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("micro");
    checkpoint(&model, &NanoDims::MICRO);
    let before = std::fs::read(model.join("model.safetensors")).unwrap();
    let out = tmp.path().join("probe");
    let mut cfg = DensePretrainConfig::new(model.clone(), out.clone());
    cfg.steps = 40;
    cfg.batch_size = 4;
    cfg.lr = 3e-3;
    cfg.print_every = 0;
    cfg.probe = true;
    let s = pretrain_dense(&cfg).unwrap();
    let first = s.losses[0];
    let last: f64 = s.losses[35..].iter().sum::<f64>() / 5.0;
    assert!(
        last < first,
        "the head alone still learns: loss {first} -> {last}"
    );
    assert!(
        !out.join("model.safetensors").exists(),
        "a probe writes no checkpoint"
    );
    assert!(out.join(LOG_FILE).exists(), "a probe writes its log");
    assert_eq!(
        before,
        std::fs::read(model.join("model.safetensors")).unwrap()
    );

    // With the tower trained too, the same run learns faster: the probe really froze it.
    cfg.probe = false;
    cfg.output = tmp.path().join("full");
    let t = pretrain_dense(&cfg).unwrap();
    let full: f64 = t.losses[35..].iter().sum::<f64>() / 5.0;
    assert_ne!(
        s.losses[1..],
        t.losses[1..],
        "freezing the tower changed nothing"
    );
    assert!(full < last, "frozen {last} vs trained {full}");
}
