//! Multi-image sets and videos: deterministic, disjoint between splits, answers true of the
//! scenes (recomputed here from the scenes alone) and of the pixels, and files that
//! `onevision train` and the processor's video loader read: every video as a frame folder and
//! as an MP4 at 1 fps, which decodes to the same frames give or take the codec's loss.

mod common;
use common::files;

use std::collections::HashSet;

use onevision_world::media::{slot, Slot};
use onevision_world::text;
use onevision_world::{
    generate, item, media_item, render, Color, MediaItem, Object, Scene, Shape, Split, Task,
};

fn media(split: Split, seed: u64, count: usize) -> Vec<MediaItem> {
    (0..count)
        .map(|k| media_item(split, seed, k).unwrap())
        .collect()
}

#[test]
fn same_seed_same_bytes_and_single_image_samples_keep_their_ids() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let sa = generate(a.path(), Split::Test, 7, 36).unwrap();
    generate(b.path(), Split::Test, 7, 36).unwrap();
    generate(c.path(), Split::Test, 8, 36).unwrap();
    let (fa, fb, fc) = (files(a.path()), files(b.path()), files(c.path()));
    assert!(fa == fb, "the same seed wrote different bytes");
    assert_ne!(fa, fc);
    assert!(sa.per_task.values().all(|&n| n == 2), "{sa}");
    // The single-image samples are item 0, 1, 2, ... in order, as before media existed.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sa.json).unwrap()).unwrap();
    let mut single = 0;
    for (i, s) in json.as_array().unwrap().iter().enumerate() {
        // Samples 15-18 of every 18 are text and chart ones (tests/text_chart.rs checks them).
        let text::Slot::Other(i) = text::slot(i) else {
            continue;
        };
        match slot(i) {
            Slot::Single(j) => {
                assert_eq!(j, single);
                single += 1;
                let want = serde_json::to_value(item(Split::Test, 7, j).unwrap().sample).unwrap();
                assert_eq!(s, &want);
                assert!(s.get("video").is_none());
            }
            Slot::Media(k) => {
                let it = media_item(Split::Test, 7, k).unwrap();
                assert_eq!(s, &serde_json::to_value(&it.sample).unwrap());
                if it.sample.task.is_video() {
                    assert!(s["video"].is_string() && s.get("image").is_none(), "{s}");
                } else {
                    assert_eq!(s["image"].as_array().unwrap().len(), it.scenes.len());
                }
            }
        }
    }
    assert_eq!(single, 14);
}

#[test]
fn train_and_test_media_never_share_a_scene() {
    // Every multi-image scene and every video's first and last frame is owned by its split.
    let keys = |it: &MediaItem| -> Vec<String> {
        if it.sample.task.is_video() {
            vec![
                it.scenes[0].canonical(),
                it.scenes.last().unwrap().canonical(),
            ]
        } else {
            it.scenes.iter().map(Scene::canonical).collect()
        }
    };
    let train: HashSet<String> = media(Split::Train, 1, 350)
        .iter()
        .flat_map(keys)
        .chain((0..350).map(|j| item(Split::Train, 1, j).unwrap().scene.canonical()))
        .collect();
    assert!(train.len() > 500, "{}", train.len());
    for it in media(Split::Test, 2, 350) {
        for k in keys(&it) {
            assert!(!train.contains(&k), "{k} is in both splits");
        }
        let ends: Vec<&Scene> = if it.sample.task.is_video() {
            vec![&it.scenes[0], it.scenes.last().unwrap()]
        } else {
            it.scenes.iter().collect()
        };
        assert!(ends.iter().all(|s| Split::owner(s) == Split::Test));
    }
}

fn color(w: &str) -> Color {
    *Color::ALL.iter().find(|c| c.name() == w).unwrap()
}

fn shape(w: &str) -> Shape {
    *Shape::ALL.iter().find(|s| s.name() == w).unwrap()
}

