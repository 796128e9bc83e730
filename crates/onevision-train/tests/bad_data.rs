//! Bad data never panics and is never dropped silently (issue 10, scope 8): each case below is
//! built in a temporary directory, loaded, and its exact message asserted (file, line or entry,
//! sample id, what was expected). Good samples around the bad ones still load.

use std::fs;
use std::path::Path;

use onevision_train::data::{load, DataOptions, MediaRef, ModalityCounts, Speaker};
use onevision_train::Error;

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).expect("mkdir");
    }
    fs::write(path, text).expect("write");
}

fn png(path: &Path, w: u32, h: u32) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).expect("mkdir");
    }
    image::RgbImage::new(w, h).save(path).expect("png");
}

fn messages(ds: &onevision_train::data::Dataset) -> Vec<String> {
    ds.problems.iter().map(ToString::to_string).collect()
}

/// A dataset folder: images/a.png and images/b.png (real PNGs), images/bad.png (not an image),
/// videos/v.mp4 (some bytes), videos/zero.mp4 (empty), videos/frames/ (one frame),
/// videos/no_frames/ (empty).
fn media_tree(root: &Path) -> DataOptions {
    png(&root.join("images/a.png"), 4, 3);
    png(&root.join("images/b.png"), 2, 5);
    write(&root.join("images/bad.png"), "not a png at all");
    write(&root.join("videos/v.mp4"), "\0\0\0\x18ftypmp42");
    write(&root.join("videos/zero.mp4"), "");
    png(&root.join("videos/frames/0001.png"), 2, 2);
    fs::create_dir_all(root.join("videos/no_frames")).expect("mkdir");
    DataOptions {
        image_folder: Some(root.join("images")),
        video_folder: Some(root.join("videos")),
        seed: 0,
    }
}

const ANSWER: &str = r#"{"from": "gpt", "value": "An answer."}"#;

