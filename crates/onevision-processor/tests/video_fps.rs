//! LLaVA-NeXT's training frame selection (`FrameSelection::Fps`) against the references in
//! fixtures/video/fps/expected.json (made by tools/fixtures/make_video_fps_fixtures.py): for
//! every video fixture and (fps, upbound), the average frame rate PyAV reads (or the GIF
//! delays give), the indices LLaVA-NeXT's formula gives, and the frames at them; Python's
//! `round()` for many rates; bad rates refused with a clear error.

use std::path::{Path, PathBuf};

use onevision_processor::video::{
    load_video, load_video_frames, FrameRate, FrameSelection, Video, VideoSource,
};
use onevision_processor::{DecodeLimits, Error};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn video_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/video")
}

fn expected() -> Value {
    let path = video_fixtures().join("fps/expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run tools/fixtures/make_video_fps_fixtures.py",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("integer") as usize)
        .collect()
}

fn rate_of(v: &Value) -> Option<FrameRate> {
    if v.is_null() {
        return None;
    }
    let nd = usizes(v);
    Some(FrameRate::new(nd[0] as u64, nd[1] as u64).expect("a positive rate"))
}

fn short_sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..16]
        .to_string()
}

fn load(src: VideoSource, sel: FrameSelection) -> Video {
    load_video_frames(src, sel, &DecodeLimits::default()).unwrap_or_else(|e| panic!("{sel:?}: {e}"))
}

fn sources() -> Vec<(String, Value)> {
    let exp = expected();
    let sources = exp["sources"].as_object().expect("sources").clone();
    assert!(sources.len() >= 8, "only {} sources", sources.len());
    sources.into_iter().collect()
}

#[test]
fn fps_selection_equals_llava_next_on_every_fixture() {
    let mut checked = 0;
    for (name, src) in sources() {
        let path = video_fixtures().join(src["path"].as_str().unwrap());
        let want_rate = rate_of(&src["rate"]);
        for case in src["cases"].as_array().unwrap() {
            let sel = FrameSelection::Fps {
                fps: case["video_fps"].as_f64().unwrap(),
                upbound: case["frames_upbound"].as_u64().unwrap() as usize,
            };
            let video = load(VideoSource::Path(&path), sel);
            let at = format!("{name} {sel:?}");
            assert_eq!(
                video.total_frames as u64,
                src["total_frames"].as_u64().unwrap(),
                "{at}: total frames"
            );
            assert_eq!(video.avg_frame_rate, want_rate, "{at}: average frame rate");
            let want = usizes(&case["indices"]);
            assert_eq!(video.indices, want, "{at}: indices");
            // The same rule without decoding.
            assert_eq!(
                sel.indices(video.total_frames, want_rate).unwrap(),
                want,
                "{at}: FrameSelection::indices"
            );
            assert_eq!(video.frames.len(), want.len(), "{at}: frame count");
            for (frame, i) in video.frames.iter().zip(&want) {
                assert_eq!(
                    short_sha(&frame.data),
                    src["frames"][i.to_string()].as_str().unwrap(),
                    "{at}: frame {i}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 8 * 18, "only {checked} cases");
}

/// Uploads give what files give, rate included.
#[test]
fn bytes_equal_paths() {
    let sel = FrameSelection::Fps {
        fps: 2.0,
        upbound: 32,
    };
    for rel in [
        "fps/clip_2997.mp4",
        "fps/clip_7_5.webm",
        "fps/varied_delays.gif",
    ] {
        let path = video_fixtures().join(rel);
        let bytes = std::fs::read(&path).unwrap();
        let from_bytes = load(
            VideoSource::Bytes {
                bytes: &bytes,
                what: "upload",
            },
            sel,
        );
        assert_eq!(from_bytes, load(VideoSource::Path(&path), sel), "{rel}");
    }
}

/// `round(num / den / fps)` as Python computes it (half to even, on the f64 quotient), at
/// least 1: the step between selected frames.
#[test]
fn steps_equal_python_round() {
    let exp = expected();
    let table = exp["steps"].as_array().unwrap();
    assert!(table.len() > 100, "only {} steps", table.len());
    let mut ties = 0;
    for row in table {
        let row = row.as_array().unwrap();
        let (num, den) = (row[0].as_u64().unwrap(), row[1].as_u64().unwrap());
        let fps = row[2].as_f64().unwrap();
        let python = row[3].as_u64().unwrap() as usize;
        let rate = FrameRate::new(num, den);
        let step = python.max(1);
        let sel = FrameSelection::Fps { fps, upbound: 0 };
        assert_eq!(
            sel.indices(2 * step + 1, rate).unwrap(),
            vec![0, step, 2 * step],
            "{num}/{den} fps at {fps}: Python's round gives {python}"
        );
        let q = num as f64 / den as f64 / fps;
        if q.fract() == 0.5 {
            ties += 1;
        }
    }
    assert!(ties >= 5, "only {ties} exact halves in the table");
}

/// `load_video` is `Uniform`, and reports the rate too.
#[test]
fn uniform_is_load_video() {
    for rel in ["clip_h264.mp4", "animated.gif", "frames"] {
        let path = video_fixtures().join(rel);
        let old = load_video(VideoSource::Path(&path), 8, &DecodeLimits::default()).unwrap();
        assert_eq!(
            old,
            load(VideoSource::Path(&path), FrameSelection::Uniform(8)),
            "{rel}"
        );
    }
    let mp4 = load(
        VideoSource::Path(&video_fixtures().join("fps/clip_2997.mp4")),
        FrameSelection::Uniform(4),
    );
    assert_eq!(mp4.avg_frame_rate, FrameRate::new(30000, 1001));
    assert_eq!(mp4.indices, vec![0, 21, 42, 63]);
}

#[test]
fn bad_rates_are_refused_before_reading() {
    // The file does not exist: the rate is refused first.
    let path = video_fixtures().join("fps/missing.mp4");
    for fps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let sel = FrameSelection::Fps { fps, upbound: 32 };
        match load_video_frames(VideoSource::Path(&path), sel, &DecodeLimits::default()) {
            Err(Error::Video { what, reason }) => {
                assert!(what.contains("missing.mp4"), "{what}");
                assert!(
                    reason.contains("expected a finite rate above 0"),
                    "{reason}"
                );
            }
            other => panic!("fps {fps}: expected Error::Video, got {other:?}"),
        }
    }
    match load_video_frames(
        VideoSource::Path(&path),
        FrameSelection::Uniform(0),
        &DecodeLimits::default(),
    ) {
        Err(Error::Video { reason, .. }) => assert!(reason.contains("0 frames were requested")),
        other => panic!("expected Error::Video, got {other:?}"),
    }
}
