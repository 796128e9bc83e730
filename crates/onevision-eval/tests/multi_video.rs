//! The multi-image and video recipes beyond their scores (those are in tests/metrics.rs):
//! `doc_to_text` equals lmms-eval 0.2.1's on every fixture case, the dataset each task names
//! is where the data fixture lies with the columns the task reads, generation lengths and
//! targets are the yamls', and each video task finds its files below `--video-dir` as its doc
//! comment says (and names the path it expected when a file is missing).

use std::path::{Path, PathBuf};

use onevision_eval::dataset::Dataset;
use onevision_eval::doc::{Row, Visual};
use onevision_eval::task::{Context, Task};
use onevision_eval::tasks::multi_video;
use serde_json::{Map, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/eval")
}

fn task(name: &str) -> Box<dyn Task> {
    multi_video::tasks()
        .into_iter()
        .find(|t| t.name() == name)
        .unwrap_or_else(|| panic!("no task {name}"))
}

fn cases(name: &str) -> Vec<Value> {
    let path = root().join("metrics").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let fx: Value = serde_json::from_str(&text).unwrap();
    fx["cases"].as_array().unwrap().clone()
}

fn doc(case: &Value) -> Map<String, Value> {
    case["doc"].as_object().unwrap().clone()
}

fn row(doc: Map<String, Value>) -> Row {
    let mut r = Row {
        fields: doc,
        ..Default::default()
    };
    r.images.insert("image_list".into(), vec![]);
    r
}

fn ctx(task_dir: &str) -> Context {
    Context {
        video_dir: Some(root().join("videos").join(task_dir)),
        dataset_dir: None,
    }
}

#[test]
fn doc_to_text_equals_lmms_evals_on_every_case() {
    let mut checked = 0;
    for t in multi_video::tasks() {
        for (i, case) in cases(t.name()).iter().enumerate() {
            let got = multi_video::doc_to_text(t.name(), &doc(case))
                .expect("a task of this module")
                .unwrap_or_else(|e| panic!("{} case {i}: {e}", t.name()));
            let want = case["prompt"].as_str().unwrap();
            assert_eq!(got, want, "{} case {i}", t.name());
            checked += 1;
        }
    }
    assert!(checked >= 7 * 300, "{checked}");
}

/// Every task's data fixture read through the dataset layer (as `onevision eval --data`
/// reads it), each row's prompt built: images from the image columns, videos from the video
/// fixtures (rows without a video file must name the path they expected).
#[test]
fn data_fixtures_read_and_prompt() {
    let video_dirs = [
        ("videomme", "videomme"),
        ("nextqa_mc_test", "nextqa_mc_test"),
        ("mlvu", "mlvu"),
        ("egoschema_subset", "egoschema_subset"),
        ("mvbench_", "mvbench"),
    ];
    let mut videos = 0;
    for t in multi_video::tasks() {
        let spec = t.dataset();
        let ds = Dataset::for_task(&spec, Some(&root().join("data")), Path::new("/nonexistent"))
            .unwrap_or_else(|e| panic!("{}: {e}", t.name()));
        let rows: Vec<Row> = ds.rows(0..ds.len()).unwrap().map(|r| r.unwrap()).collect();
        assert!(
            (3..=6).contains(&rows.len()),
            "{}: {} rows",
            t.name(),
            rows.len()
        );
        let dir = video_dirs
            .iter()
            .find(|(p, _)| t.name().starts_with(p))
            .map(|(_, d)| *d);
        for r in &rows {
            let c = dir.map(ctx).unwrap_or_default();
            match (t.prompt(r, &c), dir) {
                (Ok(p), None) => match p.visual {
                    Visual::Images(imgs) => assert!(!imgs.is_empty(), "{}", t.name()),
                    other => panic!("{}: {other:?}", t.name()),
                },
                (Ok(p), Some(_)) => {
                    assert!(matches!(p.visual, Visual::Video(_) | Visual::Frames(_)));
                    videos += 1;
                }
                (Err(e), Some(_)) => assert!(
                    e.0.contains("expected") || e.0.contains("not readable"),
                    "{e}"
                ),
                (Err(e), None) => panic!("{}: {e}", t.name()),
            }
        }
    }
    assert_eq!(videos, 3 + 2 + 2 + 2 + 4, "rows with a video fixture");
    let d = task("videomme").dataset();
    assert_eq!(
        (d.repo.as_str(), d.config.as_deref(), d.split.as_str()),
        ("lmms-lab/Video-MME", Some("videomme"), "test")
    );
    let d = task("mvbench_fine_grained_action").dataset();
    assert_eq!(
        (d.repo.as_str(), d.config.as_deref(), d.split.as_str()),
        ("OpenGVLab/MVBench", Some("fine_grained_action"), "train")
    );
    let d = task("llava_interleave_bench_multi_view").dataset();
    assert_eq!(d.config.as_deref(), Some("multi_view_in_domain"));
}

#[test]
fn generation_lengths_targets_and_groups_are_the_yamls() {
    for (name, n) in [
        ("muirbench", 16),
        ("llava_interleave_bench_in_domain", 16),
        ("videomme", 16),
        ("nextqa_mc_test", 1024),
        ("mvbench_action_count", 16),
        ("mlvu", 16),
        ("egoschema_subset", 1024),
    ] {
        assert_eq!(task(name).max_new_tokens(), n, "{name}");
    }
    for name in [
        "muirbench",
        "videomme",
        "nextqa_mc_test",
        "mlvu",
        "egoschema_subset",
        "mvbench_state_change",
        "llava_interleave_bench_out_domain",
    ] {
        let c = &cases(name)[0];
        assert_eq!(task(name).target(&doc(c)), c["doc"]["answer"], "{name}");
    }
    assert_eq!(task("muirbench").filter_name(), "flexible-extract");
    assert_eq!(task("videomme").filter_name(), "none");
    let groups = |g: &str| {
        multi_video::tasks()
            .iter()
            .filter(|t| t.group() == Some(g))
            .count()
    };
    assert_eq!(groups("mvbench"), 20);
    assert_eq!(groups("llava_interleave_bench"), 3);
}

