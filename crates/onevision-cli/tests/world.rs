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
        stdout.contains(
            "(caption 1, detail 1, color 1, shape 1, count 1, position 1, choice 1, \
             multi_differs 1, multi_count 1, multi_changed 1, \
             video_direction 1, video_color 1, video_appear 1, video_order 1)"
        ),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("test.json")).unwrap()).unwrap();
    let samples = json.as_array().unwrap();
    assert_eq!(samples.len(), 14);
    for s in samples {
        let pngs: Vec<std::path::PathBuf> = match (&s["image"], s["video"].as_str()) {
            (serde_json::Value::String(p), None) => vec![out.path().join(p)],
            (serde_json::Value::Array(list), None) => list
                .iter()
                .map(|p| out.path().join(p.as_str().unwrap()))
                .collect(),
            (serde_json::Value::Null, Some(video)) => {
                // A video names its frame folder or the MP4 beside it; both are written.
                let dir = out.path().join(video.trim_end_matches(".mp4"));
                let mp4 = dir.with_extension("mp4");
                assert!(mp4.is_file(), "{}", mp4.display());
                assert!(dir.join("0000.png").is_file(), "{}", dir.display());
                vec![dir.join("0000.png")]
            }
            _ => panic!("{s}"),
        };
        for png in pngs {
            let img = image::open(&png).unwrap();
            assert_eq!((img.width(), img.height()), (192, 192), "{}", png.display());
        }
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
    assert!(String::from_utf8_lossy(&run.stderr).contains("at least 32 px"));
}
