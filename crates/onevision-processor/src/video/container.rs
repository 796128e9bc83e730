//! Video containers through FFmpeg (libavformat, libavcodec, libswscale).
//!
//! Frames come out equal, byte for byte, to `ffmpeg -i X -f rawvideo -pix_fmt rgb24 -` with the
//! same libraries (FFmpeg 5.1 here), and to PyAV's `to_ndarray(format="rgb24")` on the fixtures.
//! That CLI converts through an auto-inserted `scale` filter; FFmpeg 5.1's
//! `libavfilter/vf_scale.c` sets up libswscale like this, and [`RgbConverter`] does the same:
//! - `sws_flags` 0, which `sws_init_context` turns into `SWS_BICUBIC` (no `SWS_ACCURATE_RND`, no
//!   `SWS_FULL_CHR_H_INT`), default `param0`/`param1`;
//! - `src_range` from the frame's colour range when it has one;
//! - for yuv420p input, MPEG-2 chroma siting: `src_v_chr_pos` 128 (`src_h_chr_pos` default);
//! - before each frame, `sws_setColorspaceDetails` with the matrix of the frame's colour space
//!   (`in_color_matrix=auto`: BT.601 when unspecified or unknown, BT.709 for BT.709 video, ...)
//!   and its range (full for `pc`/`jpeg`).
//!
//! Frame count: a demux-only pass counts the video packets (not those the demuxer marks for
//! discarding, e.g. before an MP4 edit list's start), then a decoding pass converts only the
//! sampled frames and counts what the decoder really gave; if that differs (packed B-frames,
//! packets holding no picture), the indices are recomputed from the real count and the video is
//! decoded once more. So `total_frames` is always the number of frames the decoder outputs, as
//! PyAV and decord count them.
//!
//! Safety net: a demuxer that opens other resources (HLS or DASH playlists, concat scripts,
//! image sequences by pattern) could make FFmpeg read local files or URLs named in an upload;
//! the input is read through our own AVIO context with a protocol whitelist naming none, so only the
//! given bytes are ever read.

use std::ffi::CString;
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Once};

use ff::ffi;
use ff::format::context::{Input, StreamIo};
use ffmpeg_next as ff;

use super::{check_same_size, video_error, FrameRate, FrameSelection, Video, EXPECTED};
use crate::image::{DecodeLimits, RgbImage};
use crate::Result;

/// The bytes to demux.
pub(super) enum Media<'a> {
    File(&'a Path),
    /// Shared so that each pass reads the same allocation.
    Bytes(Arc<[u8]>),
}

static INIT: Once = Once::new();

/// Registers FFmpeg's error strings once and silences its log: failures reach the caller as
/// errors, FFmpeg's own stderr chatter would only clutter a CLI or server log.
fn init_ffmpeg() {
    INIT.call_once(|| {
        // `init` only registers error strings with these features; it cannot fail.
        let _ = ff::init();
        ff::util::log::set_level(ff::util::log::Level::Quiet);
    });
}

pub(super) fn load(
    media: Media,
    hint: Option<&str>,
    what: &str,
    sel: &FrameSelection,
    limits: &DecodeLimits,
) -> Result<Video> {
    init_ffmpeg();
    let mut input = open(&media, hint, what)?;
    let stream = video_stream(&input, what)?;
    let rate = avg_frame_rate(&input, stream);
    let counted = count_packets(&mut input, stream, what)?;
    drop(input);
    if counted == 0 {
        return Err(video_error(
            what,
            "its video stream has no frames; expected a video with at least one frame",
        ));
    }
    let mut total = counted;
    // At most two decoding passes: the second one, when needed, knows the exact count.
    for _ in 0..2 {
        let indices = sel.pick(total, rate);
        let (frames, decoded) = decode(&media, hint, what, stream, &indices, limits)?;
        if decoded == total {
            return Ok(Video {
                frames,
                total_frames: total,
                indices,
                avg_frame_rate: rate,
            });
        }
        if decoded == 0 {
            return Err(video_error(
                what,
                format!(
                    "the decoder gave no frame from {counted} video packets; the stream is corrupt"
                ),
            ));
        }
        total = decoded;
    }
    Err(video_error(
        what,
        "the decoder gave a different number of frames on each pass; the stream is corrupt",
    ))
}

