//! Video input against the references in fixtures/video/ (made by
//! tools/fixtures/make_video_fixtures.py): numpy's frame sampling, Pillow for frame directories
//! and GIFs, the ffmpeg CLI for MP4/WebM, transformers' LlavaOnevisionVideoProcessor for the
//! pixels after resizing; and hostile inputs, which must give a clear error, never a panic.

use std::path::{Path, PathBuf};

use onevision_processor::video::{load_video, sample_indices, Video, VideoSource};
use onevision_processor::{DecodeLimits, Error, RgbImage};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/video")
}

fn read_json(name: &str) -> Value {
    let path = fixtures().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run tools/fixtures/make_video_fixtures.py",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expected() -> Value {
    read_json("expected.json")
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("integer") as usize)
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn byte_sum(bytes: &[u8]) -> u64 {
    bytes.iter().map(|&b| b as u64).sum()
}

fn load(src: VideoSource, n: usize) -> Video {
    load_video(src, n, &DecodeLimits::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// The frames equal the reference's bytes for n = 8 and 32 (sha256 and byte sums per frame).
fn check_source(name: &str, src: VideoSource) {
    let exp = &expected()["sources"][name];
    for n in [8usize, 32] {
        let video = load(src, n);
        let case = &exp["samples"][n.to_string()];
        assert_eq!(
            video.total_frames as u64,
            exp["total_frames"].as_u64().unwrap(),
            "{name}: total frames"
        );
        assert_eq!(
            video.indices,
            usizes(&case["indices"]),
            "{name} n={n}: indices"
        );
        assert_eq!(video.frames.len(), video.indices.len(), "{name} n={n}");
        for (k, (frame, want)) in video
            .frames
            .iter()
            .zip(case["frames"].as_array().unwrap())
            .enumerate()
        {
            let at = format!("{name} n={n} frame {} (#{k})", video.indices[k]);
            assert_eq!(
                frame.width as u64,
                want["width"].as_u64().unwrap(),
                "{at}: width"
            );
            assert_eq!(
                frame.height as u64,
                want["height"].as_u64().unwrap(),
                "{at}: height"
            );
            assert_eq!(
                byte_sum(&frame.data),
                want["sum"].as_u64().unwrap(),
                "{at}: byte sum"
            );
            assert_eq!(
                sha256_hex(&frame.data),
                want["sha256"].as_str().unwrap(),
                "{at}: sha256"
            );
        }
    }
}

#[test]
fn sample_indices_equal_numpy_linspace() {
    let table = read_json("sample_indices.json");
    let mut checked = 0;
    for n in usizes(&table["ns"]) {
        for total in usizes(&table["totals"]) {
            let got = sample_indices(total, n);
            if total <= n {
                assert_eq!(
                    got,
                    (0..total).collect::<Vec<_>>(),
                    "total {total} n {n}: every frame once"
                );
            } else {
                let want = usizes(&table["linspace"][n.to_string()][total.to_string()]);
                assert_eq!(got, want, "total {total} n {n}");
            }
            checked += 1;
        }
    }
    assert!(checked > 1000, "only {checked} cases");
    // Invariants: ascending, unique, first and last frame, as many as asked.
    for total in [33usize, 100, 1801, 54_321] {
        for n in [2usize, 8, 32] {
            let got = sample_indices(total, n);
            assert_eq!(got.len(), n);
            assert_eq!((got[0], got[n - 1]), (0, total - 1));
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "total {total} n {n}: {got:?}"
            );
        }
    }
}

#[test]
fn frame_directory_equals_pillow() {
    let dir = fixtures().join("frames");
    check_source("frames", VideoSource::Path(&dir));
    // notes.txt in the directory is not a frame.
    assert_eq!(load(VideoSource::Path(&dir), 32).total_frames, 10);
}

#[test]
fn mp4_h264_equals_ffmpeg_cli() {
    check_source(
        "clip_h264.mp4",
        VideoSource::Path(&fixtures().join("clip_h264.mp4")),
    );
}

#[test]
fn webm_vp9_equals_ffmpeg_cli() {
    // Matroska stores no frame count: this one is counted.
    check_source(
        "clip_vp9.webm",
        VideoSource::Path(&fixtures().join("clip_vp9.webm")),
    );
}

#[test]
fn gifs_equal_pillow() {
    check_source(
        "animated.gif",
        VideoSource::Path(&fixtures().join("animated.gif")),
    );
    check_source(
        "animated_alpha.gif",
        VideoSource::Path(&fixtures().join("animated_alpha.gif")),
    );
}

#[test]
fn bytes_equal_files() {
    for name in ["clip_h264.mp4", "clip_vp9.webm", "animated_alpha.gif"] {
        let path = fixtures().join(name);
        let bytes = std::fs::read(&path).unwrap();
        check_source(
            name,
            VideoSource::Bytes {
                bytes: &bytes,
                what: name,
            },
        );
        // No name to guess the container from: found by content.
        let anonymous = load(
            VideoSource::Bytes {
                bytes: &bytes,
                what: "upload",
            },
            8,
        );
        assert_eq!(anonymous, load(VideoSource::Path(&path), 8), "{name}");
    }
}

/// Pillow-exact bicubic to 384x384 on our MP4 frames, against transformers'
/// LlavaOnevisionVideoProcessor (its PyAV loader, torchvision antialiased bicubic): within the
/// tolerance the generator measured and recorded.
#[test]
fn resized_frames_match_transformers_video_processor() {
    let exp = expected();
    let hf = &exp["transformers"];
    let tol = &hf["tolerance"];
    let (max_tol, mean_tol) = (
        tol["max_abs"].as_u64().unwrap() as i32,
        tol["mean_abs"].as_f64().unwrap(),
    );
    let n = hf["n"].as_u64().unwrap() as usize;
    let video = load(
        VideoSource::Path(&fixtures().join(hf["source"].as_str().unwrap())),
        n,
    );
    assert_eq!(video.indices, usizes(&hf["indices"]));
    let resized: Vec<RgbImage> = video
        .frames
        .iter()
        .map(|f| onevision_processor::resize::resize_bicubic(f, 384, 384))
        .collect();
    let plane = 384 * 384 * 3;
    for (k, img) in resized.iter().enumerate() {
        assert_eq!((img.width, img.height), (384, 384));
        // Pillow's own resize of the same frames: exact.
        let pil = &hf["pillow_resized"][k];
        assert_eq!(
            sha256_hex(&img.data),
            pil["sha256"].as_str().unwrap(),
            "frame #{k}: Pillow bicubic"
        );
        // transformers: per-frame mean level.
        let hf_sum = hf["frames"][k]["sum"].as_u64().unwrap() as f64;
        let mean_diff = (byte_sum(&img.data) as f64 - hf_sum).abs() / plane as f64;
        assert!(
            mean_diff <= mean_tol,
            "frame #{k}: mean level differs by {mean_diff}"
        );
    }
    // transformers: every `row_step`-th row of some frames, elementwise.
    let rows = &hf["rows"];
    let step = rows["row_step"].as_u64().unwrap() as usize;
    let row_frames = usizes(&rows["row_frames"]);
    let bin = std::fs::read(fixtures().join(rows["file"].as_str().unwrap())).unwrap();
    let row_len = 384 * 3;
    let rows_per_frame = 384usize.div_ceil(step);
    assert_eq!(bin.len(), row_frames.len() * rows_per_frame * row_len);
    let (mut max, mut total, mut count) = (0i32, 0u64, 0u64);
    for (f, &k) in row_frames.iter().enumerate() {
        for r in 0..rows_per_frame {
            let ours = &resized[k].data[r * step * row_len..][..row_len];
            let theirs = &bin[(f * rows_per_frame + r) * row_len..][..row_len];
            for (&a, &b) in ours.iter().zip(theirs) {
                let d = (a as i32 - b as i32).abs();
                max = max.max(d);
                total += d as u64;
                count += 1;
            }
        }
    }
    let mean = total as f64 / count as f64;
    assert!(max <= max_tol, "max abs difference {max} > {max_tol}");
    assert!(mean <= mean_tol, "mean abs difference {mean} > {mean_tol}");
}

// ------------------------------------------------------------------------------------------
// Hostile inputs: an Error::Video (or Io / size error) with a message saying what was wrong.

fn video_err(result: onevision_processor::Result<Video>) -> String {
    match result {
        Err(Error::Video { what, reason }) => format!("{what}: {reason}"),
        Err(other) => panic!("expected Error::Video, got {other:?}"),
        Ok(v) => panic!("expected an error, got {} frames", v.frames.len()),
    }
}

fn assert_mentions(msg: &str, words: &[&str]) {
    for w in words {
        assert!(
            msg.contains(w),
            "error message {msg:?} does not mention {w:?}"
        );
    }
}

#[test]
fn hostile_files_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let lim = DecodeLimits::default();
    let path_err = |name: &str, bytes: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        video_err(load_video(VideoSource::Path(&p), 8, &lim))
    };

    let msg = path_err("empty.mp4", b"");
    assert_mentions(
        &msg,
        &["empty.mp4", "empty (0 bytes)", "expected a video file"],
    );

    let msg = path_err(
        "notes.mp4",
        b"These are meeting notes, not a video.\n"
            .repeat(50)
            .as_slice(),
    );
    assert_mentions(
        &msg,
        &[
            "notes.mp4",
            "cannot read it as a video",
            "expected a video file",
        ],
    );

    let mp4 = std::fs::read(fixtures().join("clip_h264.mp4")).unwrap();
    let msg = path_err("truncated.mp4", &mp4[..2048]);
    assert_mentions(&msg, &["truncated.mp4", "cannot read it as a video"]);

    let gif = std::fs::read(fixtures().join("animated.gif")).unwrap();
    let msg = path_err("truncated.gif", &gif[..gif.len() / 2]);
    assert_mentions(&msg, &["truncated.gif", "GIF"]);
    let msg = path_err("header_only.gif", &gif[..13]);
    assert_mentions(&msg, &["header_only.gif", "GIF"]);

    // A WAV file: a container FFmpeg reads, with no video stream.
    let msg = path_err("tone.wav", &wav_silence(800));
    assert_mentions(&msg, &["no video stream", "audio"]);

    // A YUV4MPEG2 header and no frame: a video stream with 0 frames.
    let msg = path_err("nothing.y4m", b"YUV4MPEG2 W16 H16 F25:1 Ip A1:1 C420jpeg\n");
    assert_mentions(&msg, &["no frames"]);

    // An HLS playlist naming a local file: FFmpeg must not follow it (nothing but the given
    // bytes is ever read).
    let target = std::fs::canonicalize(fixtures().join("clip_h264.mp4")).unwrap();
    let playlist = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nfile:{0}\n#EXTINF:2.0,\n{0}\n#EXT-X-ENDLIST\n",
        target.display()
    );
    let p = tmp.path().join("list.m3u8");
    std::fs::write(&p, &playlist).unwrap();
    assert!(
        load_video(VideoSource::Path(&p), 8, &lim).is_err(),
        "a playlist was followed"
    );
    assert!(
        load_video(
            VideoSource::Bytes {
                bytes: playlist.as_bytes(),
                what: "list.m3u8"
            },
            8,
            &lim
        )
        .is_err(),
        "a playlist was followed"
    );

    let msg = video_err(load_video(
        VideoSource::Bytes {
            bytes: &[],
            what: "upload.mp4",
        },
        8,
        &lim,
    ));
    assert_mentions(&msg, &["upload.mp4", "empty (0 bytes)"]);

    // n = 0
    let msg = video_err(load_video(
        VideoSource::Path(&fixtures().join("clip_h264.mp4")),
        0,
        &lim,
    ));
    assert_mentions(&msg, &["0 frames were requested"]);
    let msg = video_err(load_video(
        VideoSource::Path(&fixtures().join("frames")),
        0,
        &lim,
    ));
    assert_mentions(&msg, &["0 frames were requested"]);

    // A path that does not exist: an I/O error naming it.
    match load_video(VideoSource::Path(&tmp.path().join("missing.mp4")), 8, &lim) {
        Err(Error::Io { path, .. }) => assert!(path.ends_with("missing.mp4")),
        other => panic!("expected Error::Io, got {other:?}"),
    }
}