/// The first fixture document of `name` whose `field` is `value`.
fn doc_with(name: &str, field: &str, value: &Value) -> Map<String, Value> {
    cases(name)
        .iter()
        .map(doc)
        .find(|d| d.get(field) == Some(value))
        .unwrap_or_else(|| panic!("{name}: no document with {field} = {value}"))
}

fn video_of(name: &str, dir: &str, field: &str, value: Value) -> PathBuf {
    let t = task(name);
    let p = t
        .prompt(&row(doc_with(name, field, &value)), &ctx(dir))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        p.text,
        multi_video::doc_to_text(name, &doc_with(name, field, &value))
            .unwrap()
            .unwrap()
    );
    match p.visual {
        Visual::Video(path) => {
            assert!(path.is_file(), "{}", path.display());
            path
        }
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn videos_are_found_below_video_dir() {
    let rel = |p: PathBuf, dir: &str| {
        p.strip_prefix(root().join("videos").join(dir))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let p = video_of("videomme", "videomme", "videoID", "vid00000000".into());
    assert_eq!(rel(p, "videomme"), "data/vid00000000.mp4");
    let p = video_of(
        "nextqa_mc_test",
        "nextqa_mc_test",
        "video",
        4010069381u64.into(),
    );
    assert_eq!(rel(p, "nextqa_mc_test"), "NExTVideo/4010069381.mp4");
    let p = video_of("mlvu", "mlvu", "video_name", "tr_000.mp4".into());
    assert_eq!(rel(p, "mlvu"), "tr_000.mp4");
    let id = "00000000-0000-4b2e-9c1a-000000000000";
    let p = video_of(
        "egoschema_subset",
        "egoschema_subset",
        "video_idx",
        id.into(),
    );
    assert_eq!(rel(p, "egoschema_subset"), format!("videos/{id}.mp4"));
    let p = video_of(
        "mvbench_action_count",
        "mvbench",
        "video",
        "action_count_0000.mp4".into(),
    );
    assert_eq!(rel(p, "mvbench"), "perception/videos/action_count_0000.mp4");
    let p = video_of(
        "mvbench_fine_grained_pose",
        "mvbench",
        "video",
        "fine_grained_pose_0000.avi".into(),
    );
    assert_eq!(rel(p, "mvbench"), "nturgbd/fine_grained_pose_0000.avi");
    let p = video_of(
        "mvbench_moving_count",
        "mvbench",
        "video",
        "moving_count_0000.mp4".into(),
    );
    assert_eq!(
        rel(p, "mvbench"),
        "clevrer/video_validation/moving_count_0000.mp4"
    );

    // episodic_reasoning: a folder of frames, sorted by name
    let name = "mvbench_episodic_reasoning";
    let d = doc_with(name, "video", &"s01e01_seg02_clip_00".into());
    match task(name).prompt(&row(d), &ctx("mvbench")).unwrap().visual {
        Visual::Frames(frames) => {
            let names: Vec<String> = frames
                .iter()
                .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            assert_eq!(
                names,
                [
                    "00001.jpg",
                    "00002.jpg",
                    "00003.jpg",
                    "00004.jpg",
                    "00005.jpg",
                    "00006.jpg"
                ]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn videomme_also_finds_the_flat_layout_of_0_2_1() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("vid00000000.MP4"), b"x").unwrap();
    let c = Context {
        video_dir: Some(tmp.path().to_path_buf()),
        dataset_dir: None,
    };
    let d = doc_with("videomme", "videoID", &"vid00000000".into());
    match task("videomme").prompt(&row(d), &c).unwrap().visual {
        Visual::Video(p) => assert_eq!(p, tmp.path().join("vid00000000.MP4")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_video_names_the_path_expected() {
    for (name, dir, field, value, expect) in [
        (
            "videomme",
            "videomme",
            "videoID",
            Value::from("vid00000009"),
            "data/vid00000009.mp4",
        ),
        (
            "nextqa_mc_test",
            "nextqa_mc_test",
            "video",
            Value::from(4010069381u64 + 7919 * 5),
            "NExTVideo/4010108976.mp4",
        ),
        (
            "mlvu",
            "mlvu",
            "video_name",
            Value::from("ac_008.mp4"),
            "mlvu/ac_008.mp4",
        ),
        (
            "mvbench_state_change",
            "mvbench",
            "video",
            Value::from("state_change_0000.mp4"),
            "perception/videos/state_change_0000.mp4",
        ),
    ] {
        let err = task(name)
            .prompt(&row(doc_with(name, field, &value)), &ctx(dir))
            .expect_err(name);
        assert!(err.0.contains(expect), "{name}: {err}");
    }
    let err = task("videomme")
        .prompt(&row(doc(&cases("videomme")[0])), &Context::default())
        .unwrap_err();
    assert!(err.0.contains("--video-dir"), "{err}");
}

#[test]
fn image_prompts_carry_no_markers() {
    for name in [
        "muirbench",
        "llava_interleave_bench_in_domain",
        "llava_interleave_bench_out_domain",
        "llava_interleave_bench_multi_view",
    ] {
        for case in cases(name) {
            let p = task(name)
                .prompt(&row(doc(&case)), &Context::default())
                .unwrap();
            assert!(!p.text.contains("<image>"), "{name}: {}", p.text);
            assert!(matches!(p.visual, Visual::Images(_)));
        }
    }
}
