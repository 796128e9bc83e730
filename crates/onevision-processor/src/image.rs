//! Image decoding to 8-bit RGB, as transformers 5's PIL path sees a file.
//!
//! transformers (`image_transforms.convert_to_rgb`) opens the file with Pillow and, when the image
//! has an alpha band or palette transparency, composites it onto opaque white with
//! `PIL.Image.alpha_composite`; otherwise it calls `convert("RGB")`. This module does the same:
//! grayscale is replicated to three channels, palettes are expanded, 16-bit samples keep their
//! high byte (Pillow's `RGB;16B` raw mode), and alpha is blended onto white with Pillow's
//! fixed-point formula (`libImaging/AlphaComposite.c`), so the bytes equal Pillow's.
//!
//! The EXIF orientation (JPEG, PNG, WebP, TIFF) is applied, as transformers' `load_image` does
//! with `ImageOps.exif_transpose` for files, paths and URLs, so a phone photo is upright.
//!
//! The pixel count is read from the header and checked against [`DecodeLimits`] before any
//! pixel is decoded, so a small file that claims to be 100000x100000 costs nothing.

use std::io::Cursor;
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use crate::{Error, Result};

/// An 8-bit RGB image, rows top to bottom, pixels interleaved (HWC).
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    /// `height * width * 3` bytes.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RgbImage({}x{})", self.width, self.height)
    }
}

impl RgbImage {
    /// An image filled with one color.
    pub fn filled(width: usize, height: usize, rgb: [u8; 3]) -> Self {
        let data = if rgb[0] == rgb[1] && rgb[1] == rgb[2] {
            vec![rgb[0]; width * height * 3]
        } else {
            let mut d = vec![0u8; width * height * 3];
            for px in d.chunks_exact_mut(3) {
                px.copy_from_slice(&rgb);
            }
            d
        };
        Self {
            width,
            height,
            data,
        }
    }

    /// Wraps interleaved RGB bytes; `data.len()` must be `width * height * 3`.
    pub fn from_raw(width: usize, height: usize, data: Vec<u8>) -> Result<Self> {
        if data.len() != width * height * 3 {
            return Err(Error::ImageDecode {
                what: format!("{width}x{height} RGB buffer"),
                reason: format!("expected {} bytes, got {}", width * height * 3, data.len()),
            });
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// (height, width), the order transformers reports in `image_sizes`.
    pub fn size_hw(&self) -> (usize, usize) {
        (self.height, self.width)
    }
}

/// Limits checked before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The most pixels (width × height) an image or video frame may have.
    pub max_pixels: u64,
}

impl DecodeLimits {
    /// 100 megapixels: above any camera photo, below what would exhaust memory.
    pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

    pub fn check(&self, what: &str, width: u64, height: u64) -> Result<()> {
        let pixels = width.saturating_mul(height);
        if pixels > self.max_pixels {
            return Err(Error::ImageTooLarge {
                what: what.to_string(),
                width,
                height,
                pixels,
                limit: self.max_pixels,
            });
        }
        if pixels == 0 {
            return Err(Error::ImageDecode {
                what: what.to_string(),
                reason: format!(
                    "the header says {width}x{height}; an image needs at least one pixel"
                ),
            });
        }
        Ok(())
    }
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pixels: Self::DEFAULT_MAX_PIXELS,
        }
    }
}

/// Reads and decodes an image file (PNG, JPEG, WebP, GIF's first frame, BMP, TIFF); the format
/// comes from the content, not the file name.
pub fn decode_file(path: &Path, limits: &DecodeLimits) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_bytes(&bytes, &path.display().to_string(), limits)
}

/// Decodes an image held in memory; `what` names it in errors (a path, "data URI", ...).
pub fn decode_bytes(bytes: &[u8], what: &str, limits: &DecodeLimits) -> Result<RgbImage> {
    let err = |reason: String| Error::ImageDecode {
        what: what.to_string(),
        reason,
    };
    if bytes.is_empty() {
        return Err(err("the file is empty (0 bytes)".into()));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?;
    let format = reader
        .format()
        .ok_or_else(|| err("unknown format; expected PNG, JPEG, WebP, GIF, BMP or TIFF".into()))?;
    if !matches!(
        format,
        ImageFormat::Png
            | ImageFormat::Jpeg
            | ImageFormat::WebP
            | ImageFormat::Gif
            | ImageFormat::Bmp
            | ImageFormat::Tiff
    ) {
        return Err(err(format!(
            "{format:?} is not supported; expected PNG, JPEG, WebP, GIF, BMP or TIFF"
        )));
    }
    if let Some((w, h)) = png_header_size(bytes) {
        // The PNG decoder reads up to the first data chunk before it reports the size; a file
        // that is only a header must still be refused for its size, not its truncation.
        limits.check(what, w, h)?;
    }
    if format == ImageFormat::Jpeg {
        // Pixels from libjpeg-turbo; the EXIF orientation from image-rs's header parser.
        let orientation = reader
            .into_decoder()
            .ok()
            .and_then(|mut d| d.orientation().ok())
            .unwrap_or(Orientation::NoTransforms);
        let rgb = crate::jpeg::decode_jpeg(bytes, what, limits)?;
        if orientation == Orientation::NoTransforms {
            return Ok(rgb);
        }
        let buf = image::RgbImage::from_raw(rgb.width as u32, rgb.height as u32, rgb.data)
            .ok_or_else(|| err("decoded buffer has the wrong size".into()))?;
        let mut image = DynamicImage::ImageRgb8(buf);
        image.apply_orientation(orientation);
        return Ok(to_rgb(image));
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| err(format!("bad {format:?} header: {e}")))?;
    let (w, h) = decoder.dimensions();
    limits.check(what, w as u64, h as u64)?;
    let mut lim = image::Limits::default();
    // Room for the largest sample layout (RGBA f32) of an image within the pixel limit.
    lim.max_alloc = Some(limits.max_pixels.saturating_mul(16).saturating_add(1 << 20));
    decoder.set_limits(lim).map_err(|e| err(e.to_string()))?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder)
        .map_err(|e| err(format!("corrupt or truncated {format:?} data: {e}")))?;
    image.apply_orientation(orientation);
    Ok(to_rgb(image))
}

