//! RGB images and frames to normalized pixel tiles, as `LlavaOnevisionImageProcessorPil` and
//! the original LLaVA-NeXT code do it (spec §2.2-2.4):
//!
//! - **AnyRes** (one image in a message): pick the best pinpoint, resize keeping the aspect
//!   ratio, pad centered with black, cut row-major tiles; the base image is the original
//!   squashed to the tile size. Output `[base, tile_0, …]`.
//! - **Square** (several images in one message): pad to a square with the mean color (127),
//!   squash to the tile size. One tile.
//! - **Video frames**: each frame squashed to the tile size.
//!
//! Every resize is the Pillow-exact bicubic of [`crate::resize`].

use onevision_models::llava_ov::packing::select_best_resolution;

use crate::config::{Normalize, ProcessorConfig};
use crate::image::RgbImage;
use crate::resize::resize_bicubic;

/// Normalized tiles, channel-first: `(n, 3, height, width)` in `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    pub data: Vec<f32>,
    /// (n, 3, height, width)
    pub shape: [usize; 4],
}

impl Pixels {
    /// The values of tile `i`, `3 · height · width` of them.
    pub fn tile(&self, i: usize) -> &[f32] {
        let n = self.shape[1] * self.shape[2] * self.shape[3];
        &self.data[i * n..][..n]
    }
}

/// Resizes unless the size is already right (Pillow returns a copy then).
fn resized(image: &RgbImage, width: usize, height: usize) -> RgbImage {
    if image.width == width && image.height == height {
        image.clone()
    } else {
        resize_bicubic(image, width, height)
    }
}

/// transformers `get_patch_output_size`: the size (h, w) that fits `target` keeping the
/// aspect ratio, in f64 with its operation order.
pub fn fit_size(size: (usize, usize), target: (usize, usize)) -> (usize, usize) {
    let (h, w) = (size.0 as f64, size.1 as f64);
    let (th, tw) = target;
    let (sw, sh) = (tw as f64 / w, th as f64 / h);
    if sw < sh {
        (((h * sw).ceil() as usize).min(th), tw)
    } else {
        (th, ((w * sh).ceil() as usize).min(tw))
    }
}

/// Places `image` on a `width × height` canvas of `fill` at (`left`, `top`).
fn paste(
    image: &RgbImage,
    width: usize,
    height: usize,
    left: usize,
    top: usize,
    fill: [u8; 3],
) -> RgbImage {
    let mut canvas = RgbImage::filled(width, height, fill);
    let row = image.width * 3;
    for (y, src) in image.data.chunks_exact(row).enumerate() {
        let start = ((top + y) * width + left) * 3;
        canvas.data[start..start + row].copy_from_slice(src);
    }
    canvas
}

/// The AnyRes tiles of one image: base (squashed) first, then the grid row-major.
pub fn anyres_tiles(image: &RgbImage, cfg: &ProcessorConfig) -> Vec<RgbImage> {
    let (th, tw) = cfg.size;
    let (bh, bw) = select_best_resolution(image.size_hw(), &cfg.grid_pinpoints);
    let (nh, nw) = fit_size(image.size_hw(), (bh, bw));
    let fitted = resized(image, nw, nh);
    // Centered; the odd pixel goes to the bottom/right (transformers `_get_padding_size`).
    let padded = paste(&fitted, bw, bh, (bw - nw) / 2, (bh - nh) / 2, [0, 0, 0]);
    let mut tiles = vec![resized(image, tw, th)];
    for i in (0..bh).step_by(th) {
        for j in (0..bw).step_by(tw) {
            let mut tile = RgbImage::filled(tw, th, [0, 0, 0]);
            for y in 0..th.min(bh - i) {
                let w = tw.min(bw - j);
                let src = ((i + y) * bw + j) * 3;
                tile.data[y * tw * 3..][..w * 3].copy_from_slice(&padded.data[src..][..w * 3]);
            }
            tiles.push(tile);
        }
    }
    tiles
}

/// The single tile of an image in a multi-image message: square-padded with the mean color
/// (transformers `pad_to_square`, LLaVA `expand2square`), then squashed to the tile size.
pub fn square_tile(image: &RgbImage, cfg: &ProcessorConfig) -> RgbImage {
    let (th, tw) = cfg.size;
    let side = image.width.max(image.height);
    let square = if image.width == image.height {
        image.clone()
    } else {
        paste(
            image,
            side,
            side,
            (side - image.width) / 2,
            (side - image.height) / 2,
            cfg.pad_fill,
        )
    };
    resized(&square, tw, th)
}

/// A video frame squashed to the tile size (no aspect preservation, no padding).
pub fn frame_tile(frame: &RgbImage, cfg: &ProcessorConfig) -> RgbImage {
    resized(frame, cfg.size.1, cfg.size.0)
}

/// Rescales and normalizes same-sized tiles into one channel-first block.
pub fn normalize(tiles: &[RgbImage], normalize: &Normalize) -> Pixels {
    let (h, w) = tiles.first().map_or((0, 0), |t| (t.height, t.width));
    let tables = [normalize.table(0), normalize.table(1), normalize.table(2)];
    let plane = h * w;
    let mut data = vec![0f32; tiles.len() * 3 * plane];
    for (tile, out) in tiles.iter().zip(data.chunks_exact_mut(3 * plane)) {
        debug_assert_eq!((tile.height, tile.width), (h, w));
        for (p, px) in tile.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + p] = tables[c][px[c] as usize];
            }
        }
    }
    Pixels {
        data,
        shape: [tiles.len(), 3, h, w],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> ProcessorConfig {
        ProcessorConfig::from_json(
            &json!({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}),
            "t",
            false,
        )
        .unwrap()
    }

    #[test]
    fn spec_example_899x1024_gives_ten_tiles_with_70px_bands() {
        // spec §2.2: best (1152, 1152), resized to (1012, 1152), 70 px of padding top and bottom.
        assert_eq!(fit_size((899, 1024), (1152, 1152)), (1012, 1152));
        let img = RgbImage::filled(1024, 899, [200, 100, 50]);
        let tiles = anyres_tiles(&img, &cfg());
        assert_eq!(tiles.len(), 10);
        // Tile 1 (grid row 0, col 0): the first 70 rows are padding.
        let t = &tiles[1];
        assert_eq!(&t.data[69 * 384 * 3..][..3], &[0, 0, 0]);
        assert_eq!(&t.data[70 * 384 * 3..][..3], &[200, 100, 50]);
    }

    #[test]
    fn square_tile_pads_with_mean_color() {
        let img = RgbImage::filled(384, 192, [255, 255, 255]);
        let t = square_tile(&img, &cfg());
        assert_eq!((t.width, t.height), (384, 384));
        assert_eq!(&t.data[..3], &[127, 127, 127]);
        assert_eq!(&t.data[192 * 384 * 3..][..3], &[255, 255, 255]);
    }
}