#[test]
fn hostile_directories_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let lim = DecodeLimits::default();

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let msg = video_err(load_video(VideoSource::Path(&empty), 8, &lim));
    assert_mentions(
        &msg,
        &[
            "contains no image files",
            "directory of frame images",
            "sorted by name",
        ],
    );

    let text_only = tmp.path().join("text_only");
    std::fs::create_dir(&text_only).unwrap();
    std::fs::write(text_only.join("readme.txt"), "no frames here").unwrap();
    std::fs::create_dir(text_only.join("sub.png")).unwrap(); // a directory named like an image
    std::fs::write(text_only.join(".hidden.png"), "not even a png").unwrap();
    let msg = video_err(load_video(VideoSource::Path(&text_only), 8, &lim));
    assert_mentions(&msg, &["contains no image files"]);

    // Frames of different sizes.
    let mixed = tmp.path().join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    let src = fixtures().join("frames");
    std::fs::copy(src.join("frame_000.png"), mixed.join("a.png")).unwrap();
    std::fs::copy(fixtures().join("animated.gif"), mixed.join("b.gif")).unwrap();
    let msg = video_err(load_video(VideoSource::Path(&mixed), 8, &lim));
    assert_mentions(&msg, &["112x84", "14x25", "one size"]);

    // A frame that is not an image: the image decoder's error, naming the file.
    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::copy(src.join("frame_000.png"), broken.join("f0.png")).unwrap();
    std::fs::write(broken.join("f1.png"), "not a png").unwrap();
    match load_video(VideoSource::Path(&broken), 8, &lim) {
        Err(Error::ImageDecode { what, .. }) => assert!(what.ends_with("f1.png"), "{what}"),
        other => panic!("expected Error::ImageDecode, got {other:?}"),
    }
}