/// The objects called "red circle" in a scene.
fn named<'a>(s: &'a Scene, name: &str) -> Vec<&'a Object> {
    let (c, sh) = name.split_once(' ').unwrap();
    let (c, sh) = (color(c), shape(sh));
    s.objects
        .iter()
        .filter(|o| o.color == c && o.shape == sh)
        .collect()
}

type Key = (&'static str, &'static str, &'static str, &'static str);

fn key(o: &Object) -> Key {
    (
        o.size.name(),
        o.color.name(),
        o.shape.name(),
        o.position().name(),
    )
}

/// The one attribute that differs between two scenes that differ in one object.
fn what_changed(a: &Scene, b: &Scene) -> &'static str {
    let (ka, kb): (Vec<Key>, Vec<Key>) = (
        a.objects.iter().map(key).collect(),
        b.objects.iter().map(key).collect(),
    );
    let gone: Vec<&Key> = ka.iter().filter(|k| !kb.contains(k)).collect();
    let new: Vec<&Key> = kb.iter().filter(|k| !ka.contains(k)).collect();
    assert_eq!((gone.len(), new.len()), (1, 1), "{ka:?} -> {kb:?}");
    let (g, n) = (gone[0], new[0]);
    let diff: Vec<&str> = [
        (g.0 != n.0, "size"),
        (g.1 != n.1, "color"),
        (g.2 != n.2, "shape"),
        (g.3 != n.3, "position"),
    ]
    .into_iter()
    .filter(|d| d.0)
    .map(|d| d.1)
    .collect();
    assert_eq!(diff.len(), 1, "{g:?} -> {n:?}");
    diff[0]
}

/// The frame from which an option of `video_order` is true.
fn when(frames: &[Scene], phrase: &str) -> usize {
    if let Some(n) = phrase
        .strip_prefix("a ")
        .and_then(|p| p.strip_suffix(" appears"))
    {
        assert!(named(&frames[0], n).is_empty(), "{phrase}");
        return (0..frames.len())
            .find(|&t| named(&frames[t], n).len() == 1)
            .unwrap();
    }
    let p = phrase.strip_prefix("the ").unwrap();
    let (n, to) = match p.strip_suffix(" disappears") {
        Some(n) => (n, None),
        None => {
            let (n, c) = p.split_once(" turns ").unwrap();
            (n, Some(color(c)))
        }
    };
    let o = named(&frames[0], n);
    assert_eq!(o.len(), 1, "{phrase}");
    let (x, y) = (o[0].x, o[0].y);
    let at = |s: &Scene| s.objects.iter().find(|p| p.x == x && p.y == y).copied();
    (1..frames.len())
        .find(|&t| match (to, at(&frames[t])) {
            (None, None) => true,
            (Some(c), Some(p)) => p.color == c,
            _ => false,
        })
        .unwrap()
}

