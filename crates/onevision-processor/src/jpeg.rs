//! JPEG through libjpeg-turbo (the decoder inside Pillow), so decoded bytes equal Pillow's:
//! image-rs's own decoder (zune-jpeg) rounds its IDCT and chroma upsampling differently (up to
//! 3 levels on 1-20 % of bytes on the fixture JPEGs). Default libjpeg settings, as Pillow:
//! accurate integer IDCT, fancy upsampling. CMYK files are converted the way Pillow's
//! `convert("RGB")` does, after undoing the inversion Adobe writers apply.

use std::ffi::CStr;

use turbojpeg::raw;

use crate::image::{DecodeLimits, RgbImage};
use crate::{Error, Result};

/// A TurboJPEG decompressor handle, destroyed on drop.
struct Handle(raw::tjhandle);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tjInitDecompress and is destroyed once.
        unsafe {
            raw::tjDestroy(self.0);
        }
    }
}

impl Handle {
    fn message(&self) -> String {
        // SAFETY: tjGetErrorStr2 returns a NUL-terminated string owned by the handle.
        unsafe {
            let p = raw::tjGetErrorStr2(self.0);
            if p.is_null() {
                "unknown libjpeg-turbo error".into()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        }
    }

    fn is_warning(&self) -> bool {
        // SAFETY: valid handle.
        unsafe { raw::tjGetErrorCode(self.0) == raw::TJERR_TJERR_WARNING as i32 }
    }
}

/// Whether the file carries an Adobe APP14 segment (Pillow then reads CMYK inverted).
fn has_adobe_marker(bytes: &[u8]) -> bool {
    let mut i = 2;
    while i + 4 <= bytes.len() && bytes[i] == 0xFF {
        let marker = bytes[i + 1];
        if marker == 0xDA || marker == 0xD9 {
            break;
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        if marker == 0xEE && bytes.get(i + 4..i + 9) == Some(b"Adobe") {
            return true;
        }
        i += 2 + len;
    }
    false
}

/// Pillow's `cmyk2rgb`: `nk = 255 − k; out = clamp(nk − round(c·nk / 255))`, per channel.
fn cmyk_to_rgb(c: u8, k: u8) -> u8 {
    let nk = 255 - k as u32;
    let t = c as u32 * nk + 128;
    let v = nk as i32 - (((t >> 8) + t) >> 8) as i32;
    v.clamp(0, 255) as u8
}

pub fn decode_jpeg(bytes: &[u8], what: &str, limits: &DecodeLimits) -> Result<RgbImage> {
    let err = |reason: String| Error::ImageDecode {
        what: what.to_string(),
        reason,
    };
    let len =
        std::os::raw::c_ulong::try_from(bytes.len()).map_err(|_| err("file too large".into()))?;
    // SAFETY: plain constructor; null means failure.
    let handle = Handle(unsafe { raw::tjInitDecompress() });
    if handle.0.is_null() {
        return Err(err("cannot initialize libjpeg-turbo".into()));
    }
    let (mut w, mut h, mut subsamp, mut colorspace) = (0, 0, 0, 0);
    // SAFETY: `bytes` outlives the call; the out-pointers are valid locals.
    let rc = unsafe {
        raw::tjDecompressHeader3(
            handle.0,
            bytes.as_ptr(),
            len,
            &mut w,
            &mut h,
            &mut subsamp,
            &mut colorspace,
        )
    };
    if rc != 0 {
        return Err(err(format!("bad JPEG header: {}", handle.message())));
    }
    limits.check(what, w as u64, h as u64)?;
    let (w, h) = (w as usize, h as usize);
    let cmyk = colorspace == raw::TJCS_TJCS_CMYK as i32 || colorspace == raw::TJCS_TJCS_YCCK as i32;
    let (format, channels) = if cmyk {
        (raw::TJPF_TJPF_CMYK, 4)
    } else {
        (raw::TJPF_TJPF_RGB, 3)
    };
    let mut buf = vec![0u8; w * h * channels];
    // SAFETY: `buf` holds exactly width × height × channels bytes with pitch width × channels.
    let rc = unsafe {
        raw::tjDecompress2(
            handle.0,
            bytes.as_ptr(),
            len,
            buf.as_mut_ptr(),
            w as i32,
            (w * channels) as i32,
            h as i32,
            format,
            0,
        )
    };
    if rc != 0 {
        let msg = handle.message();
        // Pillow refuses truncated files ("image file is truncated") but accepts files with
        // other libjpeg warnings (stray bytes between markers, ...), which decode fully.
        if !handle.is_warning() || msg.contains("Premature end") {
            return Err(err(format!("corrupt or truncated JPEG data: {msg}")));
        }
    }
    let data = if cmyk {
        let invert = has_adobe_marker(bytes);
        let mut rgb = Vec::with_capacity(w * h * 3);
        for p in buf.chunks_exact(4) {
            let v = |x: u8| if invert { 255 - x } else { x };
            let k = v(p[3]);
            rgb.extend_from_slice(&[
                cmyk_to_rgb(v(p[0]), k),
                cmyk_to_rgb(v(p[1]), k),
                cmyk_to_rgb(v(p[2]), k),
            ]);
        }
        rgb
    } else {
        buf
    };
    RgbImage::from_raw(w, h, data)
}
