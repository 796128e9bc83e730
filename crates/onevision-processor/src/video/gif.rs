//! Animated GIFs, frame by frame as Pillow shows them to transformers 5.
//!
//! The reference (`tools/fixtures/make_video_fixtures.py`) is Pillow `seek(i)`,
//! `convert("RGBA")`, `alpha_composite` onto white: every frame is the whole canvas with the
//! earlier frames showing through where this one is transparent or does not reach, transparent
//! where nothing was drawn yet. The `image` crate composites frames the same way (disposal
//! "keep" and "restore to background" with a transparent index, as GIF encoders write them), so
//! the alpha is blended onto white here with the image module's Pillow formula. Beyond the two
//! fixtures, a one-off check found equal bytes for disposals 0, 1 and 3, with and without a
//! transparent index, and for Pillow's `optimize=True` partial frames.
//!
//! Known difference (not covered by a fixture): a frame with "restore to background" disposal in a GIF *without* a
//! transparent index; Pillow restores the palette's background colour, the `image` crate (like
//! browsers) restores transparency, which becomes white.
//!
//! The frames are decoded twice, once to count them (and add up their delays, for the frame
//! rate) and once to keep the selected ones, so memory stays at a few canvases whatever the
//! length.

use std::io::{BufRead, Seek};

use ::image::codecs::gif::GifDecoder;
use ::image::{AnimationDecoder, ImageDecoder};

use super::{video_error, FrameRate, FrameSelection, Video};
use crate::image::{composite_on_white, DecodeLimits, RgbImage};
use crate::Result;

/// `GIF87a` or `GIF89a`.
pub(super) fn is_gif(head: &[u8]) -> bool {
    head.len() >= 6 && &head[..3] == b"GIF" && (&head[3..6] == b"87a" || &head[3..6] == b"89a")
}

/// FFmpeg 5.1 `libavformat/gifdec.c`: a delay under `min_delay` (2 centiseconds) becomes
/// `default_delay` (10), as browsers also play such GIFs. (The FFmpeg 8 inside PyAV 18 agrees
/// for 0 but keeps 1 centisecond: it reports 100 fps for such a GIF, FFmpeg 5.1 10 fps.)
const MIN_DELAY_CS: u64 = 2;
const DEFAULT_DELAY_CS: u64 = 10;

/// Decodes the selected frames of a GIF; `open` gives a fresh reader over the file each pass.
pub(super) fn load<R, F>(
    open: F,
    what: &str,
    sel: &FrameSelection,
    limits: &DecodeLimits,
) -> Result<Video>
where
    R: BufRead + Seek,
    F: Fn() -> Result<R>,
{
    let mut duration_cs = 0u64;
    let total = decode(open()?, what, limits, |_, frame| {
        duration_cs = duration_cs.saturating_add(delay_cs(frame));
        Ok(())
    })?;
    if total == 0 {
        return Err(video_error(
            what,
            "the GIF has no frames; expected an animated GIF with at least one frame",
        ));
    }
    // Frames / duration: every delay is at least MIN_DELAY_CS, so the duration is not 0.
    let rate = FrameRate::new((total as u64).saturating_mul(100), duration_cs);
    let indices = sel.pick(total, rate);
    let mut frames = Vec::with_capacity(indices.len());
    let mut next = 0;
    decode(open()?, what, limits, |i, frame| {
        if indices.get(next) == Some(&i) {
            frames.push(to_rgb(frame.buffer()));
            next += 1;
        }
        Ok(())
    })?;
    if frames.len() != indices.len() {
        return Err(video_error(
            what,
            format!("the GIF gave {total} frames on the first pass and fewer on the second"),
        ));
    }
    Ok(Video {
        frames,
        total_frames: total,
        indices,
        avg_frame_rate: rate,
    })
}

/// A frame's delay in centiseconds, as the GIF stores it (the `image` crate gives 10x that in
/// milliseconds), with FFmpeg's minimum.
fn delay_cs(frame: &::image::Frame) -> u64 {
    let (num, den) = frame.delay().numer_denom_ms();
    let cs = (num as u64 + 5 * den as u64) / (10 * den.max(1) as u64);
    if cs < MIN_DELAY_CS {
        DEFAULT_DELAY_CS
    } else {
        cs
    }
}

/// Runs `each(index, frame)` over the composited RGBA frames; returns how many there were.
fn decode<R: BufRead + Seek>(
    reader: R,
    what: &str,
    limits: &DecodeLimits,
    mut each: impl FnMut(usize, &::image::Frame) -> Result<()>,
) -> Result<usize> {
    let bad = |e: ::image::ImageError| video_error(what, format!("corrupt or truncated GIF: {e}"));
    let mut decoder = GifDecoder::new(reader).map_err(bad)?;
    let (w, h) = decoder.dimensions();
    limits.check(what, w as u64, h as u64)?;
    let mut lim = ::image::Limits::default();
    // Room for the canvas, the previous canvas and one frame (RGBA8), as in image.rs.
    lim.max_alloc = Some(limits.max_pixels.saturating_mul(16).saturating_add(1 << 20));
    decoder.set_limits(lim).map_err(bad)?;
    let mut count = 0;
    for frame in decoder.into_frames() {
        let frame = frame.map_err(bad)?;
        each(count, &frame)?;
        count += 1;
    }
    Ok(count)
}

fn to_rgb(rgba: &::image::RgbaImage) -> RgbImage {
    let data = rgba
        .as_raw()
        .chunks_exact(4)
        .flat_map(|p| [0, 1, 2].map(|c| composite_on_white(p[c], p[3])))
        .collect();
    RgbImage {
        width: rgba.width() as usize,
        height: rgba.height() as usize,
        data,
    }
}
