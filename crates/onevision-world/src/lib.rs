//! A procedural visual world for onevision-nano (issue 12): scenes of shapes in named colors,
//! sizes, positions and counts, rendered anti-aliased to PNG and written as LLaVA JSON samples
//! (the format `onevision train` reads, media paths relative to the JSON file's directory);
//! multi-image sets and videos ([`media`], videos also as MP4: [`mp4`]); words, numbers, bar and
//! pie charts ([`text`]).
//!
//! Everything is a pure function of (split, seed, index): the RNG is SplitMix64 written here
//! ([`rng`]), so a seed gives byte-identical files on every machine (the MP4s: given the same
//! FFmpeg and x264 builds, as they write their versions and encode by their own code).
//!
//! Train and test never share a scene. Each split draws from its own seed stream, and a scene
//! belongs to one split only, chosen by a hash of its canonical description
//! ([`Scene::canonical`]) that does not depend on the seed: a candidate scene owned by the other
//! split is drawn again. So disjointness holds for any two seeds and counts, with no shared
//! state between the two runs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

pub mod font;
pub mod labels;
pub mod media;
pub mod mp4;
pub mod multi;
pub mod raster;
pub mod rng;
pub mod scene;
pub mod task;
pub mod text;
pub mod video;

pub use media::{media_item, MediaItem};
pub use raster::{render, Raster};
pub use scene::{Color, Object, Position, Scene, Shape, Size};
pub use task::{Qa, Task};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: cannot encode the PNG: {source}", path.display())]
    Png {
        path: PathBuf,
        source: image::ImageError,
    },
    #[error("cannot write the samples as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{}: cannot write the MP4: {what}: {source}", path.display())]
    Mp4 {
        path: PathBuf,
        what: String,
        source: ffmpeg_next::Error,
    },
    #[error("{}: cannot write the MP4: {why}", path.display())]
    Mp4Frames { path: PathBuf, why: String },
    #[error("image size {0} px is not usable; expected an even size of at least {MIN_IMAGE_SIZE} px (videos are also written as MP4s in YUV 4:2:0, which needs even sides; the default is {DEFAULT_IMAGE_SIZE})")]
    ImageSize(u32),
    #[error("at most {0} objects per scene is not usable; expected 1 to {max}", max = scene::MAX_OBJECTS)]
    MaxObjects(usize),
    #[error("no scene for sample {index} after {MAX_ATTEMPTS} draws; expected one in a few (this is a bug)")]
    Exhausted { index: usize },
}

pub type Result<T> = std::result::Result<T, Error>;

/// 384 / 2: the 384 px SigLIP tile is an exact 2x upscale of it, a nano model with a 192 px
/// tile sees it at native resolution, and the smallest shape (a small square, 15 px across)
/// still covers a 14 px patch at either tile size. Small images keep a 2-core CPU's training
/// step and the disk cheap: a PNG is about 3 KB, so 100k samples are about 300 MB.
pub const DEFAULT_IMAGE_SIZE: u32 = 192;
/// Below this a small shape is under 4 px across.
pub const MIN_IMAGE_SIZE: u32 = 32;
/// Draws per sample before giving up (a scene is rejected when an object finds no room, the
/// other split owns it, or the question has no unambiguous object: each well under 1 in 2).
const MAX_ATTEMPTS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }

    /// The split that owns a scene: the low bit of the FNV-1a hash of its canonical description,
    /// passed through SplitMix64's finaliser. It must not depend on the seed, or two runs with
    /// different seeds could share scenes. (FNV-1a's low bit alone is the parity of the bytes'
    /// low bits: changing one attribute's name would flip a scene's split deterministically, so
    /// e.g. a given color change would always cross the splits.)
    pub fn owner(scene: &Scene) -> Split {
        Split::owner_of(&scene.canonical())
    }

    /// The split that owns the thing with this canonical description (a scene, a text card, a
    /// chart).
    pub fn owner_of(canonical: &str) -> Split {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in canonical.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        if rng::mix(h) & 1 == 0 {
            Split::Train
        } else {
            Split::Test
        }
    }

    fn tag(self) -> u64 {
        match self {
            Split::Train => 0x7472_6169_6e00_0000, // "train"
            Split::Test => 0x7465_7374_0000_0000,  // "test"
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Split {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            _ => Err(format!("unknown split {s:?}; expected train or test")),
        }
    }
}

/// How the world is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The side of the square images, in pixels: even, at least [`MIN_IMAGE_SIZE`].
    pub image_size: u32,
    /// At most this many objects in a single-image scene (1..=[`scene::MAX_OBJECTS`]): below
    /// the default, an easier world for the first phase of a curriculum. Multi-image sets,
    /// videos, text cards and charts are drawn as always.
    pub max_objects: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            image_size: DEFAULT_IMAGE_SIZE,
            max_objects: scene::MAX_OBJECTS,
        }
    }
}

/// One turn, as LLaVA JSON writes it (`"human"` / `"gpt"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Turn {
    pub from: &'static str,
    pub value: String,
}