#[test]
fn frame_size_is_checked_against_the_limit() {
    // 160x120 = 19200 pixels, 112x84 = 9408, 40x30 = 1200.
    let lim = DecodeLimits { max_pixels: 1000 };
    for name in [
        "clip_h264.mp4",
        "clip_vp9.webm",
        "animated_alpha.gif",
        "frames",
    ] {
        match load_video(VideoSource::Path(&fixtures().join(name)), 8, &lim) {
            Err(Error::ImageTooLarge { limit, .. }) => assert_eq!(limit, 1000),
            other => panic!("{name}: expected Error::ImageTooLarge, got {other:?}"),
        }
    }
}

/// A mono 16-bit PCM WAV of `samples` zeros.
fn wav_silence(samples: u32) -> Vec<u8> {
    let data_len = samples * 2;
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    w.resize(w.len() + data_len as usize, 0);
    w
}

// ------------------------------------------------------------------------------------------
// Cross-check with the ffmpeg CLI on encodings the fixtures do not cover: BT.709 and full-range
// video (the CLI picks the matrix and range from the frames), odd sizes (libswscale's general
// path, where the chroma siting matters), 4:2:2, 4:4:4, 10-bit, gray. Needs an `ffmpeg` binary
// built on the same libswscale as the one linked; without one it says so and checks nothing.

