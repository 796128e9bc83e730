//! Image decoding, Pillow-exact resizing and pixel values against Pillow 13.0.0 and transformers
//! 5.24's `LlavaOnevisionImageProcessorPil`, on the goldens in fixtures/images (made by
//! tools/fixtures/make_image_fixtures.py; schemas in its README and the JSON "fields").

use std::path::{Path, PathBuf};

use onevision_processor::config::ProcessorConfig;
use onevision_processor::image::{decode_file, DecodeLimits, RgbImage};
use onevision_processor::pixels::{anyres_tiles, normalize, square_tile};
use onevision_processor::resize::resize_bicubic;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn images_dir() -> PathBuf {
    root().join("fixtures/images")
}

fn load(name: &str) -> Value {
    let p = images_dir().join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("fixture JSON")
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The spec's synthetic image (`R = x*255//(W-1)`, ...; numpy's `// 0` gives 0).
fn synth(w: usize, h: usize) -> RgbImage {
    let mut data = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let r = if w > 1 { x * 255 / (w - 1) } else { 0 };
            let g = if h > 1 { y * 255 / (h - 1) } else { 0 };
            data.extend_from_slice(&[r as u8, g as u8, ((x + y) * 7 % 256) as u8]);
        }
    }
    RgbImage::from_raw(w, h, data).unwrap()
}

/// Hashed noise, the formula written in resize.json.
fn noise(w: usize, h: usize) -> RgbImage {
    let mut data = Vec::with_capacity(w * h * 3);
    for y in 0..h as u32 {
        for x in 0..w as u32 {
            for c in 0..3u32 {
                let mut v =
                    x.wrapping_mul(73856093) ^ y.wrapping_mul(19349663) ^ c.wrapping_mul(83492791);
                v = (v ^ (v >> 13)).wrapping_mul(1274126177);
                data.push(((v >> 16) & 0xFF) as u8);
            }
        }
    }
    RgbImage::from_raw(w, h, data).unwrap()
}

fn source(entry: &Value) -> RgbImage {
    let dim = |k: &str| entry[k].as_u64().expect("w and h of a generated source") as usize;
    let (w, h) = (|| dim("w"), || dim("h"));
    let (w, h) = match entry["kind"].as_str().unwrap() {
        "synth" | "noise" => (w(), h()),
        _ => (0, 0),
    };
    match entry["kind"].as_str().unwrap() {
        "photo" | "photo_rgba" => decode_file(
            &images_dir().join(entry["file"].as_str().unwrap()),
            &DecodeLimits::default(),
        )
        .expect("decode"),
        "synth" => synth(w, h),
        "noise" => noise(w, h),
        k => panic!("unknown source kind {k}"),
    }
}

fn max_abs_diff(a: &[u8], b: &[u8]) -> (u8, usize) {
    let mut worst = 0u8;
    let mut n = 0;
    for (x, y) in a.iter().zip(b) {
        let d = x.abs_diff(*y);
        worst = worst.max(d);
        n += (d != 0) as usize;
    }
    (worst, n)
}

fn b64(s: &str) -> Vec<u8> {
    let table = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64"),
        }
    };
    let clean: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = vec![];
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= table(c) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// Every sample, lossy ones included (JPEG goes through libjpeg-turbo, as in Pillow), decodes
/// to exactly Pillow's bytes after transformers' RGB conversion.
#[test]
fn decode_matches_pillow() {
    let d = load("decode.json");
    let mut n = 0;
    for f in d["files"].as_array().unwrap() {
        let file = f["file"].as_str().unwrap();
        let img = decode_file(&images_dir().join(file), &DecodeLimits::default())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            (img.width as u64, img.height as u64),
            (f["w"].as_u64().unwrap(), f["h"].as_u64().unwrap()),
            "{file}"
        );
        if sha(&img.data) != f["sha256"].as_str().unwrap() {
            let detail = f.get("rgb_b64").map(|s| {
                let (worst, n) = max_abs_diff(&img.data, &b64(s.as_str().unwrap()));
                format!("{n} bytes differ, max {worst}")
            });
            panic!(
                "{file} ({}): decode differs from Pillow {detail:?}",
                f["pil_mode"]
            );
        }
        n += 1;
    }
    assert!(n >= 43, "{n}");
    eprintln!("decode: {n} files byte-identical to Pillow");
}

