//! Multi-image sets and videos (issue 12, scope 1): several shape scenes per sample, written as
//! LLaVA JSON the way `onevision train` reads them. A multi-image sample's `image` is a list of
//! PNG paths and its human turn holds one `<image>` per image (all at its start, one a line, so
//! `preprocess_multimodal` leaves them as written). A video is written twice, as a folder of
//! frame PNGs (`images/<split>/<id>/0000.png`, ...) and as an MP4 of the same frames at one
//! frame a second (`images/<split>/<id>.mp4`, [`crate::mp4`]); a video sample's `video` names
//! one of them, the two in turn ([`video_path`]), so both forms are trained and evaluated. Its
//! human turn holds exactly one `<image>`, which stands for the video.
//!
//! Train and test never share a scene here either: every image of a multi-image set, and the
//! first and last frame of every video, is a scene its own split owns ([`Split::owner`]), so no
//! such scene is ever in the other split, as an image, a frame end or a single-image sample.

use std::path::Path;

use crate::mp4;
use crate::multi;
use crate::raster::{render, Raster};
use crate::rng::{self, Rng};
use crate::scene::{Object, Position, Scene};
use crate::task::Task;
use crate::video;
use crate::{Error, Options, Result, Sample, Split, Turn};

impl Task {
    /// The multi-image and video families, in the order [`slot`] gives them turns.
    pub const MEDIA: [Task; 7] = [
        Task::MultiDiffers,
        Task::MultiCount,
        Task::MultiChanged,
        Task::VideoDirection,
        Task::VideoColor,
        Task::VideoAppear,
        Task::VideoOrder,
    ];

    pub fn is_video(self) -> bool {
        matches!(
            self,
            Task::VideoDirection | Task::VideoColor | Task::VideoAppear | Task::VideoOrder
        )
    }

    pub fn is_multi_image(self) -> bool {
        matches!(
            self,
            Task::MultiDiffers | Task::MultiCount | Task::MultiChanged
        )
    }
}

/// What sample `index` of a generated split is: the families take turns, the single-image ones
/// ([`Task::ALL`]) first, then [`Task::MEDIA`]. Each kind is numbered on its own, so the
/// single-image samples are exactly [`crate::item`] `0, 1, 2, ...` in order, ids unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The index for [`crate::item`].
    Single(usize),
    /// The index for [`media_item`].
    Media(usize),
}

pub fn slot(index: usize) -> Slot {
    let (s, m) = (Task::ALL.len(), Task::MEDIA.len());
    let (round, f) = (index / (s + m), index % (s + m));
    if f < s {
        Slot::Single(round * s + f)
    } else {
        Slot::Media(round * m + f - s)
    }
}

/// A multi-image or video sample with its scenes: the images in order, or the frames.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaItem {
    pub scenes: Vec<Scene>,
    pub sample: Sample,
}

/// Draws per sample before giving up (a draw is rejected when an object finds no room, a scene
/// belongs to the other split, or a question has no unambiguous object; up to 4 owned scenes
/// make a draw succeed about 1 in 16 times).
const MAX_ATTEMPTS: usize = 4000;

fn media_seed(split: Split, seed: u64, k: usize, attempt: usize) -> u64 {
    let tag = split
        .name()
        .bytes()
        .fold(0x6d65_6469_6100_0000u64, |h, b| rng::mix(h ^ u64::from(b))); // "media"
    rng::mix(rng::mix(rng::mix(seed ^ tag) ^ k as u64) ^ attempt as u64)
}

/// Media sample `k` of a split: the families of [`Task::MEDIA`] in turn (`k` mod 7).
pub fn media_item(split: Split, seed: u64, k: usize) -> Result<MediaItem> {
    let task = Task::MEDIA[k % Task::MEDIA.len()];
    let owned = |s: &Scene| Split::owner(s) == split;
    // The answer's class (which attribute changes, which way an object moves, ...) is drawn once
    // per sample, not per draw: the rejections (a scene owned by the other split, no room)
    // depend on the class, and redrawing it with the rest would skew the answers towards the
    // classes rejected least.
    let class = Rng::new(media_seed(split, seed, k, usize::MAX)).below(4);
    for attempt in 0..MAX_ATTEMPTS {
        let mut rng = Rng::new(media_seed(split, seed, k, attempt));
        let built = if task.is_video() {
            video::build(task, class, &mut rng, &owned)
        } else {
            multi::build(task, class, &mut rng, &owned)
        };
        let Some((scenes, question, answer)) = built else {
            continue;
        };
        let kind = if task.is_video() { "video" } else { "multi" };
        let id = format!("{split}-{kind}-{k:06}");
        let (images, video, markers) = if task.is_video() {
            (vec![], video_path(split, &id, k), 1)
        } else {
            let paths = (1..=scenes.len())
                .map(|i| format!("images/{split}/{id}-{i}.png"))
                .collect();
            (paths, String::new(), scenes.len())
        };
        let sample = Sample {
            id,
            image: String::new(),
            images,
            video,
            conversations: vec![
                Turn {
                    from: "human",
                    value: format!("{}{question}", "<image>\n".repeat(markers)),
                },
                Turn {
                    from: "gpt",
                    value: answer,
                },
            ],
            task,
            metric: "exact",
        };
        return Ok(MediaItem { scenes, sample });
    }
    Err(Error::Exhausted { index: k })
}