#[test]
fn every_bad_line_is_reported_and_the_good_ones_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let opts = media_tree(root);
    let q = |v: &str| format!(r#"{{"from": "human", "value": "{v}"}}, {ANSWER}"#);
    let lines = [
        /* 1 */ format!(r#"{{"id": "ok1", "image": "a.png", "conversations": [{}]}}"#, q("What is this? <image>")),
        /* 2 */ String::new(),
        /* 3 */ r#"{"id": "m1", "conversations": ["#.to_owned(),
        /* 4 */ "[1, 2]".to_owned(),
        /* 5 */ r#"{"id": "nc", "image": "a.png"}"#.to_owned(),
        /* 6 */ format!(r#"{{"id": "ns", "conversations": [{{"from": "human", "value": 3}}, {ANSWER}]}}"#),
        /* 7 */ format!(r#"{{"id": "ur", "conversations": [{{"from": "system", "value": "Be brief."}}, {}]}}"#, q("hi")),
        /* 8 */ r#"{"id": "ec", "conversations": []}"#.to_owned(),
        /* 9 */ format!(r#"{{"id": "na", "conversations": [{{"from": "human", "value": "a"}}, {}]}}"#, q("b")),
        /* 10 */ r#"{"id": "ng", "conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "b"}]}"#.to_owned(),
        /* 11 */ format!(r#"{{"id": "mm", "image": "a.png", "conversations": [{}]}}"#, q("<image>\\n<image> two?")),
        /* 12 */ format!(r#"{{"id": "fm", "image": ["a.png", "b.png"], "conversations": [{}]}}"#, q("<image> compare")),
        /* 13 */ format!(r#"{{"id": "tm", "conversations": [{}]}}"#, q("<image> hi")),
        /* 14 */ format!(r#"{{"id": "v0", "video": "v.mp4", "conversations": [{}]}}"#, q("what happens?")),
        /* 15 */ format!(r#"{{"id": "mi", "image": "nope.png", "conversations": [{}]}}"#, q("no marker")),
        /* 16 */ format!(r#"{{"id": "bi", "image": "bad.png", "conversations": [{}]}}"#, q("<image>")),
        /* 17 */ format!(r#"{{"id": "mv", "video": "gone.mp4", "conversations": [{}]}}"#, q("<image>")),
        /* 18 */ format!(r#"{{"id": "ef", "video": "no_frames", "conversations": [{}]}}"#, q("<image>")),
        /* 19 */ format!(r#"{{"id": "zv", "video": "zero.mp4", "conversations": [{}]}}"#, q("<image>")),
        /* 20 */ format!(r#"{{"id": "bv", "image": "a.png", "video": "v.mp4", "conversations": [{}]}}"#, q("<image>")),
        /* 21 */ format!(r#"{{"id": {{"n": 1}}, "conversations": [{}]}}"#, q("hi")),
        /* 22 */ format!(r#"{{"id": "be", "image": [], "conversations": [{}]}}"#, q("hi")),
        /* 23 */ format!(r#"{{"id": 7, "video": "frames", "conversations": [{ANSWER}, {}]}}"#, q("Summarize. <image>")),
        /* 24 */ format!(r#"{{"image": ["a.png", "b.png"], "conversations": [{}]}}"#, q("<image> and <image>: same?")),
        /* 25 */ r#"{"id": "t", "conversations": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "extra": 1}"#.to_owned(),
        /* 26 */ format!(r#"{{"id": "vok", "video": "v.mp4", "conversations": [{}]}}"#, q("<image>")),
    ];
    let file = root.join("train.jsonl");
    write(&file, &(lines.join("\n") + "\n"));
    let ds = load(&file, &opts).expect("load");

    let f = file.display();
    let img = |name: &str| root.join("images").join(name).display().to_string();
    let vid = |name: &str| root.join("videos").join(name).display().to_string();
    let images_dir = root.join("images").display().to_string();
    let videos_dir = root.join("videos").display().to_string();
    let expected = vec![
        format!("{f}:3: not valid JSON (EOF while parsing a list at column 31); expected one JSON sample object per line"),
        format!("{f}:4: a JSON list; expected a sample object with `conversations`"),
        format!("{f}:5 (id nc): no `conversations`; expected a list of turns like {{\"from\": \"human\", \"value\": \"...\"}}"),
        format!("{f}:6 (id ns): turn 1: `value` is a number; expected a string"),
        format!("{f}:7 (id ur): turn 1 is from \"system\"; expected \"human\" or \"gpt\" (or \"user\" / \"assistant\")"),
        format!("{f}:8 (id ec): `conversations` is empty; expected a human turn and a gpt turn at least"),
        format!("{f}:9 (id na): turn 2 is from human; expected gpt: turns alternate human, gpt, human, gpt, ... (after one leading gpt turn, which is dropped as LLaVA-NeXT's preprocess_qwen drops it)"),
        format!("{f}:10 (id ng): no gpt turn after the first human turn (2 turn(s)); expected at least one gpt answer to learn from"),
        format!("{f}:11 (id mm): 2 `<image>` markers for 1 image; expected one marker per image"),
        format!("{f}:12 (id fm): 1 `<image>` marker for 2 images; expected one marker per image"),
        format!("{f}:13 (id tm): 1 `<image>` marker in a sample without `image` or `video`; expected none (or give the sample its image)"),
        format!("{f}:14 (id v0): 0 `<image>` markers in a video sample; expected exactly 1, which stands for the video"),
        // Two problems of one sample, both reported.
        format!("{f}:15 (id mi): 0 `<image>` markers for 1 image; expected one marker per image"),
        format!("{f}:15 (id mi): image \"nope.png\" not found at {}; expected a file there (relative image paths are resolved against the image folder {images_dir})", img("nope.png")),
        format!("{f}:16 (id bi): image {} has no readable image header (Format error decoding Png: Invalid PNG signature.); expected a PNG, JPEG, WebP, GIF, BMP or TIFF file", img("bad.png")),
        format!("{f}:17 (id mv): video \"gone.mp4\" not found at {}; expected a file there (relative video paths are resolved against the video folder {videos_dir})", vid("gone.mp4")),
        format!("{f}:18 (id ef): video {} is a directory without frame files; expected a video file or a directory of frame images", vid("no_frames")),
        format!("{f}:19 (id zv): video {} is an empty file; expected a video file", vid("zero.mp4")),
        format!("{f}:20 (id bv): has both `image` and `video`; expected one of them (or neither, for text)"),
        format!("{f}:21: `id` is an object; expected a string or a number"),
        format!("{f}:22 (id be): `image` is an empty list; expected at least one path (leave `image` out for a text-only sample)"),
    ];
    assert_eq!(messages(&ds), expected);
    assert_eq!(ds.bad_entries(), 20);

    let ids: Vec<&str> = ds.samples.iter().map(|s| s.id.as_str()).collect();
    let fallback = format!("{f}:24");
    assert_eq!(ids, ["ok1", "7", fallback.as_str(), "t", "vok"]);
    assert_eq!(
        ds.modality_counts(),
        ModalityCounts {
            text: 1,
            single_image: 1,
            multi_image: 1,
            video: 2
        }
    );
    // The rewrite, the resolved paths, the leading gpt turn kept for the template to drop.
    assert_eq!(ds.samples[0].turns[0].value, "<image>\nWhat is this?");
    assert_eq!(
        ds.samples[0].media,
        MediaRef::Images(vec![root.join("images/a.png")])
    );
    assert_eq!(
        ds.samples[1].media,
        MediaRef::Video(root.join("videos/frames"))
    );
    assert_eq!(ds.samples[1].turns[0].from, Speaker::Gpt);
    assert_eq!(ds.samples[1].turns[1].value, "<image>\nSummarize.");
    assert_eq!(ds.samples[3].turns[1].value, "yo");
    assert_eq!(ds.sources.len(), 1);
    assert_eq!((ds.sources[0].available, ds.sources[0].taken), (25, 25));
    assert_eq!(ds.sources[0].strategy, "all");

    // The trainer's refusal lists them all.
    match ds.require_clean() {
        Err(Error::DataProblems { count, list }) => {
            assert_eq!(count, expected.len());
            assert_eq!(list, expected.join("\n"));
        }
        other => panic!("expected DataProblems, got {other:?}"),
    }
}

#[test]
fn relative_media_without_a_folder_is_looked_up_in_the_current_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("d.json");
    write(
        &file,
        &format!(
            r#"[{{"id": "a", "image": "surely_not_here_3141.png", "conversations": [{{"from": "human", "value": "<image>"}}, {ANSWER}]}}]"#
        ),
    );
    let ds = load(&file, &DataOptions::default()).expect("load");
    assert_eq!(
        messages(&ds),
        [format!(
            "{}:1 (id a): image \"surely_not_here_3141.png\" not found at surely_not_here_3141.png; expected a file there (relative image paths are resolved against the current directory; pass --image-folder)",
            file.display()
        )]
    );
}

#[test]
fn json_files_that_are_not_lists_and_bad_elements() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = DataOptions::default();

    let object = dir.path().join("object.json");
    write(&object, r#"{"id": 1, "conversations": []}"#);
    let ds = load(&object, &opts).expect("load");
    assert_eq!(
        messages(&ds),
        [format!("{}: the file holds a JSON object; expected a JSON list of samples (write one sample per line in a .jsonl file instead)", object.display())]
    );
    assert!(ds.samples.is_empty());

    let broken = dir.path().join("broken.json");
    write(&broken, "[\n  {\"id\": 1,\n");
    let ds = load(&broken, &opts).expect("load");
    assert_eq!(
        messages(&ds),
        [format!("{}: not valid JSON (EOF while parsing a value at line 3 column 0); expected a JSON list of samples", broken.display())]
    );

    // Elements are numbered from 1; a BOM is tolerated.
    let list = dir.path().join("list.json");
    let good = format!(r#"{{"conversations": [{{"from": "human", "value": "hi"}}, {ANSWER}]}}"#);
    write(
        &list,
        &format!("\u{feff}[{good}, 5, {good}, {{\"id\": \"x\", \"conversations\": {{}}}}]"),
    );
    let ds = load(&list, &opts).expect("load");
    let f = list.display();
    assert_eq!(
        messages(&ds),
        [
            format!("{f}:2: a JSON number; expected a sample object with `conversations`"),
            format!("{f}:4 (id x): `conversations` is an object; expected a list of turns like {{\"from\": \"human\", \"value\": \"...\"}}"),
        ]
    );
    let ids: Vec<String> = ds.samples.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, [format!("{f}:1"), format!("{f}:3")]);
}

#[test]
fn turn_shapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("t.jsonl");
    write(
        &file,
        &[
            r#"{"id": "a", "conversations": ["hi", {"value": "no role"}, {"from": 1, "value": "x"}, {"from": "gpt"}]}"#,
            r#"{"id": "b", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "image": 3}"#,
            r#"{"id": "c", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "image": ["x.png", 2]}"#,
            r#"{"id": "d", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "video": ["v.mp4"]}"#,
        ]
        .join("\n"),
    );
    let ds = load(&file, &DataOptions::default()).expect("load");
    let f = file.display();
    assert_eq!(
        messages(&ds),
        [
            format!("{f}:1 (id a): turn 1 is a string; expected an object with `from` and `value`"),
            format!(
                "{f}:1 (id a): turn 2 has no `from` (or `role`); expected \"human\" or \"gpt\""
            ),
            format!("{f}:1 (id a): turn 3: `from` is a number; expected \"human\" or \"gpt\""),
            format!("{f}:1 (id a): turn 4 has no `value` (or `content`); expected a string"),
            format!("{f}:2 (id b): `image` is a number; expected a path or a list of paths"),
            format!("{f}:3 (id c): `image` element 2 is a number; expected a path string"),
            format!("{f}:4 (id d): `video` is a list; expected a path string"),
        ]
    );
    assert!(ds.samples.is_empty());
}

fn sample_lines(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"id": "s{i}", "conversations": [{{"from": "human", "value": "q{i}"}}, {ANSWER}]}}"#
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn mixture_entries_load_or_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(&root.join("sets/ten.jsonl"), &sample_lines(10));
    write(
        &root.join("sets/three.json"),
        &format!("[{}]", sample_lines(3).replace('\n', ",")),
    );
    write(&root.join("sets/notes.txt"), "");
    let yaml = root.join("mix.yaml");
    write(
        &yaml,
        "datasets:\n\
         \x20 - json_path: sets/ten.jsonl\n    sampling_strategy: first:25%\n\
         \x20 - json_path: sets/missing.json\n    sampling_strategy: all\n\
         \x20 - json_path: sets/ten.jsonl\n    sampling_strategy: first:ten\n\
         \x20 - just a string\n\
         \x20 - sampling_strategy: all\n\
         \x20 - json_path: sets/notes.txt\n\
         \x20 - json_path: sets/three.json\n    sampling_strategy: 5\n\
         \x20 - json_path: sets/three.json\n    sampling_strategy: end:1\n\
         \x20 - json_path: sets/ten.jsonl\n    sampling_strategy: random:2\n\
         \x20 - json_path: sets/three.json\n",
    );
    let ds = load(
        &yaml,
        &DataOptions {
            seed: 3,
            ..Default::default()
        },
    )
    .expect("load");
    let y = yaml.display();
    assert_eq!(
        messages(&ds),
        [
            format!("{y}:2: entry 2 of `datasets`: `json_path` \"sets/missing.json\" not found at {}; expected a .json or .jsonl file there (a relative json_path is resolved against the YAML file's directory)", root.join("sets/missing.json").display()),
            format!("{y}:3: entry 3 of `datasets`: `sampling_strategy` \"first:ten\" is not understood; expected all, first:N, end:N or random:N, with N a count (first:1000) or a whole percentage, rounded up (random:10%)"),
            format!("{y}:4: entry 4 of `datasets`: a string; expected a mapping with `json_path` and an optional `sampling_strategy`"),
            format!("{y}:5: entry 5 of `datasets`: no `json_path`; expected the path of a .json or .jsonl file"),
            format!("{y}:6: entry 6 of `datasets`: `json_path` {} is neither a .json nor a .jsonl file; expected one of those", root.join("sets/notes.txt").display()),
            format!("{y}:7: entry 7 of `datasets`: `sampling_strategy` is a number; expected a string such as all, first:1000 or random:10%"),
        ]
    );
    let summary: Vec<(String, String, usize, usize)> = ds
        .sources
        .iter()
        .map(|s| {
            let name = s
                .path
                .strip_prefix(root)
                .unwrap_or(&s.path)
                .display()
                .to_string();
            (name, s.strategy.clone(), s.available, s.taken)
        })
        .collect();
    let row = |p: &str, s: &str, a, t| (p.to_owned(), s.to_owned(), a, t);
    assert_eq!(
        summary,
        [
            row("sets/ten.jsonl", "first:25%", 10, 3), // ceil(2.5) = 3
            row("sets/three.json", "end:1", 3, 1),
            row("sets/ten.jsonl", "random:2", 10, 2),
            row("sets/three.json", "all", 3, 3),
        ]
    );
    let ids: Vec<&str> = ds.samples.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(&ids[..4], ["s0", "s1", "s2", "s2"]);
    assert_eq!(&ids[6..], ["s0", "s1", "s2"]);
    assert_eq!(ds.samples.len(), 9);
    assert_eq!(ds.samples[0].origin.file, root.join("sets/ten.jsonl"));
    assert_eq!(ds.samples[0].origin.line, 1);
}

#[test]
fn random_entries_repeat_for_a_seed_and_differ_across_seeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("s.jsonl"), &sample_lines(40));
    let yaml = dir.path().join("mix.yml");
    write(
        &yaml,
        "datasets:\n  - json_path: s.jsonl\n    sampling_strategy: random:5\n  - json_path: s.jsonl\n    sampling_strategy: random:5\n",
    );
    let ids = |seed| -> Vec<String> {
        let ds = load(
            &yaml,
            &DataOptions {
                seed,
                ..Default::default()
            },
        )
        .expect("load");
        assert!(ds.problems.is_empty(), "{:?}", ds.problems);
        ds.samples.iter().map(|s| s.id.clone()).collect()
    };
    let a = ids(11);
    assert_eq!(a.len(), 10);
    assert_eq!(a, ids(11));
    assert_ne!(a, ids(12));
    // Each entry draws on its own.
    assert_ne!(a[..5], a[5..]);
}

#[test]
fn what_cannot_be_loaded_at_all_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = DataOptions::default();
    let err = |p: &Path| match load(p, &opts) {
        Err(e) => e,
        Ok(ds) => panic!("expected an error, got {ds:?}"),
    };

    let missing = dir.path().join("nothing.jsonl");
    let e = err(&missing);
    assert!(
        matches!(&e, Error::Io { path, .. } if path == &missing),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "cannot read {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
    let missing_yaml = dir.path().join("nothing.yaml");
    assert!(matches!(err(&missing_yaml), Error::Io { .. }));

    let bad = dir.path().join("bad.yaml");
    write(&bad, "datasets: [\n");
    let msg = err(&bad).to_string();
    let head = format!("{}: not valid YAML (", bad.display());
    assert!(msg.starts_with(&head), "{msg}");
    assert!(msg.ends_with("); expected `datasets:` with a list of `- json_path: FILE.json` entries, each with an optional `sampling_strategy`"), "{msg}");

    let none = dir.path().join("none.yaml");
    write(&none, "sets:\n  - json_path: a.json\n");
    assert_eq!(
        err(&none).to_string(),
        format!("{}: no `datasets`; expected `datasets:` with a list of `- json_path: FILE.json` entries, each with an optional `sampling_strategy`", none.display())
    );

    let scalar = dir.path().join("scalar.yml");
    write(&scalar, "datasets: a.json\n");
    assert_eq!(
        err(&scalar).to_string(),
        format!("{}: `datasets` is a string; expected `datasets:` with a list of `- json_path: FILE.json` entries, each with an optional `sampling_strategy`", scalar.display())
    );

    let csv = dir.path().join("d.csv");
    write(&csv, "");
    assert_eq!(
        err(&csv).to_string(),
        format!(
            "{}: unknown data file type; expected a .json list, a .jsonl file or a .yaml mixture",
            csv.display()
        )
    );
}
