//! `onevision generate` end to end, as a user runs it: real files in, JSON out.
//!
//! - Greedy tokens equal transformers' on the same files (fixtures/e2e/expected.json, made by
//!   tools/fixtures/make_e2e_fixtures.py) for text, single images (incl. the shrink case),
//!   several images in one message, and videos from a frame directory, an MP4 and a WebM.
//! - Hostile inputs end with a clear error and a non-zero exit, never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn checkpoint(name: &str) -> PathBuf {
    root().join("fixtures/models").join(name).join("checkpoint")
}

fn onevision(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_onevision"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run onevision")
}

/// The spec's synthetic image, written as PNG (the same bytes as the fixture script writes).
fn write_synthetic_png(path: &Path, w: usize, h: usize) {
    let mut img = image::RgbImage::new(w as u32, h as u32);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let (x, y) = (x as usize, y as usize);
        let r = if w > 1 { x * 255 / (w - 1) } else { 0 };
        let g = if h > 1 { y * 255 / (h - 1) } else { 0 };
        *p = image::Rgb([r as u8, g as u8, ((x + y) * 7 % 256) as u8]);
    }
    img.save(path).expect("write PNG");
}

fn last_json_line(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "last stdout line is not JSON ({e}): {line:?}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn greedy_tokens_equal_transformers_from_files() {
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/e2e/expected.json")).expect("expected.json"),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let shrink = tmp.path().join("synthetic_1080x1920.png");
    write_synthetic_png(&shrink, 1920, 1080);
    let max_new = expected["max_new_tokens"].as_u64().unwrap().to_string();
    let mut failures = vec![];
    for case in expected["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let ckpt = checkpoint(case["model"].as_str().unwrap());
        let mut args: Vec<String> = vec![
            "generate".into(),
            "--model".into(),
            ckpt.display().to_string(),
            "--prompt".into(),
            case["prompt"].as_str().unwrap().into(),
            "--max-new-tokens".into(),
            max_new.clone(),
            "--json".into(),
        ];
        if let Some(s) = case["system"].as_str() {
            args.extend(["--system".into(), s.into()]);
        }
        for img in case["images"].as_array().unwrap() {
            let rel = img.as_str().unwrap();
            let path = if rel.ends_with("synthetic_1080x1920.png") {
                shrink.clone()
            } else {
                root().join(rel)
            };
            args.extend(["--image".into(), path.display().to_string()]);
        }
        if let Some(v) = case["video"].as_str() {
            args.extend([
                "--video".into(),
                root().join(v).display().to_string(),
                "--frames".into(),
                case["frames"].to_string(),
            ]);
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = onevision(&argv);
        assert!(
            out.status.success(),
            "{name}: exit {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let got = last_json_line(&out);
        for key in ["token_ids", "prompt_tokens", "image_tokens", "text"] {
            if got[key] != case[key] {
                failures.push(format!(
                    "{name}: {key} {} != transformers {}",
                    got[key], case[key]
                ));
            }
        }
        for key in [
            "preprocess_ms",
            "encode_ms",
            "prefill_ms",
            "ttft_ms",
            "decode_tokens_per_s",
            "total_ms",
        ] {
            assert!(
                got["timings"][key].is_number(),
                "{name}: timings.{key} missing"
            );
        }
        let n = case["token_ids"].as_array().unwrap().len();
        let want_finish = if n < max_new.parse::<usize>().unwrap() {
            "stop"
        } else {
            "length"
        };
        assert_eq!(got["finish_reason"], want_finish, "{name}");
        eprintln!(
            "{name}: {} prompt tokens, {} media tokens, tokens {}",
            got["prompt_tokens"], got["image_tokens"], got["token_ids"]
        );
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn streaming_output_is_the_json_text() {
    let ckpt = checkpoint("tied");
    let ckpt = ckpt.display().to_string();
    let base = [
        "generate",
        "--model",
        &ckpt,
        "--prompt",
        "Hello there",
        "--max-new-tokens",
        "8",
        "--ignore-eos",
    ];
    let streamed = onevision(&base);
    assert!(
        streamed.status.success(),
        "{}",
        String::from_utf8_lossy(&streamed.stderr)
    );
    let mut with_json = base.to_vec();
    with_json.push("--json");
    let json = last_json_line(&onevision(&with_json));
    assert_eq!(json["token_ids"].as_array().unwrap().len(), 8);
    assert_eq!(json["finish_reason"], "length");
    let text = String::from_utf8_lossy(&streamed.stdout);
    assert_eq!(text.trim_end_matches('\n'), json["text"].as_str().unwrap());
}

/// `--quantize q8_0` runs end to end (the first token comes from the unquantized prefill, so it
/// equals the plain run's); an unknown format is refused with the accepted ones named.
#[test]
fn quantized_decoding_runs_and_bad_formats_are_refused() {
    let ckpt = checkpoint("tied");
    let ckpt = ckpt.display().to_string();
    let base = [
        "generate",
        "--model",
        &ckpt,
        "--prompt",
        "Hello there",
        "--max-new-tokens",
        "8",
        "--ignore-eos",
        "--json",
    ];
    let plain = last_json_line(&onevision(&base));
    let mut args = base.to_vec();
    args.extend(["--quantize", "q8_0"]);
    let quantized = last_json_line(&onevision(&args));
    let ids = |v: &Value| -> Vec<u64> {
        v["token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    };
    assert_eq!(ids(&quantized).len(), 8);
    assert_eq!(ids(&quantized)[0], ids(&plain)[0]);
    let mut bad = base.to_vec();
    bad.extend(["--quantize", "q3_k"]);
    let out = onevision(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("q3_k") && err.contains("q8_0, q4_0"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Each hostile input fails cleanly: non-zero exit, an `error:` line that names the problem,
/// and no panic.
#[test]
fn hostile_inputs_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let photo = std::fs::read(root().join("fixtures/images/photos/chelsea.png")).unwrap();
    std::fs::write(t.join("truncated.png"), &photo[..photo.len() / 3]).unwrap();
    let jpeg = std::fs::read(root().join("fixtures/images/photos/rocket.jpg")).unwrap();
    std::fs::write(t.join("truncated.jpg"), &jpeg[..jpeg.len() / 4]).unwrap();
    std::fs::write(t.join("empty.png"), b"").unwrap();
    std::fs::write(t.join("notes.mp4"), b"this is a text file, not a video\n").unwrap();
    std::fs::write(t.join("empty.mp4"), b"").unwrap();
    std::fs::create_dir(t.join("empty_dir")).unwrap();
    std::fs::write(
        t.join("garbage.bin"),
        [0x13u8, 0x37, 0x00, 0xff, 0x42].repeat(100),
    )
    .unwrap();
    // A valid PNG signature and IHDR chunk announcing 100000 x 100000 pixels, then nothing.
    let mut bomb = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    bomb.extend_from_slice(&13u32.to_be_bytes());
    bomb.extend_from_slice(&ihdr);
    bomb.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    std::fs::write(t.join("bomb.png"), &bomb).unwrap();

    let ckpt = checkpoint("tied").display().to_string();
    let p = |name: &str| t.join(name).display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--image".into(), p("truncated.png")], "truncated"),
        (
            vec!["--image".into(), p("truncated.jpg")],
            "cannot decode image",
        ),
        (vec!["--image".into(), p("empty.png")], "empty"),
        (vec!["--image".into(), p("bomb.png")], "over the limit"),
        (vec!["--image".into(), p("garbage.bin")], "unknown format"),
        (vec!["--image".into(), p("missing.png")], "No such file"),
        (vec!["--video".into(), p("notes.mp4")], "cannot read video"),
        (vec!["--video".into(), p("empty.mp4")], "cannot read video"),
        (vec!["--video".into(), p("empty_dir")], "no image files"),
        (vec!["--video".into(), p("missing.mp4")], "No such file"),
        (
            vec!["--model".into(), t.display().to_string()],
            "config.json",
        ),
    ];
    for (extra, expect) in cases {
        let mut args: Vec<String> = vec!["generate".into()];
        if !extra.contains(&"--model".to_string()) {
            args.extend(["--model".into(), ckpt.clone()]);
        }
        args.extend(extra.iter().cloned());
        args.extend([
            "--prompt".into(),
            "What is this?".into(),
            "--max-new-tokens".into(),
            "2".into(),
        ]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = onevision(&argv);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} succeeded");
        assert!(!stderr.contains("panicked"), "{extra:?} panicked: {stderr}");
        assert!(stderr.starts_with("error:"), "{extra:?}: {stderr}");
        assert!(
            stderr.to_lowercase().contains(&expect.to_lowercase()),
            "{extra:?}: expected {expect:?} in {stderr}"
        );
        eprintln!("{extra:?} -> {}", stderr.trim());
    }
}

/// CRC-32 (PNG chunks), bitwise.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
