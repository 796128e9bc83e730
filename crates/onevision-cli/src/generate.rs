//! `onevision generate`: one conversation turn from files, answer streamed or as JSON.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use onevision_engine::{GenerateOptions, ImageInput, Request, VideoInput};
use onevision_processor::{DecodeLimits, Message, Part, Role};

use crate::checkpoint::ModelArgs;

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// An image file (PNG, JPEG, WebP, GIF, BMP, TIFF). Repeat for several images in one
    /// message; each then takes the square-padded multi-image path.
    #[arg(long = "image", value_name = "PATH")]
    images: Vec<PathBuf>,
    /// A video: a container FFmpeg reads (MP4, WebM, MKV, MOV), an animated GIF, or a
    /// directory of frame images sorted by name.
    #[arg(long, value_name = "PATH")]
    video: Option<PathBuf>,
    /// Frames sampled uniformly from the video (numpy linspace over all frames, first and last
    /// included); a shorter video uses every frame once.
    #[arg(long, default_value_t = 32, requires = "video", value_name = "N")]
    frames: usize,
    /// A system message. None by default, as transformers; the original LLaVA-OneVision and
    /// lmms-eval prompts use "You are a helpful assistant."
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    /// The user's text.
    #[arg(long, value_name = "TEXT")]
    prompt: String,
    /// The most tokens to generate.
    #[arg(long, default_value_t = 256, value_name = "N")]
    max_new_tokens: usize,
    /// Do not stop at end-of-sequence tokens (for benchmarks).
    #[arg(long)]
    ignore_eos: bool,
    /// Print one JSON object (text, token_ids, prompt_tokens, image_tokens, finish_reason,
    /// timings) as the last line of stdout instead of streaming the answer.
    #[arg(long)]
    json: bool,
    /// Reject images and video frames with more pixels than this (checked before decoding).
    #[arg(long, default_value_t = DecodeLimits::DEFAULT_MAX_PIXELS, value_name = "N")]
    max_pixels: u64,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    if args.frames == 0 {
        bail!("--frames must be at least 1");
    }
    let (_, mut pipeline) = args.model.load()?;
    pipeline.limits = DecodeLimits {
        max_pixels: args.max_pixels,
    };

    let mut messages = vec![];
    if let Some(system) = &args.system {
        messages.push(Message {
            role: Role::System,
            parts: vec![Part::Text(system.clone())],
        });
    }
    let mut parts: Vec<Part> = args.images.iter().map(|_| Part::Image).collect();
    if args.video.is_some() {
        parts.push(Part::Video);
    }
    parts.push(Part::Text(args.prompt.clone()));
    messages.push(Message {
        role: Role::User,
        parts,
    });
    let request = Request {
        messages,
        images: args.images.iter().cloned().map(ImageInput::Path).collect(),
        videos: args
            .video
            .iter()
            .map(|p| VideoInput::Path {
                path: p.clone(),
                frames: args.frames,
            })
            .collect(),
    };
    let options = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        ignore_eos: args.ignore_eos,
    };

    let stdout = std::io::stdout();
    let out = if args.json {
        pipeline.generate(&request, options, |_| {})?
    } else {
        let out = pipeline.generate(&request, options, |piece| {
            let mut lock = stdout.lock();
            // A closed pipe is not worth failing generation for.
            let _ = lock.write_all(piece.as_bytes());
            let _ = lock.flush();
        })?;
        println!();
        out
    };
    if args.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        let t = &out.timings;
        eprintln!(
            "[{} prompt tokens ({} media), {} generated, {}; ttft {:.0} ms, {:.1} tok/s, total {:.0} ms]",
            out.prompt_tokens,
            out.image_tokens,
            out.token_ids.len(),
            out.finish_reason,
            t.ttft_ms,
            t.decode_tokens_per_s,
            t.total_ms
        );
    }
    Ok(())
}