/// One LLaVA JSON sample, with the family (`task`) and how it is graded (`metric`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    pub id: String,
    /// Relative to the JSON file's directory; empty (and not written) for a multi-image set or
    /// a video.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// A multi-image set, written as `image: [paths]` (then `image` is empty).
    #[serde(rename = "image", skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// A video, relative to the JSON file's directory: its folder of frame PNGs or the MP4 of
    /// the same frames (both are written; [`media::video_path`] says which one a sample names).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub video: String,
    pub conversations: Vec<Turn>,
    pub task: Task,
    pub metric: &'static str,
}

/// A sample with the scene it asks about (what the tests check the answers against).
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub scene: Scene,
    pub sample: Sample,
}

/// The seed of draw `attempt` for sample `index`: each split and seed its own stream.
fn scene_seed(split: Split, seed: u64, index: usize, attempt: usize) -> u64 {
    rng::mix(rng::mix(rng::mix(seed ^ split.tag()) ^ index as u64) ^ attempt as u64)
}

/// Sample `index` of a split: families in turn (index mod 7), so every family has `count / 7`
/// samples give or take one.
pub fn item(split: Split, seed: u64, index: usize) -> Result<Item> {
    item_with(split, seed, index, scene::MAX_OBJECTS)
}

/// [`item`] with at most `max_objects` objects in its scene (see [`Options::max_objects`]).
pub fn item_with(split: Split, seed: u64, index: usize, max_objects: usize) -> Result<Item> {
    let task = Task::ALL[index % Task::ALL.len()];
    for attempt in 0..MAX_ATTEMPTS {
        let mut rng = rng::Rng::new(scene_seed(split, seed, index, attempt));
        let Some(scene) = Scene::sample_at_most(&mut rng, max_objects) else {
            continue;
        };
        if Split::owner(&scene) != split {
            continue;
        }
        let Some(qa) = task::ask(task, &scene, &mut rng) else {
            continue;
        };
        let id = format!("{split}-{index:06}");
        let sample = Sample {
            image: format!("images/{split}/{id}.png"),
            images: Vec::new(),
            video: String::new(),
            id,
            conversations: vec![
                Turn {
                    from: "human",
                    value: format!("<image>\n{}", qa.question),
                },
                Turn {
                    from: "gpt",
                    value: qa.answer,
                },
            ],
            task,
            metric: task.metric(),
        };
        return Ok(Item { scene, sample });
    }
    Err(Error::Exhausted { index })
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub split: Split,
    pub json: PathBuf,
    pub samples: usize,
    pub per_task: BTreeMap<Task, usize>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tasks: Vec<String> = self
            .per_task
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        write!(
            f,
            "{} {} samples -> {} ({})",
            self.samples,
            self.split,
            self.json.display(),
            tasks.join(", ")
        )
    }
}

/// Writes `out/<split>.json` and `out/images/<split>/<id>.png` at the default image size; the
/// families take turns, the single-image ones first, then the multi-image sets
/// (`<id>-1.png`, ...) and videos (`<id>/0000.png`, ... and `<id>.mp4`) of [`media`]; after
/// every 14 of those, one sample of each text and chart family of [`text`]
/// (`<split>-doc-<k>.png`).
pub fn generate(out: &Path, split: Split, seed: u64, count: usize) -> Result<Summary> {
    generate_with(out, split, seed, count, &Options::default())
}

pub fn generate_with(
    out: &Path,
    split: Split,
    seed: u64,
    count: usize,
    opts: &Options,
) -> Result<Summary> {
    if opts.image_size < MIN_IMAGE_SIZE || opts.image_size % 2 == 1 {
        return Err(Error::ImageSize(opts.image_size));
    }
    if !(1..=scene::MAX_OBJECTS).contains(&opts.max_objects) {
        return Err(Error::MaxObjects(opts.max_objects));
    }
    let dir = out.join("images").join(split.name());
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let mut samples = Vec::with_capacity(count);
    let mut per_task = BTreeMap::new();
    for index in 0..count {
        let other = match text::slot(index) {
            text::Slot::Other(j) => j,
            text::Slot::Doc(k) => {
                let sample = text::write(out, split, seed, k, opts)?;
                *per_task.entry(sample.task).or_insert(0) += 1;
                samples.push(sample);
                continue;
            }
        };
        let sample = match media::slot(other) {
            media::Slot::Single(j) => {
                let Item { scene, sample } = item_with(split, seed, j, opts.max_objects)?;
                media::save_png(&out.join(&sample.image), &render(&scene, opts.image_size))?;
                sample
            }
            media::Slot::Media(k) => media::write(out, split, seed, k, opts)?,
        };
        *per_task.entry(sample.task).or_insert(0) += 1;
        samples.push(sample);
    }
    let json = out.join(format!("{split}.json"));
    let text = serde_json::to_string_pretty(&samples)?;
    std::fs::write(&json, text).map_err(|source| Error::Io {
        path: json.clone(),
        source,
    })?;
    Ok(Summary {
        split,
        json,
        samples: count,
        per_task,
    })
}