#[test]
fn answers_are_true_of_the_scenes_and_pixels() {
    let mut checked = std::collections::BTreeMap::new();
    let mut answers: HashSet<(Task, String)> = HashSet::new();
    let mut per_answer = std::collections::BTreeMap::new();
    for it in media(Split::Train, 9, 280)
        .into_iter()
        .chain(media(Split::Test, 9, 280))
    {
        let task = it.sample.task;
        let human = &it.sample.conversations[0].value;
        let a = it.sample.conversations[1].value.as_str();
        let markers = if task.is_video() { 1 } else { it.scenes.len() };
        let q = human
            .strip_prefix(&"<image>\n".repeat(markers))
            .unwrap_or_else(|| panic!("{human:?}"));
        assert!(!q.contains("<image>"), "{human:?}");
        let first = q.lines().next().unwrap();
        let s = &it.scenes;
        if task.is_video() {
            assert!((8..=16).contains(&s.len()));
        }
        match task {
            Task::MultiDiffers => {
                assert!((3..=4).contains(&s.len()));
                let odd: Vec<usize> = (0..s.len())
                    .filter(|&i| (0..s.len()).all(|j| j == i || s[j] != s[i]))
                    .collect();
                assert_eq!(odd.len(), 1);
                let want = if q.contains("\nA. Image 1\n") {
                    ["A", "B", "C", "D"][odd[0]].to_owned()
                } else {
                    (odd[0] + 1).to_string()
                };
                assert_eq!(a, want, "{q:?}");
            }
            Task::MultiCount => {
                let what = first
                    .strip_prefix("How many ")
                    .and_then(|r| r.strip_suffix(" are there in all the images together?"))
                    .unwrap();
                let k: usize = match what.strip_suffix(" shapes") {
                    Some(c) => s
                        .iter()
                        .map(|x| x.count_where(|o| o.color == color(c)))
                        .sum(),
                    None => {
                        let sh = *Shape::ALL.iter().find(|x| x.plural() == what).unwrap();
                        s.iter().map(|x| x.count_where(|o| o.shape == sh)).sum()
                    }
                };
                assert_eq!(a, k.to_string(), "{q:?}");
            }
            Task::MultiChanged => {
                assert_eq!(s.len(), 2);
                assert_eq!(a, what_changed(&s[0], &s[1]));
            }
            Task::VideoDirection => {
                let n = first
                    .strip_prefix("Which direction does the ")
                    .and_then(|r| r.strip_suffix(" move in the video?"))
                    .unwrap();
                let track: Vec<Object> = s
                    .iter()
                    .map(|f| {
                        let o = named(f, n);
                        assert_eq!(o.len(), 1, "{n}");
                        *o[0]
                    })
                    .collect();
                // The center pixel of each frame is the mover's color, and it moves one way.
                let mut centers = vec![];
                for (f, o) in s.iter().zip(&track) {
                    let (px, py) = ((o.x * 192.0) as u32, (o.y * 192.0) as u32);
                    let p = render(f, 192).pixel(px, py);
                    let want = o.color.rgb();
                    assert!((0..3).all(|c| (i32::from(p[c]) - i32::from(want[c])).abs() <= 2));
                    centers.push((px as i64, py as i64));
                }
                let steps: Vec<(i64, i64)> = centers
                    .windows(2)
                    .map(|w| (w[1].0 - w[0].0, w[1].1 - w[0].1))
                    .collect();
                let dir = |d: (i64, i64)| match d {
                    (x, 0) if x < 0 => "left",
                    (x, 0) if x > 0 => "right",
                    (0, y) if y < 0 => "up",
                    (0, y) if y > 0 => "down",
                    _ => "none",
                };
                let (x0, y0) = centers[0];
                let (x1, y1) = *centers.last().unwrap();
                assert_eq!(a, dir((x1 - x0, y1 - y0)), "{q:?}");
                assert!(
                    steps.iter().all(|&st| st == (0, 0) || dir(st) == a),
                    "{steps:?}"
                );
            }
            Task::VideoColor => {
                let n = first
                    .strip_prefix("What color does the ")
                    .and_then(|r| r.strip_suffix(" turn in the video?"))
                    .unwrap();
                let o = named(&s[0], n);
                assert_eq!(o.len(), 1);
                let (x, y) = (o[0].x, o[0].y);
                let last = s.last().unwrap();
                let p = last.objects.iter().find(|p| p.x == x && p.y == y).unwrap();
                assert_ne!(p.color, o[0].color);
                assert_eq!(a, p.color.name());
            }
            Task::VideoAppear => {
                let (n0, n1) = (s[0].objects.len(), s.last().unwrap().objects.len());
                if first == "Does an object appear or disappear in the video?" {
                    assert_eq!(a, if n1 > n0 { "appear" } else { "disappear" });
                } else {
                    let (from, to) = if first == "Which object appears in the video?" {
                        (&s[0], s.last().unwrap())
                    } else {
                        assert_eq!(first, "Which object disappears in the video?");
                        (s.last().unwrap(), &s[0])
                    };
                    let extra: Vec<&Object> = to
                        .objects
                        .iter()
                        .filter(|o| !from.objects.contains(o))
                        .collect();
                    assert_eq!(extra.len(), 1);
                    assert_eq!(
                        a,
                        format!("{} {}", extra[0].color.name(), extra[0].shape.name())
                    );
                    assert_eq!(named(to, a).len(), 1);
                }
                assert_eq!(n1.abs_diff(n0), 1);
            }
            Task::VideoOrder => {
                let lines: Vec<&str> = q.lines().collect();
                assert_eq!(lines.len(), 4, "{q:?}");
                let ta = when(s, lines[1].strip_prefix("A. ").unwrap());
                let tb = when(s, lines[2].strip_prefix("B. ").unwrap());
                assert_ne!(ta, tb);
                assert_eq!(a, if ta < tb { "A" } else { "B" }, "{q:?}");
            }
            other => panic!("{other} is not a media family"),
        }
        *checked.entry(task).or_insert(0) += 1;
        answers.insert((task, a.to_owned()));
        *per_answer.entry((task, a.to_owned())).or_insert(0usize) += 1;
    }
    assert_eq!(checked.len(), 7);
    // The answers of the small vocabularies are balanced: each a quarter of 80, +-10 (the
    // class is drawn once per sample, so rejections do not skew it).
    for (t, words, share) in [
        (
            Task::MultiChanged,
            &["color", "shape", "size", "position"][..],
            20,
        ),
        (Task::VideoDirection, &["left", "right", "up", "down"], 20),
    ] {
        for w in words {
            let n = per_answer.get(&(t, (*w).to_owned())).copied().unwrap_or(0);
            assert!(n.abs_diff(share) <= 10, "{t}: {w} {n} times of 80");
        }
    }
    assert!(checked.values().all(|&n| n == 80), "{checked:?}");
    // Every answer of the small vocabularies occurs.
    for (t, want) in [
        (
            Task::MultiChanged,
            &["color", "shape", "size", "position"][..],
        ),
        (Task::VideoDirection, &["left", "right", "up", "down"]),
        (Task::VideoAppear, &["appear", "disappear"]),
        (Task::VideoOrder, &["A", "B"]),
        (Task::MultiDiffers, &["1", "2", "3", "A", "B", "C"]),
    ] {
        for w in want {
            assert!(answers.contains(&(t, (*w).to_owned())), "{t}: no {w}");
        }
    }
}