/// Opens the container through our AVIO context (see the module docs for why).
fn open(media: &Media, hint: Option<&str>, what: &str) -> Result<Input> {
    let io = match media {
        Media::File(path) => {
            let file = std::fs::File::open(path).map_err(|source| crate::Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
            StreamIo::from_read_seek(file)
        }
        Media::Bytes(bytes) => StreamIo::from_read_seek(Cursor::new(Arc::clone(bytes))),
    }
    .map_err(|e| video_error(what, format!("FFmpeg could not set up reading: {e}")))?;
    // The name only helps probing by extension; one FFmpeg cannot take is left out.
    let hint = hint.filter(|h| !h.contains('\0'));
    let mut options = ff::Dictionary::new();
    options.set("protocol_whitelist", "none");
    ff::format::input_from_stream(io, hint, Some(options)).map_err(|e| {
        video_error(
            what,
            format!("FFmpeg cannot read it as a video: truncated, corrupt or not a video ({e}); {EXPECTED}"),
        )
    })
}

/// The video stream FFmpeg would pick, never a cover picture.
fn video_stream(input: &Input, what: &str) -> Result<usize> {
    let is_picture = |s: &ff::format::stream::Stream| {
        s.disposition()
            .contains(ff::format::stream::Disposition::ATTACHED_PIC)
    };
    let is_video =
        |s: &ff::format::stream::Stream| s.parameters().medium() == ff::media::Type::Video;
    if let Some(best) = input.streams().best(ff::media::Type::Video) {
        if !is_picture(&best) {
            return Ok(best.index());
        }
    }
    if let Some(s) = input.streams().find(|s| is_video(s) && !is_picture(s)) {
        return Ok(s.index());
    }
    let kinds: Vec<String> = input
        .streams()
        .map(|s| format!("{:?}", s.parameters().medium()).to_lowercase())
        .collect();
    let found = if kinds.is_empty() {
        "no streams".to_string()
    } else {
        format!("only {}", kinds.join(", "))
    };
    Err(video_error(
        what,
        format!("it contains no video stream ({found}); {EXPECTED}"),
    ))
}

/// The stream's `avg_frame_rate` as `avformat_find_stream_info` left it (what decord's
/// `get_avg_fps` divides out); `None` when FFmpeg could not tell (0/0) or it is negative.
fn avg_frame_rate(input: &Input, stream: usize) -> Option<FrameRate> {
    let rate = input.stream(stream)?.avg_frame_rate();
    let (num, den) = (rate.numerator(), rate.denominator());
    FrameRate::new(u64::try_from(num).ok()?, u64::try_from(den).ok()?)
}

/// Counts the packets of `stream`, reading no pixel data.
fn count_packets(input: &mut Input, stream: usize, what: &str) -> Result<usize> {
    let mut count = 0;
    let mut packet = ff::Packet::empty();
    loop {
        match packet.read(input) {
            Ok(()) => {
                // SAFETY: `packet` holds a valid AVPacket just filled by av_read_frame.
                let flags = unsafe { (*ff::packet::Ref::as_ptr(&packet)).flags };
                if packet.stream() == stream && flags & ffi::AV_PKT_FLAG_DISCARD == 0 {
                    count += 1;
                }
            }
            Err(ff::Error::Eof) => return Ok(count),
            Err(e) => {
                return Err(video_error(
                    what,
                    format!(
                        "corrupt or truncated: reading failed after {count} video packets ({e})"
                    ),
                ))
            }
        }
    }
}

/// Decodes every frame of `stream`, converting to RGB the ones at `indices` (ascending);
/// returns them and the number of frames decoded.
fn decode(
    media: &Media,
    hint: Option<&str>,
    what: &str,
    stream: usize,
    indices: &[usize],
    limits: &DecodeLimits,
) -> Result<(Vec<RgbImage>, usize)> {
    let mut input = open(media, hint, what)?;
    let params = input
        .stream(stream)
        .ok_or_else(|| video_error(what, "the video stream vanished on reopening"))?
        .parameters();
    // SAFETY: reading two ints of the stream's codec parameters, which `params` keeps alive.
    let (w, h) = unsafe { ((*params.as_ptr()).width, (*params.as_ptr()).height) };
    // The container's size, checked before decoding; each frame is checked again below.
    if w > 0 && h > 0 {
        limits.check(what, w as u64, h as u64)?;
    }
    let ctx = ff::codec::Context::from_parameters(params)
        .map_err(|e| video_error(what, format!("bad codec parameters: {e}")))?;
    let codec = ff::codec::decoder::find(ctx.id()).ok_or_else(|| {
        video_error(
            what,
            format!(
                "this FFmpeg has no decoder for its video codec ({:?})",
                ctx.id()
            ),
        )
    })?;
    let mut options = ff::Dictionary::new();
    options.set("threads", "auto");
    // libavcodec refuses to allocate larger frames.
    options.set(
        "max_pixels",
        &limits.max_pixels.min(i64::MAX as u64).to_string(),
    );
    let mut decoder = ctx
        .decoder()
        .open_as_with(codec, options)
        .and_then(|d| d.video())
        .map_err(|e| {
            video_error(
                what,
                format!("cannot open the {:?} decoder: {e}", codec.id()),
            )
        })?;

    let mut state = Sampler {
        what,
        indices,
        limits,
        decoded: 0,
        frames: Vec::with_capacity(indices.len()),
        converter: None,
        frame: ff::frame::Video::empty(),
    };
    let mut packet = ff::Packet::empty();
    loop {
        match packet.read(&mut input) {
            Ok(()) if packet.stream() == stream => {
                loop {
                    match decoder.send_packet(&packet) {
                        Ok(()) => break,
                        Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => {
                            state.drain(&mut decoder)?
                        }
                        Err(e) => return Err(state.corrupt(e)),
                    }
                }
                state.drain(&mut decoder)?;
            }
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(e) => return Err(state.corrupt(e)),
        }
    }
    decoder.send_eof().map_err(|e| state.corrupt(e))?;
    state.drain(&mut decoder)?;
    Ok((state.frames, state.decoded))
}

/// Walks the decoded frames, keeping the sampled ones as RGB.
struct Sampler<'a> {
    what: &'a str,
    indices: &'a [usize],
    limits: &'a DecodeLimits,
    decoded: usize,
    frames: Vec<RgbImage>,
    converter: Option<RgbConverter>,
    frame: ff::frame::Video,
}

