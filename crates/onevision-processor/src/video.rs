//! Video input: frames of a video file, an animated GIF or a directory of frame images, as 8-bit
//! RGB at the video's own size (spec §2.4, §6.14). Resizing to 384x384 and normalizing is the
//! processor's job, as for images.
//!
//! Which frames ([`FrameSelection`], `video/selection.rs`):
//! - [`load_video`] takes `n` uniformly: the original LLaVA-NeXT code and lmms-eval take
//!   `np.linspace(0, total - 1, n).astype(int)` (first and last frame included), not
//!   transformers' `arange(n) * total // n`; [`sample_indices`] reproduces numpy bit for bit.
//! - [`load_video_frames`] with [`FrameSelection::Fps`] samples as LLaVA-NeXT trains: a frame
//!   every `round(avg_fps / fps)`, capped at an upper bound by the same linspace. The average
//!   frame rate ([`Video::avg_frame_rate`]) is, per source:
//!   - a video file: the stream's `avg_frame_rate` after FFmpeg's probing, the field decord's
//!     `get_avg_fps` (which LLaVA-NeXT reads) and PyAV's `average_rate` report; none when
//!     FFmpeg leaves it unknown (0/0);
//!   - an animated GIF: frames / total duration, from the frame delays, where a delay under 2
//!     centiseconds counts as 10 as FFmpeg 5.1's GIF demuxer (`min_delay`, `default_delay`)
//!     and browsers do. FFmpeg's `avg_frame_rate` for a GIF is only an estimate from the
//!     probed packets, and FFmpeg versions differ: PyAV 18's FFmpeg 8 gives exactly
//!     frames / duration on the fixtures, FFmpeg 5.1 57/4 where that is 100/7;
//!   - a directory: none; its frames are taken as already sampled (every frame, capped).
//!
//! How each source is decoded, and the reference it equals byte for byte
//! (`fixtures/video/`, made by `tools/fixtures/make_video_fixtures.py`):
//! - a directory: the image files in it sorted by name, each through [`decode_file`], so a frame
//!   equals what transformers' Pillow path makes of the file;
//! - an animated GIF: the `image` crate's compositing of the frames, alpha onto white as
//!   transformers 5's `convert_to_rgb` does with Pillow (`video/gif.rs`);
//! - anything else: FFmpeg (MP4, WebM, MKV, MOV, AVI, ...), converted to RGB exactly as
//!   `ffmpeg -i X -f rawvideo -pix_fmt rgb24 -` does (`video/container.rs`).
//!
//! Frames are counted exactly before any is converted, and only the selected ones are kept.

mod container;
mod gif;
mod selection;

pub use selection::{sample_indices, FrameRate, FrameSelection};

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use crate::image::{decode_file, DecodeLimits, RgbImage};
use crate::{Error, Result};

/// What the loaders accept, for error messages.
const EXPECTED: &str = "expected a video file (MP4, WebM, MKV, MOV, AVI, ...), an animated GIF \
                        or a directory of frame images (png, jpg, webp, gif, bmp, tiff) sorted by name";

/// File name extensions (lower case) taken as frames in a directory; everything else is skipped.
const FRAME_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"];

/// Where the frames come from.
#[derive(Debug, Clone, Copy)]
pub enum VideoSource<'a> {
    /// A video file, an animated GIF, or a directory of frame images.
    Path(&'a Path),
    /// A video file or animated GIF held in memory (an upload); `what` names it in errors and,
    /// when it ends in an extension, helps FFmpeg guess the container. FFmpeg reads the bytes
    /// through a custom AVIO context: nothing is written to disk.
    Bytes { bytes: &'a [u8], what: &'a str },
}

impl VideoSource<'_> {
    fn what(&self) -> String {
        match self {
            VideoSource::Path(p) => p.display().to_string(),
            VideoSource::Bytes { what, .. } => what.to_string(),
        }
    }
}

/// Frames sampled from a video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Video {
    /// The sampled frames, in order, RGB at the video's own size (all frames share it).
    pub frames: Vec<RgbImage>,
    /// How many frames the whole video has.
    pub total_frames: usize,
    /// Which frames were taken (0-based, ascending, `frames.len()` of them).
    pub indices: Vec<usize>,
    /// The average frame rate the frames were selected by (module docs: per source); `None`
    /// for a directory of frames or a stream whose rate FFmpeg does not know.
    pub avg_frame_rate: Option<FrameRate>,
}

/// Decodes `n` uniformly sampled frames (see [`sample_indices`]) of a video file, an animated
/// GIF or a directory of frame images, RGB at the video's own size: [`load_video_frames`] with
/// [`FrameSelection::Uniform`].
///
/// The frame size is checked against `limits` before any pixel is decoded. Every failure is an
/// error (never a panic): an empty or unreadable file, something that is not a video, a video
/// without frames or with frames of different sizes, `n == 0`.
pub fn load_video(src: VideoSource, n: usize, limits: &DecodeLimits) -> Result<Video> {
    load_video_frames(src, FrameSelection::Uniform(n), limits)
}

