//! How LLaVA-OneVision turns vision features into the token rows that replace placeholders:
//! the pure size arithmetic (shared with the processor, which must predict the same counts) and
//! the tensor packing (transformers `pack_image_features`, `get_video_features`).
//!
//! All size arithmetic is in f64 with transformers' operation order; see spec §2.5, §3.1, §6.

use candle_core::Tensor;
use onevision_nn::interpolate::resize_bilinear;

use crate::config::{AspectRatio, LlavaOnevisionConfig};
use crate::{Error, Result};

/// transformers' `select_best_resolution`: the pinpoint (h, w) that keeps the most of the
/// image's resolution, then wastes the least; the first wins ties.
pub fn select_best_resolution(
    size: (usize, usize),
    pinpoints: &[(usize, usize)],
) -> (usize, usize) {
    let (h, w) = (size.0 as f64, size.1 as f64);
    let mut best = pinpoints[0];
    let (mut best_eff, mut best_waste) = (-1i64, i64::MAX);
    for &(ph, pw) in pinpoints {
        let scale = (pw as f64 / w).min(ph as f64 / h);
        let (dw, dh) = ((w * scale) as i64, (h * scale) as i64);
        let effective = (dw * dh).min(size.0 as i64 * size.1 as i64);
        let waste = (ph * pw) as i64 - effective;
        if effective > best_eff || (effective == best_eff && waste < best_waste) {
            best = (ph, pw);
            best_eff = effective;
            best_waste = waste;
        }
    }
    best
}

/// Python's `int(round(x, 7))`, the rounding transformers applies to unpadded sizes
/// (bug-compatible: PR #35779 added it to keep processor and model in step).
fn round7_trunc(x: f64) -> usize {
    ((x * 1e7).round() / 1e7) as usize
}

/// Python's float floor division `a // b` (fmod based, so it never rounds up across an
/// integer the way `floor(a / b)` can).
fn py_floordiv(a: f64, b: f64) -> f64 {
    let m = a % b;
    let div = (a - m) / b;
    let mut f = div.floor();
    if div - f > 0.5 {
        f += 1.0;
    }
    f
}

/// The rows and columns of features kept after removing the padding the processor added:
/// returns `(first_row, rows, first_col, cols)` of a `cur_h × cur_w` grid of an image of
/// `size` = (h, w). transformers `unpad_image`.
pub fn unpad_region(
    size: (usize, usize),
    cur_h: usize,
    cur_w: usize,
) -> (usize, usize, usize, usize) {
    let (oh, ow) = (size.0 as f64, size.1 as f64);
    if ow / oh > cur_w as f64 / cur_h as f64 {
        let new_h = round7_trunc(oh * (cur_w as f64 / ow));
        let pad = cur_h.saturating_sub(new_h) / 2;
        (pad, cur_h - 2 * pad, 0, cur_w)
    } else {
        let new_w = round7_trunc(ow * (cur_h as f64 / oh));
        let pad = cur_w.saturating_sub(new_w) / 2;
        (0, cur_h, pad, cur_w - 2 * pad)
    }
}

/// The `anyres_max_N` shrink target for an `h × w` feature grid, if it applies
/// (ratio > 1.1; the target uses floor division by the float ratio).
pub fn shrink_target(
    h: usize,
    w: usize,
    max_tiles: usize,
    tile_tokens: usize,
) -> Option<(usize, usize)> {
    let ratio = ((h * w) as f64 / (max_tiles * tile_tokens) as f64).sqrt();
    (ratio > 1.1).then(|| {
        (
            py_floordiv(h as f64, ratio) as usize,
            py_floordiv(w as f64, ratio) as usize,
        )
    })
}

/// How one image was tiled by the processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageLayout {
    /// Base tile + AnyRes grid (single-image prompts).
    AnyRes,
    /// One square-padded tile (several images in one message, or `image_aspect_ratio: pad`).
    Single,
    /// The image squashed to one tile, its features alone with no newline: LLaVA-NeXT's
    /// stage-1 pretraining (`image_aspect_ratio` "square", `mm_patch_merge_type` "flat"),
    /// 729 rows. Only the trainer uses it; transformers has no such inference path.
    Base,
}

/// The feature grid of an AnyRes image before newlines: (rows, cols) after unpad and shrink.
fn anyres_feature_grid(size: (usize, usize), cfg: &LlavaOnevisionConfig) -> (usize, usize) {
    let g = cfg.vision.grid();
    let (bh, bw) = select_best_resolution(size, &cfg.grid_pinpoints);
    let (cur_h, cur_w) = (
        bh / cfg.vision.image_size * g,
        bw / cfg.vision.image_size * g,
    );
    let (_, h, _, w) = unpad_region(size, cur_h, cur_w);
    match cfg.aspect_ratio {
        AspectRatio::AnyResMax(n) => shrink_target(h, w, n, g * g).unwrap_or((h, w)),
        _ => (h, w),
    }
}

/// Tiles the processor makes for an image: (grid rows, grid cols) of the AnyRes grid.
pub fn anyres_grid(size: (usize, usize), cfg: &LlavaOnevisionConfig) -> (usize, usize) {
    let (bh, bw) = select_best_resolution(size, &cfg.grid_pinpoints);
    (bh / cfg.vision.image_size, bw / cfg.vision.image_size)
}

