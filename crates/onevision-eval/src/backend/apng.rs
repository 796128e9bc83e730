//! Frames -> one animated PNG (APNG), losslessly: how [`super::openai::OpenAiBackend`] sends a
//! frame-folder video ([`crate::doc::Visual::Frames`]) as one `video_url` data URI.
//!
//! The frames are already decoded and subsampled (`super::frames`), so the server must only
//! get them back bit for bit: PNG is lossless, 8-bit RGB (colour type 2) is what FFmpeg's
//! `apng` decoder outputs as `rgb24` (no conversion), and every frame covers the whole canvas
//! with `APNG_DISPOSE_OP_NONE` / `APNG_BLEND_OP_SOURCE`, so no compositing changes a pixel.
//! A GIF would have been simpler for clients, but its 256-colour palette changes photos.
//!
//! The image data is stored, not compressed (zlib "stored" blocks): no deflate encoder in the
//! dependency tree this crate may use, and the size (3 bytes a pixel) is what base64 then
//! grows by a third. Specs: PNG (ISO/IEC 15948, W3C PNG 3rd ed.) and APNG (the `acTL`,
//! `fcTL`, `fdAT` chunks); RFC 1950 (zlib), RFC 1951 §3.2.4 (stored blocks).

use onevision_processor::RgbImage;

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// The largest stored deflate block.
const STORED_MAX: usize = 65_535;

/// One frame's display time in `fcTL`: 1/25 s, FFmpeg's default frame rate for image
/// sequences. Nothing reads it for uniform sampling; it only has to be valid.
const DELAY: (u16, u16) = (1, 25);

/// The APNG of `frames` (at least one, all of one size), frame after frame.
/// Fails when there are no frames, the sizes differ, or a frame is too large for a PNG chunk.
pub fn encode(frames: &[RgbImage]) -> Result<Vec<u8>, String> {
    let first = frames.first().ok_or("no frames to encode")?;
    let (w, h) = (first.width, first.height);
    if let Some((i, f)) = frames
        .iter()
        .enumerate()
        .find(|(_, f)| (f.width, f.height) != (w, h))
    {
        return Err(format!(
            "frame {i} is {}x{} but frame 0 is {w}x{h}; all frames must have one size",
            f.width, f.height
        ));
    }
    let (w32, h32) = match (u32::try_from(w), u32::try_from(h)) {
        (Ok(a), Ok(b)) if a > 0 && b > 0 && a < 1 << 31 && b < 1 << 31 => (a, b),
        _ => return Err(format!("a {w}x{h} frame cannot be a PNG")),
    };
    let n = u32::try_from(frames.len()).map_err(|_| "too many frames for one APNG")?;

    let mut out = Vec::with_capacity(64 + frames.len() * (w * h * 3 + h + 64));
    out.extend_from_slice(&SIGNATURE);
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w32.to_be_bytes());
    ihdr.extend_from_slice(&h32.to_be_bytes());
    // Bit depth 8, colour type 2 (RGB), deflate, filter method 0, no interlace.
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr)?;
    let mut actl = Vec::with_capacity(8);
    actl.extend_from_slice(&n.to_be_bytes());
    // num_plays 0: loop forever (a decoder counting frames reads each once).
    actl.extend_from_slice(&0u32.to_be_bytes());
    chunk(&mut out, b"acTL", &actl)?;

    // fcTL and fdAT share one sequence, starting at 0.
    let mut seq: u32 = 0;
    for (i, frame) in frames.iter().enumerate() {
        let mut fctl = Vec::with_capacity(26);
        fctl.extend_from_slice(&seq.to_be_bytes());
        fctl.extend_from_slice(&w32.to_be_bytes());
        fctl.extend_from_slice(&h32.to_be_bytes());
        fctl.extend_from_slice(&0u32.to_be_bytes()); // x_offset
        fctl.extend_from_slice(&0u32.to_be_bytes()); // y_offset
        fctl.extend_from_slice(&DELAY.0.to_be_bytes());
        fctl.extend_from_slice(&DELAY.1.to_be_bytes());
        fctl.extend_from_slice(&[0, 0]); // dispose_op NONE, blend_op SOURCE
        chunk(&mut out, b"fcTL", &fctl)?;
        seq += 1;
        let data = zlib_stored(&scanlines(frame));
        if i == 0 {
            // The first frame is the default image too (fcTL before IDAT).
            chunk(&mut out, b"IDAT", &data)?;
        } else {
            let mut fdat = Vec::with_capacity(4 + data.len());
            fdat.extend_from_slice(&seq.to_be_bytes());
            fdat.extend_from_slice(&data);
            chunk(&mut out, b"fdAT", &fdat)?;
            seq += 1;
        }
    }
    chunk(&mut out, b"IEND", &[])?;
    Ok(out)
}

