//! `onevision world`: the files it writes, its one-line summary, and its errors.

use std::process::{Command, Output, Stdio};

fn onevision(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_onevision"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run onevision")
}

#[test]
fn world_writes_a_split_and_says_what_it_wrote() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let run = onevision(&[
        "world", "--out", dir, "--split", "test", "--seed", "5", "--count", "14",
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("14 test samples -> "), "{stdout}");
    assert!(
        stdout.contains("(caption 2, detail 2, color 2, shape 2, count 2, position 2, choice 2)"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("test.json")).unwrap()).unwrap();
    let samples = json.as_array().unwrap();
    assert_eq!(samples.len(), 14);
    for s in samples {
        let png = out.path().join(s["image"].as_str().unwrap());
        let img = image::open(&png).unwrap();
        assert_eq!((img.width(), img.height()), (192, 192), "{}", png.display());
    }
}

#[test]
fn world_refuses_an_unknown_split_and_a_tiny_image() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let run = onevision(&["world", "--out", dir, "--split", "dev", "--seed", "1"]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("expected train or test"));
    let run = onevision(&[
        "world",
        "--out",
        dir,
        "--split",
        "train",
        "--seed",
        "1",
        "--image-size",
        "8",
    ]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("expected at least 32 px"));
}