/// Width and height from a PNG's IHDR chunk (bytes 16..24), if the data starts like a PNG.
fn png_header_size(bytes: &[u8]) -> Option<(u64, u64)> {
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64;
    Some((be(&bytes[16..20]), be(&bytes[20..24])))
}

/// Converts any decoded layout to RGB the way transformers' Pillow path does.
fn to_rgb(image: DynamicImage) -> RgbImage {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let n = width * height;
    let mut data = Vec::with_capacity(n * 3);
    match image {
        DynamicImage::ImageRgb8(b) => data = b.into_raw(),
        DynamicImage::ImageLuma8(b) => {
            for &l in b.as_raw() {
                data.extend_from_slice(&[l, l, l]);
            }
        }
        DynamicImage::ImageLumaA8(b) => {
            for p in b.as_raw().chunks_exact(2) {
                let v = composite_on_white(p[0], p[1]);
                data.extend_from_slice(&[v, v, v]);
            }
        }
        DynamicImage::ImageRgba8(b) => {
            for p in b.as_raw().chunks_exact(4) {
                for &c in &p[..3] {
                    data.push(composite_on_white(c, p[3]));
                }
            }
        }
        // Pillow reads 16-bit PNG/TIFF samples through its `;16B` raw modes: the high byte.
        DynamicImage::ImageRgb16(b) => data.extend(b.as_raw().iter().map(|&v| (v >> 8) as u8)),
        DynamicImage::ImageRgba16(b) => {
            for p in b.as_raw().chunks_exact(4) {
                let a = (p[3] >> 8) as u8;
                for &c in &p[..3] {
                    data.push(composite_on_white((c >> 8) as u8, a));
                }
            }
        }
        DynamicImage::ImageLumaA16(b) => {
            for p in b.as_raw().chunks_exact(2) {
                let v = composite_on_white((p[0] >> 8) as u8, (p[1] >> 8) as u8);
                data.extend_from_slice(&[v, v, v]);
            }
        }
        DynamicImage::ImageLuma16(b) => {
            for &l in b.as_raw() {
                let v = luma16_to_8(l);
                data.extend_from_slice(&[v, v, v]);
            }
        }
        other => {
            // Float layouts (TIFF): scale to 8 bits, then treat like the 8-bit cases.
            let has_alpha = other.color().has_alpha();
            if has_alpha {
                for p in other.to_rgba8().into_raw().chunks_exact(4) {
                    for &c in &p[..3] {
                        data.push(composite_on_white(c, p[3]));
                    }
                }
            } else {
                data = other.to_rgb8().into_raw();
            }
        }
    }
    RgbImage {
        width,
        height,
        data,
    }
}

/// Pillow opens 16-bit grayscale as mode `I;16` and its conversion to RGB clips the value
/// to 0..=255 (it does not scale), so anything above 255 becomes white.
fn luma16_to_8(v: u16) -> u8 {
    v.min(255) as u8
}

/// One channel of `PIL.Image.alpha_composite(white, rgba)` (libImaging/AlphaComposite.c with
/// an opaque white destination): 7 extra bits of precision and rounded divisions by 255.
pub fn composite_on_white(c: u8, a: u8) -> u8 {
    const PRECISION_BITS: u32 = 7;
    let shift_div255 = |x: u32| ((x >> 8) + x) >> 8;
    let (c, a) = (c as u32, a as u32);
    let blend = 255 * (255 - a);
    let outa255 = a * 255 + blend;
    let coef1 = a * 255 * 255 * (1 << PRECISION_BITS) / outa255;
    let coef2 = 255 * (1 << PRECISION_BITS) - coef1;
    let tmp = c * coef1 + 255 * coef2;
    (shift_div255(tmp + (0x80 << PRECISION_BITS)) >> PRECISION_BITS) as u8
}