impl Sampler<'_> {
    fn drain(&mut self, decoder: &mut ff::decoder::Video) -> Result<()> {
        loop {
            match decoder.receive_frame(&mut self.frame) {
                Ok(()) => {
                    let index = self.decoded;
                    self.decoded += 1;
                    if self.indices.get(self.frames.len()) == Some(&index) {
                        let rgb = self.convert(index)?;
                        self.frames.push(rgb);
                    }
                }
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => {
                    return Ok(())
                }
                Err(ff::Error::Eof) => return Ok(()),
                Err(e) => return Err(self.corrupt(e)),
            }
        }
    }

    fn convert(&mut self, index: usize) -> Result<RgbImage> {
        let (w, h) = (self.frame.width(), self.frame.height());
        let format = self.frame.format();
        self.limits.check(self.what, w as u64, h as u64)?;
        let converter = match &mut self.converter {
            Some(c) => {
                check_same_size(self.what, index, c.size(), (w as usize, h as usize))?;
                if c.format != format {
                    *c = RgbConverter::new(&self.frame, self.what)?;
                }
                c
            }
            None => self
                .converter
                .insert(RgbConverter::new(&self.frame, self.what)?),
        };
        converter.convert(&self.frame, self.what)
    }

    fn corrupt(&self, e: ff::Error) -> crate::Error {
        video_error(
            self.what,
            format!(
                "corrupt or truncated: decoding failed after {} frames ({e})",
                self.decoded
            ),
        )
    }
}

/// A libswscale context set up as the ffmpeg CLI sets up its auto-inserted scale filter.
struct RgbConverter {
    sws: *mut ffi::SwsContext,
    format: ff::format::Pixel,
    width: u32,
    height: u32,
}

