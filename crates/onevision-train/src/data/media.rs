//! Media paths: resolved against `--image-folder` / `--video-folder` as LLaVA-NeXT's
//! `LazySupervisedDataset.process_image` and `_get_item` join them (`os.path.join(folder, file)`:
//! an absolute path is kept), and checked before any step runs, so that a missing file is a
//! reported problem and not, as upstream, a retry loop that silently trains on the next sample.
//!
//! The checks are cheap: an image's header must decode to a size (no pixel decode); a video file
//! must open and be non-empty; a directory of frames (LLaVA-NeXT's `shareVideoGPTV` layout) must
//! hold at least one file. Each path is checked once, however many samples name it.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::DataOptions;

/// Why a media file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fault {
    /// Nothing at the resolved path.
    Missing,
    /// Something there, but not usable: the reason and what was expected.
    Unusable(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Image,
    Video,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Video => "video",
        }
    }
}

/// Resolves and checks media paths, remembering each path's verdict.
pub(super) struct MediaChecker<'a> {
    opts: &'a DataOptions,
    seen: HashMap<(Kind, PathBuf), Result<(), Fault>>,
}

impl<'a> MediaChecker<'a> {
    pub(super) fn new(opts: &'a DataOptions) -> Self {
        Self {
            opts,
            seen: HashMap::new(),
        }
    }

    fn folder(&self, kind: Kind) -> Option<&Path> {
        match kind {
            Kind::Image => self.opts.image_folder.as_deref(),
            Kind::Video => self.opts.video_folder.as_deref(),
        }
    }

    /// The path as written, joined to its folder (`Path::join` keeps an absolute path, as
    /// `os.path.join` does); without a folder, relative to the current directory.
    pub(super) fn resolve(&self, kind: Kind, raw: &str) -> PathBuf {
        match self.folder(kind) {
            Some(dir) => dir.join(raw),
            None => PathBuf::from(raw),
        }
    }

    /// Where a relative path of this kind was looked for, for messages.
    pub(super) fn base_hint(&self, kind: Kind) -> String {
        match (self.folder(kind), kind) {
            (Some(dir), _) => format!("the {} folder {}", kind.name(), dir.display()),
            (None, Kind::Image) => "the current directory; pass --image-folder".to_owned(),
            (None, Kind::Video) => "the current directory; pass --video-folder".to_owned(),
        }
    }

    pub(super) fn check(&mut self, kind: Kind, path: &Path) -> Result<(), Fault> {
        let key = (kind, path.to_path_buf());
        if let Some(verdict) = self.seen.get(&key) {
            return verdict.clone();
        }
        let verdict = match kind {
            Kind::Image => probe_image(path),
            Kind::Video => probe_video(path),
        };
        self.seen.insert(key, verdict.clone());
        verdict
    }
}

fn metadata(path: &Path) -> Result<fs::Metadata, Fault> {
    fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Fault::Missing,
        _ => Fault::Unusable(format!("cannot be read ({e})")),
    })
}

/// The header must decode to a width and height (`into_dimensions`: no pixel decode). The
/// format is guessed from the content first, the extension second, as Pillow's `Image.open`
/// ignores the extension.
fn probe_image(path: &Path) -> Result<(), Fault> {
    const EXPECTED: &str = "expected a PNG, JPEG, WebP, GIF, BMP or TIFF file";
    if metadata(path)?.is_dir() {
        return Err(Fault::Unusable(format!("is a directory; {EXPECTED}")));
    }
    let reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| Fault::Unusable(format!("cannot be read ({e})")))?;
    if reader.format().is_none() {
        return Err(Fault::Unusable(format!(
            "is in no known image format; {EXPECTED}"
        )));
    }
    match reader.into_dimensions() {
        Ok((w, h)) if w > 0 && h > 0 => Ok(()),
        Ok((w, h)) => Err(Fault::Unusable(format!(
            "is {w}x{h} pixels; expected a non-empty image"
        ))),
        Err(e) => Err(Fault::Unusable(format!(
            "has no readable image header ({e}); {EXPECTED}"
        ))),
    }
}

/// A video is a file (decoded later by the processor) or a directory of frame files.
fn probe_video(path: &Path) -> Result<(), Fault> {
    let meta = metadata(path)?;
    if meta.is_dir() {
        let entries =
            fs::read_dir(path).map_err(|e| Fault::Unusable(format!("cannot be listed ({e})")))?;
        let has_frame = entries.filter_map(|e| e.ok()).any(|e| e.path().is_file());
        return if has_frame {
            Ok(())
        } else {
            Err(Fault::Unusable(
                "is a directory without frame files; expected a video file or a directory of frame images"
                    .to_owned(),
            ))
        };
    }
    fs::File::open(path).map_err(|e| Fault::Unusable(format!("cannot be read ({e})")))?;
    if meta.len() == 0 {
        return Err(Fault::Unusable(
            "is an empty file; expected a video file".to_owned(),
        ));
    }
    Ok(())
}
