//! Training samples in LLaVA-NeXT's formats (`.json` lists, `.jsonl` lines, mixture `.yaml`
//! files), read as they are in the wild and validated before any step runs.
//!
//! [`load`] follows LLaVA-NeXT's `LazySupervisedDataset` (`llava/train/train.py`): its
//! `__init__` for the files and the mixture (see [`mixture`]), `_get_item` for a sample's fields
//! and media, `preprocess_multimodal` for the `<image>` rewrite (see [`preprocess_multimodal`]).
//! Where upstream would crash, retry on the next sample, or print and move on, this module
//! records a [`Problem`] (file, line, sample id, what was expected) and keeps going, so one pass
//! lists every problem; a sample with a problem is left out of [`Dataset::samples`].
//!
//! Samples keep file order (mixture entries in their order); the trainer shuffles.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

mod media;
pub mod mixture;
mod problem;
mod sample;
mod source;

pub use mixture::{Count, Strategy};
pub use problem::{Origin, Problem};
pub use sample::{preprocess_multimodal, MediaRef, Modality, Sample, IMAGE_MARKER};

use crate::{Error, Result, Rng};

/// Who speaks a turn. LLaVA-NeXT writes `"human"` / `"gpt"`; `"user"` / `"assistant"` are
/// accepted too, as its `preprocess_qwen` maps roles through `roles.get(role, role)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    Human,
    Gpt,
}

/// One turn of a conversation, after LLaVA-NeXT's `preprocess_multimodal` rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub from: Speaker,
    pub value: String,
}

/// Where media live and how mixtures draw (`--image-folder`, `--video-folder`, `--seed`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataOptions {
    /// Relative image paths are joined to it; without it, they are relative to the current
    /// directory. Absolute paths are kept.
    pub image_folder: Option<PathBuf>,
    /// The same for videos.
    pub video_folder: Option<PathBuf>,
    /// Seeds `random:N` mixture entries (each entry draws from its own stream).
    pub seed: u64,
}

/// What one sample file contributed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSummary {
    pub path: PathBuf,
    /// The sampling strategy, written canonically (`all`, `first:1000`, `random:10%`).
    pub strategy: String,
    /// Entries in the file (list elements, or non-blank lines), good or bad.
    pub available: usize,
    /// Entries the strategy picked; the picked ones with problems are in [`Dataset::problems`].
    pub taken: usize,
}

/// Samples per modality, as `--check-data` prints them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModalityCounts {
    pub text: usize,
    pub single_image: usize,
    pub multi_image: usize,
    pub video: usize,
}

impl ModalityCounts {
    pub fn total(&self) -> usize {
        self.text + self.single_image + self.multi_image + self.video
    }
}

/// The good samples, every problem found, and what each file gave.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub samples: Vec<Sample>,
    pub problems: Vec<Problem>,
    pub sources: Vec<SourceSummary>,
}

impl Dataset {
    pub fn modality_counts(&self) -> ModalityCounts {
        let mut c = ModalityCounts::default();
        for s in &self.samples {
            match s.modality() {
                Modality::Text => c.text += 1,
                Modality::SingleImage => c.single_image += 1,
                Modality::MultiImage => c.multi_image += 1,
                Modality::Video => c.video += 1,
            }
        }
        c
    }

    /// How many entries were left out for problems (a sample with several problems counts once;
    /// a whole-file problem counts none, as no entry was read).
    pub fn bad_entries(&self) -> usize {
        let set: HashSet<&Origin> = self
            .problems
            .iter()
            .map(|p| &p.origin)
            .filter(|o| o.line > 0)
            .collect();
        set.len()
    }

    /// `Err(DataProblems)` listing every problem, for a run without `--skip-bad-samples`.
    pub fn require_clean(&self) -> Result<()> {
        if self.problems.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        Err(Error::DataProblems {
            count: self.problems.len(),
            list: list.join("\n"),
        })
    }
}

/// Loads a `.json` list, a `.jsonl` file, or a `.yaml` / `.yml` mixture.
///
/// `Err` only when nothing can be loaded: the file is missing or unreadable
/// ([`Error::Io`]), has another extension, or is a mixture that is not YAML or has no `datasets`
/// list ([`Error::Config`]). Everything else wrong is a [`Problem`] in the returned dataset.
pub fn load(path: &Path, opts: &DataOptions) -> Result<Dataset> {
    let mut ds = Dataset::default();
    let mut checker = media::MediaChecker::new(opts);
    let ext = path.extension().and_then(|e| e.to_str());
    if matches!(ext, Some("yaml" | "yml")) {
        mixture::load_yaml(path, opts.seed, &mut checker, &mut ds)?;
        return Ok(ds);
    }
    let Some(format) = source::Format::of(path) else {
        return Err(Error::Config(format!(
            "{}: unknown data file type; expected a .json list, a .jsonl file or a .yaml mixture",
            path.display()
        )));
    };
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // `all` consumes no randomness.
    let mut rng = Rng::new(opts.seed);
    source::load_file(
        path,
        bytes,
        format,
        Strategy::All,
        &mut rng,
        &mut checker,
        &mut ds,
    );
    Ok(ds)
}