/// Whether `ffmpeg` is on PATH with the libswscale this crate links.
fn ffmpeg_cli_matches() -> Option<bool> {
    let out = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("libswscale"))?;
    // "libswscale      6.  7.100 /  6.  7.100": the runtime version after the slash.
    let runtime: Vec<u32> = line
        .split('/')
        .nth(1)?
        .split('.')
        .map(|p| p.trim().parse().ok())
        .collect::<Option<_>>()?;
    let linked = ffmpeg_next::software::scaling::version();
    let linked = [linked >> 16, (linked >> 8) & 0xff, linked & 0xff];
    Some(runtime == linked)
}

fn run_ffmpeg(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin"])
        .args(args)
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn containers_equal_ffmpeg_cli_across_formats() {
    if ffmpeg_cli_matches() != Some(true) {
        eprintln!("no ffmpeg CLI with the linked libswscale: cross-check skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // (file name, test source size, encoder arguments)
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "bt709.mp4",
            "96x64",
            &[
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
                "-colorspace",
                "bt709",
                "-color_primaries",
                "bt709",
                "-color_trc",
                "bt709",
            ],
        ),
        (
            "fullrange.mkv",
            "96x64",
            &[
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
                "-color_range",
                "pc",
            ],
        ),
        (
            "mjpeg.avi",
            "96x64",
            &["-c:v", "mjpeg", "-pix_fmt", "yuvj422p"],
        ),
        (
            "odd420.mkv",
            "97x61",
            &["-c:v", "ffv1", "-pix_fmt", "yuv420p"],
        ),
        (
            "bt709_odd.mkv",
            "97x61",
            &[
                "-c:v",
                "ffv1",
                "-pix_fmt",
                "yuv420p",
                "-colorspace",
                "bt709",
            ],
        ),
        (
            "yuv422.mkv",
            "96x64",
            &["-c:v", "ffv1", "-pix_fmt", "yuv422p"],
        ),
        (
            "yuv444.mkv",
            "95x63",
            &["-c:v", "ffv1", "-pix_fmt", "yuv444p"],
        ),
        (
            "ten_bit.mkv",
            "96x64",
            &["-c:v", "ffv1", "-pix_fmt", "yuv420p10le"],
        ),
        ("gray.mkv", "96x64", &["-c:v", "ffv1", "-pix_fmt", "gray"]),
        (
            "vp9_bt709.webm",
            "96x64",
            &[
                "-c:v",
                "libvpx-vp9",
                "-pix_fmt",
                "yuv420p",
                "-colorspace",
                "bt709",
                "-deadline",
                "realtime",
            ],
        ),
    ];
    for &(name, size, codec) in cases {
        let path = tmp.path().join(name);
        let path_s = path.to_str().unwrap();
        let src = format!("testsrc2=size={size}:rate=10");
        let mut args = vec!["-f", "lavfi", "-i", &src, "-frames:v", "12"];
        args.extend_from_slice(codec);
        args.push(path_s);
        run_ffmpeg(&args);
        let cli = run_ffmpeg(&[
            "-i",
            path_s,
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ]);
        let video = load(VideoSource::Path(&path), 100);
        assert_eq!(video.total_frames, 12, "{name}");
        let ours: Vec<u8> = video
            .frames
            .iter()
            .flat_map(|f| f.data.iter().copied())
            .collect();
        assert_eq!(ours.len(), cli.len(), "{name}: bytes");
        let differing = ours.iter().zip(&cli).filter(|(a, b)| a != b).count();
        assert_eq!(
            differing,
            0,
            "{name}: {differing} of {} bytes differ from the ffmpeg CLI",
            cli.len()
        );
    }
}