#[test]
fn onevision_train_and_the_video_loader_read_the_files() {
    let out = tempfile::tempdir().unwrap();
    let summary = generate(out.path(), Split::Train, 3, 36).unwrap();
    let opts = onevision_train::data::DataOptions {
        image_folder: Some(out.path().to_path_buf()),
        video_folder: Some(out.path().to_path_buf()),
        ..Default::default()
    };
    let ds = onevision_train::data::load(&summary.json, &opts).unwrap();
    ds.require_clean().unwrap();
    let counts = ds.modality_counts();
    assert_eq!(
        (counts.single_image, counts.multi_image, counts.video),
        (14 + 8, 6, 8)
    );
    let raw: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary.json).unwrap()).unwrap();
    let mut forms = [0usize; 2];
    for (i, s) in raw.as_array().unwrap().iter().enumerate() {
        let text::Slot::Other(i) = text::slot(i) else {
            continue;
        };
        let Slot::Media(k) = slot(i) else { continue };
        let it = media_item(Split::Train, 3, k).unwrap();
        let Some(named) = s["video"].as_str() else {
            continue;
        };
        // The sample names the folder or the MP4, in turn; both are written.
        let folder = format!("images/train/{}", it.sample.id);
        let mp4 = format!("{folder}.mp4");
        assert_eq!(named, if k % 2 == 0 { &folder } else { &mp4 }, "{k}");
        forms[k % 2] += 1;
        let (from_folder, from_mp4) = (
            load(&out.path().join(&folder)),
            load(&out.path().join(&mp4)),
        );
        let n = it.scenes.len();
        assert_eq!(from_folder.total_frames, n);
        assert_eq!(from_folder.indices, (0..n).collect::<Vec<_>>());
        for (f, scene) in from_folder.frames.iter().zip(&it.scenes) {
            assert_eq!((f.width, f.height), (192, 192));
            assert_eq!(f.data, render(scene, 192).pixels);
        }
        // At 1 fps the trainer's default --video-fps 1 takes every frame of the MP4 too.
        assert_eq!(
            from_mp4.avg_frame_rate,
            onevision_processor::video::FrameRate::new(1, 1),
            "{mp4}"
        );
        assert_eq!(from_mp4.total_frames, n, "{mp4}");
        assert_eq!(from_mp4.indices, (0..n).collect::<Vec<_>>(), "{mp4}");
        for (t, (f, scene)) in from_mp4.frames.iter().zip(&it.scenes).enumerate() {
            assert_eq!((f.width, f.height), (192, 192));
            let png = render(scene, 192);
            let mad = mean_abs_diff(&f.data, &png.pixels);
            assert!(
                mad <= MP4_MAX_MAD,
                "{mp4} frame {t}: mean abs difference {mad:.3}"
            );
            // The answers still hold in the MP4's pixels: at every object's center the nearest
            // named color (or the background) is the object's, as in the PNG.
            for o in &scene.objects {
                let (x, y) = ((o.x * 192.0) as usize, (o.y * 192.0) as usize);
                let j = 3 * (y * 192 + x);
                let p = [f.data[j], f.data[j + 1], f.data[j + 2]];
                assert_eq!(
                    nearest(p),
                    o.color.rgb(),
                    "{mp4} frame {t}: {o:?} reads {p:?}"
                );
            }
        }
    }
    assert_eq!(forms, [4, 4]);
}