/// Rows with filter type 0 (None) before each.
fn scanlines(frame: &RgbImage) -> Vec<u8> {
    let row = frame.width * 3;
    let mut raw = Vec::with_capacity(frame.height * (row + 1));
    for r in frame.data.chunks_exact(row) {
        raw.push(0);
        raw.extend_from_slice(r);
    }
    raw
}

/// A zlib stream (RFC 1950) of stored deflate blocks (RFC 1951 §3.2.4).
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let blocks = data.len().div_ceil(STORED_MAX).max(1);
    let mut out = Vec::with_capacity(2 + data.len() + blocks * 5 + 4);
    // CMF: deflate, 32 KiB window; FLG: no dictionary, check bits so that CMF*256+FLG % 31 == 0.
    out.extend_from_slice(&[0x78, 0x01]);
    let mut pieces = data.chunks(STORED_MAX).peekable();
    if pieces.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    while let Some(piece) = pieces.next() {
        let last = pieces.peek().is_none();
        out.push(u8::from(last)); // BFINAL, BTYPE 00
        let len = piece.len() as u16; // <= STORED_MAX
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(piece);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) -> Result<(), String> {
    let len = u32::try_from(data.len())
        .ok()
        .filter(|&l| l < 1 << 31)
        .ok_or_else(|| {
            format!(
                "a {} chunk of {} bytes is over PNG's limit",
                show(kind),
                data.len()
            )
        })?;
    out.extend_from_slice(&len.to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
    Ok(())
}

fn show(kind: &[u8; 4]) -> String {
    String::from_utf8_lossy(kind).into_owned()
}

/// CRC-32 (ISO 3309, PNG's chunk CRC), table-driven.
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut n = 0;
        while n < 256 {
            let mut c = n as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[n] = c;
            n += 1;
        }
        table
    };
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c = TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

/// Adler-32 (RFC 1950 §8.2), in runs short enough that the sums cannot overflow before the
/// modulo (5552, zlib's NMAX).
fn adler32(bytes: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    for run in bytes.chunks(5552) {
        for &x in run {
            a += x as u32;
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;
    use onevision_processor::video::{load_video, VideoSource};
    use onevision_processor::{decode_bytes, DecodeLimits};

    fn frame(w: usize, h: usize, seed: u32) -> RgbImage {
        // A pattern with every byte value, different per frame.
        let data = (0..w * h * 3)
            .map(|i| {
                ((i as u32)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(seed * 97)
                    >> 13) as u8
            })
            .collect();
        RgbImage {
            width: w,
            height: h,
            data,
        }
    }

    #[test]
    fn checksums_known_answers() {
        // zlib.crc32(b"IEND") and zlib.adler32(b"Wikipedia")
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(&[]), 1);
        // Long inputs: the modulo runs (zlib.adler32(bytes(range(256)) * 100)).
        let long: Vec<u8> = (0..25_600).map(|i| (i % 256) as u8).collect();
        assert_eq!(adler32(&long), 0x747F_D0E0);
    }

    #[test]
    fn first_frame_is_the_png_default_image() {
        let frames = [frame(7, 5, 1), frame(7, 5, 2)];
        let bytes = encode(&frames).expect("encodes");
        let decoded = decode_bytes(&bytes, "apng", &DecodeLimits::default()).expect("a PNG");
        assert_eq!(decoded, frames[0]);
    }

    #[test]
    fn ffmpeg_reads_the_frames_back_bit_for_bit() {
        // Rows longer than one stored block, an odd size, repeated frames (as linspace makes).
        let frames = vec![
            frame(161, 140, 1),
            frame(161, 140, 1),
            frame(161, 140, 2),
            frame(161, 140, 3),
        ];
        let bytes = encode(&frames).expect("encodes");
        let video = load_video(
            VideoSource::Bytes {
                bytes: &bytes,
                what: "video_url",
            },
            frames.len(),
            &DecodeLimits::default(),
        )
        .expect("FFmpeg decodes the APNG");
        assert_eq!(video.total_frames, frames.len());
        assert_eq!(video.frames, frames);
    }

    #[test]
    fn sizes_must_agree() {
        assert!(encode(&[]).is_err());
        let err = encode(&[frame(4, 4, 0), frame(4, 5, 0)]).expect_err("sizes differ");
        assert!(err.contains("4x5"), "{err}");
    }
}