#[test]
fn resize_is_byte_identical_to_pillow() {
    let r = load("resize.json");
    let mut checked = 0;
    for s in r["sources"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        let img = source(s);
        assert_eq!(
            sha(&img.data),
            s["sha256"].as_str().unwrap(),
            "{name}: source bytes"
        );
        for t in s["targets"].as_array().unwrap() {
            let (w, h) = (
                t["w"].as_u64().unwrap() as usize,
                t["h"].as_u64().unwrap() as usize,
            );
            let out = resize_bicubic(&img, w, h);
            assert_eq!(
                sha(&out.data),
                t["sha256"].as_str().unwrap(),
                "{name} -> {w}x{h} ({}): first bytes {:?}, want {}",
                t["pass_order"],
                &out.data[..6.min(out.data.len())],
                t["first6"]
            );
            checked += 1;
        }
    }
    assert!(checked >= 20 * 7, "{checked}");
    eprintln!("resize: {checked} (source, target) pairs byte-identical to Pillow");
}

fn processor_config() -> ProcessorConfig {
    ProcessorConfig::from_json(
        &serde_json::json!({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}),
        "test",
        false,
    )
    .unwrap()
}

#[test]
fn normalize_lut_matches_numpy() {
    let p = load("pixels.json");
    let table = processor_config().normalize.table(0);
    for (v, want) in p["normalize_lut"].as_array().unwrap().iter().enumerate() {
        assert_eq!(table[v], want.as_f64().unwrap() as f32, "u8 {v}");
    }
}

#[test]
fn pixel_values_equal_transformers_pil_processor() {
    let p = load("pixels.json");
    let cfg = processor_config();
    let mut n_images = 0;
    for case in p["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        for im in case["images"].as_array().unwrap() {
            let img = source(&im["input"]);
            assert_eq!(
                img.size_hw(),
                (
                    im["h"].as_u64().unwrap() as usize,
                    im["w"].as_u64().unwrap() as usize
                )
            );
            let tiles = match im["path"].as_str().unwrap() {
                "anyres" => anyres_tiles(&img, &cfg),
                "pad_to_square" => vec![square_tile(&img, &cfg)],
                other => panic!("{other}"),
            };
            assert_eq!(
                tiles.len() as u64,
                im["num_patches"].as_u64().unwrap(),
                "{name}"
            );
            let px = normalize(&tiles, &cfg.normalize);
            let bytes: Vec<u8> = px.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            if sha(&bytes) != im["sha256"].as_str().unwrap() {
                for (i, want) in im["patch_sha256"].as_array().unwrap().iter().enumerate() {
                    let tb: Vec<u8> = px.tile(i).iter().flat_map(|v| v.to_le_bytes()).collect();
                    let sum: f64 = px.tile(i).iter().map(|&v| v as f64).sum();
                    assert_eq!(
                        sha(&tb),
                        want.as_str().unwrap(),
                        "{name} ({}): patch {i} differs; sum {sum} vs {}",
                        im["input"]["name"],
                        im["patch_sums"][i]
                    );
                }
            }
            for (i, want) in im["patch_sums"].as_array().unwrap().iter().enumerate() {
                let sum: f64 = px.tile(i).iter().map(|&v| v as f64).sum();
                let want = want.as_f64().unwrap();
                assert!(
                    (sum - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{name} patch {i}: {sum} vs {want}"
                );
            }
            n_images += 1;
        }
    }
    eprintln!("pixel values: {n_images} images bit-identical (max |diff| = 0) to transformers' PIL processor");
}

/// The spec's test_vectors.json (spec §9, copied to fixtures/images/spec_test_vectors.json so CI
/// needs nothing outside the repository): per-patch sums of the PIL processor's output for
/// synthetic images.
#[test]
fn spec_test_vectors() {
    let path: &Path = &images_dir().join("spec_test_vectors.json");
    let Ok(text) = std::fs::read_to_string(path) else {
        panic!("{} is missing", path.display());
    };
    let v: Value = serde_json::from_str(&text).unwrap();
    let cfg = processor_config();
    for (key, want) in v.as_object().unwrap() {
        let (h, w) = key.split_once('x').unwrap();
        let (h, w): (usize, usize) = (h.parse().unwrap(), w.parse().unwrap());
        let px = normalize(&anyres_tiles(&synth(w, h), &cfg), &cfg.normalize);
        assert_eq!(
            px.shape[0] as u64,
            want["num_patches"].as_u64().unwrap(),
            "{key}"
        );
        for (i, s) in want["pil_patch_sums"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let sum: f64 = px.tile(i).iter().map(|&x| x as f64).sum();
            assert!(
                (sum - s.as_f64().unwrap()).abs() < 2e-3,
                "{key} patch {i}: {sum} vs {s}"
            );
        }
        for (c, f) in want["pil_first_pixel_base"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let got = px.tile(0)[c * 384 * 384];
            assert!(
                (got as f64 - f.as_f64().unwrap()).abs() < 1e-6,
                "{key} first pixel channel {c}"
            );
        }
    }
}