/// The most the MP4 frames may differ from the PNGs, in mean absolute difference over the RGB
/// bytes (0-255): x264 at CRF 12 in YUV 4:2:0 blurs each shape's edge by a pixel in color and
/// leaves flat areas within a level or two (the worst frame of 16 videos: 0.42).
const MP4_MAX_MAD: f64 = 1.0;

fn load(path: &std::path::Path) -> onevision_processor::video::Video {
    onevision_processor::video::load_video_frames(
        onevision_processor::video::VideoSource::Path(path),
        onevision_processor::video::FrameSelection::Fps {
            fps: 1.0,
            upbound: 32,
        },
        &onevision_processor::DecodeLimits::default(),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    sum as f64 / a.len() as f64
}

/// The named color (or the background) nearest to `p`.
fn nearest(p: [u8; 3]) -> [u8; 3] {
    let d = |c: [u8; 3]| -> i32 {
        (0..3)
            .map(|i| (i32::from(p[i]) - i32::from(c[i])).pow(2))
            .sum()
    };
    Color::ALL
        .iter()
        .map(|c| c.rgb())
        .chain([onevision_world::scene::BACKGROUND])
        .min_by_key(|&c| d(c))
        .unwrap()
}

#[test]
fn mp4s_follow_the_image_size() {
    let out = tempfile::tempdir().unwrap();
    let opts = onevision_world::Options {
        image_size: 96,
        ..Default::default()
    };
    onevision_world::generate_with(out.path(), Split::Test, 4, 14, &opts).unwrap();
    for k in 0..7 {
        let it = media_item(Split::Test, 4, k).unwrap();
        if !it.sample.task.is_video() {
            continue;
        }
        let v = load(&out.path().join(format!("images/test/{}.mp4", it.sample.id)));
        assert_eq!(v.frames.len(), it.scenes.len());
        for (f, scene) in v.frames.iter().zip(&it.scenes) {
            assert_eq!((f.width, f.height), (96, 96));
            assert!(mean_abs_diff(&f.data, &render(scene, 96).pixels) <= MP4_MAX_MAD);
        }
    }
}