/// Decodes the frames `sel` picks (see [`FrameSelection`]) of a video file, an animated GIF or
/// a directory of frame images, RGB at the video's own size; [`Video::avg_frame_rate`] says
/// which rate [`FrameSelection::Fps`] went by.
///
/// Errors as [`load_video`], and for a selection no video can meet (`Uniform(0)`, a sampling
/// rate that is not finite and above 0) before anything is read.
pub fn load_video_frames(
    src: VideoSource,
    sel: FrameSelection,
    limits: &DecodeLimits,
) -> Result<Video> {
    let what = src.what();
    sel.check(&what)?;
    match src {
        VideoSource::Path(path) => {
            let meta = std::fs::metadata(path).map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
            if meta.is_dir() {
                return load_frame_dir(path, &sel, limits);
            }
            if meta.len() == 0 {
                return Err(empty_file(&what));
            }
            if gif::is_gif(&read_head(path)?) {
                let open = || {
                    std::fs::File::open(path)
                        .map(std::io::BufReader::new)
                        .map_err(|source| Error::Io {
                            path: path.to_path_buf(),
                            source,
                        })
                };
                return gif::load(open, &what, &sel, limits);
            }
            let hint = path.file_name().and_then(|s| s.to_str());
            container::load(container::Media::File(path), hint, &what, &sel, limits)
        }
        VideoSource::Bytes { bytes, what: name } => {
            if bytes.is_empty() {
                return Err(empty_file(&what));
            }
            if gif::is_gif(bytes) {
                return gif::load(|| Ok(std::io::Cursor::new(bytes)), &what, &sel, limits);
            }
            let shared: Arc<[u8]> = Arc::from(bytes);
            container::load(
                container::Media::Bytes(shared),
                Some(name),
                &what,
                &sel,
                limits,
            )
        }
    }
}

/// The frames of a directory: image files (by extension, case-insensitive; hidden files
/// skipped) sorted by file name, as `sorted(os.listdir(d))` orders them; only the selected ones
/// are decoded. A directory has no frame rate: its frames are taken as already sampled.
fn load_frame_dir(dir: &Path, sel: &FrameSelection, limits: &DecodeLimits) -> Result<Video> {
    let what = dir.display().to_string();
    let io_err = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        let Some(name) = path.file_name() else {
            continue;
        };
        if name.as_encoded_bytes().first() == Some(&b'.') || !has_frame_extension(&path) {
            continue;
        }
        // Follows symbolic links; a directory named like an image is not a frame.
        if std::fs::metadata(&path)
            .map(|m| m.is_file())
            .unwrap_or(false)
        {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(video_error(
            &what,
            format!(
                "the directory contains no image files; expected a directory of frame images ({}) \
                 sorted by name",
                FRAME_EXTENSIONS.join(", ")
            ),
        ));
    }
    // Byte order of the names, which is Python's code-point order for UTF-8 names.
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    let indices = sel.pick(files.len(), None);
    let mut frames: Vec<RgbImage> = Vec::with_capacity(indices.len());
    for &i in &indices {
        let frame = decode_file(&files[i], limits)?;
        if let Some(first) = frames.first() {
            if (first.width, first.height) != (frame.width, frame.height) {
                return Err(video_error(
                    &what,
                    format!(
                        "frame {} is {}x{} but frame {} is {}x{}; all frames of a video must have \
                         one size",
                        files[i].display(),
                        frame.width,
                        frame.height,
                        files[indices[0]].display(),
                        first.width,
                        first.height
                    ),
                ));
            }
        }
        frames.push(frame);
    }
    Ok(Video {
        frames,
        total_frames: files.len(),
        indices,
        avg_frame_rate: None,
    })
}

fn has_frame_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| FRAME_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The first bytes of a file, enough to recognize a GIF.
fn read_head(path: &Path) -> Result<Vec<u8>> {
    let mut head = Vec::with_capacity(6);
    std::fs::File::open(path)
        .and_then(|f| f.take(6).read_to_end(&mut head))
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(head)
}

fn empty_file(what: &str) -> Error {
    video_error(what, format!("the file is empty (0 bytes); {EXPECTED}"))
}

fn video_error(what: &str, reason: impl Into<String>) -> Error {
    Error::Video {
        what: what.to_string(),
        reason: reason.into(),
    }
}

/// Checks that a frame has the size of the first one.
fn check_same_size(
    what: &str,
    index: usize,
    first: (usize, usize),
    this: (usize, usize),
) -> Result<()> {
    if first != this {
        return Err(video_error(
            what,
            format!(
                "frame {index} is {}x{} but the first frame is {}x{}; videos whose size changes \
                 midway are not supported",
                this.0, this.1, first.0, first.1
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_extensions() {
        assert!(has_frame_extension(Path::new("a/frame_001.PNG")));
        assert!(has_frame_extension(Path::new("x.jpeg")));
        assert!(!has_frame_extension(Path::new("notes.txt")));
        assert!(!has_frame_extension(Path::new("png")));
    }
}
