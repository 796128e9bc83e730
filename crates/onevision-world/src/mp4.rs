//! Videos as MP4 files: H.264 (libx264) in YUV 4:2:0, one frame a second, so a trainer that
//! samples at 1 fps (LLaVA-NeXT's `--video_fps 1`, `onevision train`'s default) takes every
//! frame, as it does from the frame folder beside the file.
//!
//! The encoding is near-lossless (CRF [`CRF`]) but not exact: the colors go through BT.601
//! limited-range YUV with the chroma at half resolution, so edges blur by a pixel in color and
//! the tests compare decoded frames to the PNGs by mean absolute difference. Frame sides must
//! be even (4:2:0 stores one chroma sample per 2x2 pixels), which [`crate::generate_with`]
//! requires of the image size.
//!
//! The bytes are a function of the frames and of the FFmpeg and x264 builds: x264 runs on one
//! thread, because its output depends on the thread count (and so, by default, on the
//! machine's cores).

use std::path::Path;
use std::sync::Once;

use ff::codec;
use ff::format::Pixel;
use ff::software::scaling;
use ff::{Dictionary, Packet, Rational};
use ffmpeg_next as ff;

use crate::raster::Raster;
use crate::{Error, Result};

/// Frames per second of a written MP4.
pub const FPS: i32 = 1;

/// x264's constant rate factor: 0 is lossless, 23 its default; at 12 the world's flat colors
/// come back within a few levels.
pub const CRF: &str = "12";

/// The encoder, by FFmpeg's name for it.
const ENCODER: &str = "libx264";

static INIT: Once = Once::new();

/// Registers FFmpeg once and silences its log (x264 prints its statistics at every close):
/// failures reach the caller as errors.
fn init_ffmpeg() {
    INIT.call_once(|| {
        // `init` only registers error strings with these features; it cannot fail.
        let _ = ff::init();
        ff::util::log::set_level(ff::util::log::Level::Quiet);
    });
}

/// Writes `frames` (all of one even size) to `path` as an MP4 at [`FPS`].
pub fn write(path: &Path, frames: &[Raster]) -> Result<()> {
    let fail = |what: &str, source: ff::Error| Error::Mp4 {
        path: path.to_path_buf(),
        what: what.to_owned(),
        source,
    };
    let Some(first) = frames.first() else {
        return Err(Error::Mp4Frames {
            path: path.to_path_buf(),
            why: "no frames; expected at least one".to_owned(),
        });
    };
    let (w, h) = (first.width, first.height);
    if w % 2 == 1 || h % 2 == 1 || frames.iter().any(|f| (f.width, f.height) != (w, h)) {
        return Err(Error::Mp4Frames {
            path: path.to_path_buf(),
            why: format!("frames of {w}x{h} px or of several sizes; expected one even size"),
        });
    }
    init_ffmpeg();
    let codec = ff::encoder::find_by_name(ENCODER).ok_or_else(|| Error::Mp4Frames {
        path: path.to_path_buf(),
        why: format!(
            "this FFmpeg has no {ENCODER} encoder; expected a libavcodec built with libx264 \
             (Debian's and Ubuntu's are)"
        ),
    })?;
    let mut octx = ff::format::output(path).map_err(|e| fail("cannot create the file", e))?;
    let global_header = octx
        .format()
        .flags()
        .contains(ff::format::Flags::GLOBAL_HEADER);
    let mut enc = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| fail("cannot set up the encoder", e))?;
    let time_base = Rational(1, FPS);
    enc.set_width(w);
    enc.set_height(h);
    enc.set_format(Pixel::YUV420P);
    enc.set_time_base(time_base);
    enc.set_frame_rate(Some(Rational(FPS, 1)));
    // What swscale's RGB -> YUV below computes, so a decoder converts back with the same matrix.
    enc.set_colorspace(ff::color::Space::SMPTE170M);
    enc.set_color_range(ff::color::Range::MPEG);
    if global_header {
        enc.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let mut opts = Dictionary::new();
    opts.set("crf", CRF);
    opts.set("preset", "medium");
    opts.set("threads", "1");
    let mut enc = enc
        .open_with(opts)
        .map_err(|e| fail("cannot open the encoder", e))?;
    {
        let mut ost = octx
            .add_stream(codec)
            .map_err(|e| fail("cannot add the video stream", e))?;
        ost.set_parameters(&enc);
        ost.set_time_base(time_base);
    }
    octx.write_header()
        .map_err(|e| fail("cannot write the header", e))?;
    // The muxer may pick its own time base (MP4 keeps a finer one).
    let stream_tb = octx.stream(0).map_or(time_base, |s| s.time_base());
    let mut scaler = scaling::Context::get(
        Pixel::RGB24,
        w,
        h,
        Pixel::YUV420P,
        w,
        h,
        scaling::Flags::BICUBIC,
    )
    .map_err(|e| fail("cannot set up the RGB to YUV conversion", e))?;
    let mut rgb = ff::frame::Video::new(Pixel::RGB24, w, h);
    for (t, f) in frames.iter().enumerate() {
        let stride = rgb.stride(0);
        let row = 3 * w as usize;
        let data = rgb.data_mut(0);
        for (y, src) in f.pixels.chunks_exact(row).enumerate() {
            data[y * stride..y * stride + row].copy_from_slice(src);
        }
        let mut yuv = ff::frame::Video::empty();
        scaler
            .run(&rgb, &mut yuv)
            .map_err(|e| fail("cannot convert a frame to YUV", e))?;
        yuv.set_color_space(ff::color::Space::SMPTE170M);
        yuv.set_color_range(ff::color::Range::MPEG);
        yuv.set_pts(Some(t as i64));
        enc.send_frame(&yuv)
            .map_err(|e| fail("cannot encode a frame", e))?;
        drain(&mut enc, &mut octx, time_base, stream_tb).map_err(|e| fail("cannot write", e))?;
    }
    enc.send_eof()
        .map_err(|e| fail("cannot finish encoding", e))?;
    drain(&mut enc, &mut octx, time_base, stream_tb).map_err(|e| fail("cannot write", e))?;
    octx.write_trailer()
        .map_err(|e| fail("cannot write the trailer", e))
}

/// Writes every packet the encoder has ready, each lasting one frame.
fn drain(
    enc: &mut ff::encoder::video::Encoder,
    octx: &mut ff::format::context::Output,
    from: Rational,
    to: Rational,
) -> std::result::Result<(), ff::Error> {
    let mut packet = Packet::empty();
    loop {
        match enc.receive_packet(&mut packet) {
            Ok(()) => {}
            Err(ff::Error::Eof) => return Ok(()),
            Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => return Ok(()),
            Err(e) => return Err(e),
        }
        packet.set_stream(0);
        if packet.duration() == 0 {
            packet.set_duration(1);
        }
        packet.rescale_ts(from, to);
        packet.write_interleaved(octx)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raster::render;
    use crate::scene::Scene;

    #[test]
    fn odd_uneven_or_no_frames_are_refused_before_a_file_exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.mp4");
        let blank = |side| render(&Scene { objects: vec![] }, side);
        for frames in [vec![], vec![blank(33)], vec![blank(32), blank(34)]] {
            let err = write(&path, &frames).unwrap_err();
            assert!(matches!(err, Error::Mp4Frames { .. }), "{err}");
            assert!(!path.exists());
        }
        write(&path, &[blank(32), blank(32)]).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 0);
    }
}