/// Placeholder tokens one image becomes (transformers `_get_number_of_features` for AnyRes,
/// tile + newline for a single padded tile).
pub fn image_token_count(
    size: (usize, usize),
    layout: ImageLayout,
    cfg: &LlavaOnevisionConfig,
) -> usize {
    let tile = cfg.vision.tokens_per_tile();
    match layout {
        ImageLayout::Base => tile,
        ImageLayout::Single => tile + 1,
        ImageLayout::AnyRes => {
            let (h, w) = anyres_feature_grid(size, cfg);
            tile + h * (w + 1)
        }
    }
}

/// Side of the pooled video feature grid (14 for 27).
pub fn video_pooled_side(cfg: &LlavaOnevisionConfig) -> usize {
    cfg.vision.grid().div_ceil(2)
}

/// Placeholder tokens a video of `frames` frames becomes: pooled tokens per frame, one newline.
pub fn video_token_count(frames: usize, cfg: &LlavaOnevisionConfig) -> usize {
    let s = video_pooled_side(cfg);
    frames * s * s + 1
}

/// Packs the projected tiles of one image.
///
/// # Shapes
/// `tiles`: (p, g·g, H), `newline`: H -> (image_token_count, H)
pub fn pack_image(
    tiles: &Tensor,
    size: (usize, usize),
    layout: ImageLayout,
    newline: &Tensor,
    cfg: &LlavaOnevisionConfig,
) -> Result<Tensor> {
    let (p, t, c) = tiles.dims3()?;
    let g = cfg.vision.grid();
    let newline = newline.reshape((1, c))?;
    match layout {
        ImageLayout::Base => {
            if p != 1 {
                return Err(Error::Input(format!(
                    "a base-tile image has {p} tiles; expected 1"
                )));
            }
            Ok(tiles.get(0)?)
        }
        ImageLayout::Single => {
            if p != 1 {
                return Err(Error::Input(format!(
                    "a single-tile image has {p} tiles; expected 1"
                )));
            }
            Ok(Tensor::cat(&[&tiles.get(0)?, &newline], 0)?)
        }
        ImageLayout::AnyRes => {
            let (rows, cols) = anyres_grid(size, cfg);
            if p != rows * cols + 1 || t != g * g {
                return Err(Error::Input(format!(
                    "an AnyRes image of {}x{} (h x w) needs 1 + {rows}x{cols} tiles of {} tokens; got {p} tiles of {t}",
                    size.0,
                    size.1,
                    g * g
                )));
            }
            let base = tiles.get(0)?; // (g·g, H)
            let grid = tiles
                .narrow(0, 1, rows * cols)?
                .reshape((rows, cols, g, g, c))? // (r, c, y, x, H)
                .permute((0, 2, 1, 3, 4))? // (r, y, c, x, H)
                .reshape((rows * g, cols * g, c))?;
            let (top, h, left, w) = unpad_region(size, rows * g, cols * g);
            let mut grid = grid.narrow(0, top, h)?.narrow(1, left, w)?; // (h, w, H)
            if let AspectRatio::AnyResMax(n) = cfg.aspect_ratio {
                if let Some((nh, nw)) = shrink_target(h, w, n, g * g) {
                    grid = resize_bilinear(&grid.unsqueeze(0)?, nh, nw)?.squeeze(0)?;
                }
            }
            let (h, w, _) = grid.dims3()?;
            let nl = newline.reshape((1, 1, c))?.broadcast_as((h, 1, c))?;
            let grid = Tensor::cat(&[&grid, &nl], 1)?.reshape((h * (w + 1), c))?;
            Ok(Tensor::cat(&[&base, &grid], 0)?)
        }
    }
}

/// Pools the projected frames of one video and appends one newline.
///
/// # Shapes
/// `frames`: (T, g·g, H), `newline`: H -> (T·s·s + 1, H), s = ceil(g / 2)
pub fn pack_video(frames: &Tensor, newline: &Tensor, cfg: &LlavaOnevisionConfig) -> Result<Tensor> {
    let (n, _, c) = frames.dims3()?;
    let g = cfg.vision.grid();
    let s = video_pooled_side(cfg);
    let pooled = resize_bilinear(&frames.reshape((n, g, g, c))?, s, s)?; // (T, s, s, H)
    let pooled = pooled.reshape((n * s * s, c))?;
    Ok(Tensor::cat(&[&pooled, &newline.reshape((1, c))?], 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn py_floordiv_matches_python_edge_cases() {
        // Python: 75 // 1.2424... == 60.0; 7 // 0.1 == 69.0 (floor(7 / 0.1) would say 70).
        assert_eq!(py_floordiv(7.0, 0.1), 69.0);
        assert_eq!(py_floordiv(75.0, 1.242_259_987_499_883_2), 60.0);
        assert_eq!(py_floordiv(6.0, 3.0), 2.0);
    }

    #[test]
    fn round7_rounds_before_truncating() {
        assert_eq!(round7_trunc(58.999_999_999_9), 59);
        assert_eq!(round7_trunc(58.99), 58);
    }
}