impl RgbConverter {
    fn new(frame: &ff::frame::Video, what: &str) -> Result<Self> {
        let (format, width, height) = (frame.format(), frame.width(), frame.height());
        if format == ff::format::Pixel::None {
            return Err(video_error(
                what,
                "the decoder gave a frame without pixel format",
            ));
        }
        let fail = |step: &str| {
            video_error(
                what,
                format!("libswscale cannot convert {format:?} {width}x{height} to RGB ({step})"),
            )
        };
        // SAFETY: plain libswscale calls on a context we own; it is freed in Drop, or here on
        // failure. The option names are those of libswscale/options.c.
        unsafe {
            let sws = ffi::sws_alloc_context();
            if sws.is_null() {
                return Err(fail("out of memory"));
            }
            let conv = RgbConverter {
                sws,
                format,
                width,
                height,
            };
            let src_format: ffi::AVPixelFormat = format.into();
            let mut opts: Vec<(&str, i64)> = vec![
                ("srcw", width as i64),
                ("srch", height as i64),
                ("src_format", src_format as i64),
                ("dstw", width as i64),
                ("dsth", height as i64),
                ("dst_format", ffi::AVPixelFormat::AV_PIX_FMT_RGB24 as i64),
                // vf_scale's default: no flags; sws_init_context picks SWS_BICUBIC.
                ("sws_flags", 0),
            ];
            match frame.color_range() {
                ff::util::color::Range::JPEG => opts.push(("src_range", 1)),
                ff::util::color::Range::MPEG => opts.push(("src_range", 0)),
                _ => {}
            }
            if format == ff::format::Pixel::YUV420P {
                opts.push(("src_v_chr_pos", 128));
            }
            for (name, value) in opts {
                let name = CString::new(name).map_err(|_| fail("option name"))?;
                if ffi::av_opt_set_int(sws.cast(), name.as_ptr(), value, 0) < 0 {
                    return Err(fail("setting options"));
                }
            }
            if ffi::sws_init_context(sws, std::ptr::null_mut(), std::ptr::null_mut()) < 0 {
                return Err(fail("unsupported pixel format"));
            }
            Ok(conv)
        }
    }

    fn size(&self) -> (usize, usize) {
        (self.width as usize, self.height as usize)
    }

    fn convert(&mut self, frame: &ff::frame::Video, what: &str) -> Result<RgbImage> {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut out = ff::frame::Video::new(ff::format::Pixel::RGB24, self.width, self.height);
        // SAFETY: `frame` is a decoded frame of the size and format the context was made for
        // (checked by the caller), `out` a freshly allocated RGB24 frame of the same size.
        unsafe {
            let src = frame.as_ptr();
            self.set_colorspace((*src).colorspace, (*src).color_range);
            if ffi::sws_scale_frame(self.sws, out.as_mut_ptr(), src) < 0 {
                return Err(video_error(
                    what,
                    "libswscale failed to convert a frame to RGB",
                ));
            }
        }
        let stride = out.stride(0);
        let plane = out.data(0);
        let mut data = Vec::with_capacity(w * h * 3);
        for row in 0..h {
            data.extend_from_slice(&plane[row * stride..row * stride + w * 3]);
        }
        RgbImage::from_raw(w, h, data)
    }

    /// What vf_scale does before each frame with `in_color_matrix=auto` (FFmpeg 5.1
    /// `scale_frame` and `parse_yuv_type`): the frame's matrix, BT.601 (`BT470BG`) when it is
    /// unspecified, reserved or out of the table; its range when it has one.
    unsafe fn set_colorspace(&mut self, space: ffi::AVColorSpace, range: ffi::AVColorRange) {
        let mut space = space as i32;
        if !(1..=10).contains(&space) || space == 8 {
            space = ffi::AVColorSpace::AVCOL_SPC_BT470BG as i32;
        }
        let (mut inv_table, mut table) = (std::ptr::null_mut(), std::ptr::null_mut());
        let (mut src_range, mut dst_range, mut brightness, mut contrast, mut saturation) =
            (0, 0, 0, 0, 0);
        unsafe {
            ffi::sws_getColorspaceDetails(
                self.sws,
                &mut inv_table,
                &mut src_range,
                &mut table,
                &mut dst_range,
                &mut brightness,
                &mut contrast,
                &mut saturation,
            );
            let coefficients = ffi::sws_getCoefficients(space);
            match range {
                ffi::AVColorRange::AVCOL_RANGE_JPEG => src_range = 1,
                ffi::AVColorRange::AVCOL_RANGE_MPEG => src_range = 0,
                _ => {}
            }
            ffi::sws_setColorspaceDetails(
                self.sws,
                coefficients,
                src_range,
                coefficients,
                dst_range,
                brightness,
                contrast,
                saturation,
            );
        }
    }
}

impl Drop for RgbConverter {
    fn drop(&mut self) {
        // SAFETY: the context was allocated by sws_alloc_context and is freed once.
        unsafe { ffi::sws_freeContext(self.sws) }
    }
}