/// The frame folder of the video with this id, relative to the output directory; its MP4 is the
/// same path with `.mp4` added.
pub fn video_folder(split: Split, id: &str) -> String {
    format!("images/{split}/{id}")
}

/// What media sample `k`'s `video` names: the frame folder for even `k`, the MP4 for odd `k`.
/// Seven families take turns, so each video family alternates between the two forms from one
/// round to the next.
pub fn video_path(split: Split, id: &str, k: usize) -> String {
    let folder = video_folder(split, id);
    if k % 2 == 0 {
        folder
    } else {
        format!("{folder}.mp4")
    }
}

/// Writes media sample `k`'s files under `out` (a video both as frame PNGs and as an MP4) and
/// returns the sample.
pub(crate) fn write(
    out: &Path,
    split: Split,
    seed: u64,
    k: usize,
    opts: &Options,
) -> Result<Sample> {
    let MediaItem { scenes, sample } = media_item(split, seed, k)?;
    if sample.task.is_video() {
        let folder = video_folder(split, &sample.id);
        let dir = out.join(&folder);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let frames: Vec<Raster> = scenes.iter().map(|s| render(s, opts.image_size)).collect();
        for (t, f) in frames.iter().enumerate() {
            save_png(&dir.join(format!("{t:04}.png")), f)?;
        }
        mp4::write(&out.join(format!("{folder}.mp4")), &frames)?;
    } else {
        for (p, s) in sample.images.iter().zip(&scenes) {
            save_png(&out.join(p), &render(s, opts.image_size))?;
        }
    }
    Ok(sample)
}

pub(crate) fn save_png(path: &Path, r: &Raster) -> Result<()> {
    image::save_buffer_with_format(
        path,
        &r.pixels,
        r.width,
        r.height,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|source| Error::Png {
        path: path.to_path_buf(),
        source,
    })
}

// Scene editing shared by the multi-image and video families.

/// The gap kept between objects (as the scene sampler keeps it).
const GAP: f32 = 0.02;

/// Whether `o` lies inside the image and clear of every object of `others` but `skip`.
pub(crate) fn fits(others: &[Object], o: &Object, skip: Option<usize>) -> bool {
    let r = o.reach();
    o.x - r > 0.0
        && o.x + r < 1.0
        && o.y - r > 0.0
        && o.y + r < 1.0
        && others
            .iter()
            .enumerate()
            .filter(|&(i, _)| Some(i) != skip)
            .all(|(_, p)| (p.x - o.x).hypot(p.y - o.y) >= p.reach() + r + GAP)
}

/// The objects in reading order, as [`Scene::sample`] orders them.
pub(crate) fn scene(mut objects: Vec<Object>) -> Scene {
    objects.sort_by(|a, b| {
        a.position()
            .cmp(&b.position())
            .then(a.x.total_cmp(&b.x))
            .then(a.y.total_cmp(&b.y))
    });
    Scene { objects }
}

/// A scene of at most `max` objects: a sampled scene with random objects left out.
pub(crate) fn small_scene(rng: &mut Rng, max: usize) -> Option<Scene> {
    let mut s = Scene::sample(rng)?;
    let keep = 1 + rng.below(max);
    while s.objects.len() > keep {
        let i = rng.below(s.objects.len());
        s.objects.remove(i);
    }
    Some(s)
}

/// A center inside the middle of `cell` (30 % of a cell from its borders), as the sampler draws.
pub(crate) fn place_in(rng: &mut Rng, cell: Position) -> (f32, f32) {
    let x = (f32::from(cell.col) + 0.3 + 0.4 * rng.unit()) / 3.0;
    let y = (f32::from(cell.row) + 0.3 + 0.4 * rng.unit()) / 3.0;
    (x, y)
}

/// "red circle": how the media questions name an object (kept unique where it is asked about).
pub fn name(o: &Object) -> String {
    format!("{} {}", o.color.name(), o.shape.name())
}

/// Whether `o` is the only object of its color and shape in `scene`.
pub(crate) fn named_once(scene: &Scene, o: &Object) -> bool {
    scene.count_where(|p| p.color == o.color && p.shape == o.shape) == 1
}

pub(crate) const LETTERS: [&str; 4] = ["A", "B", "C", "D"];
