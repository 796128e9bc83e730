//! `onevision world`: writes one split of the procedural shape world (onevision-world) as LLaVA
//! JSON samples and PNGs, ready for `onevision train` and `onevision eval`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use onevision_world::{generate_with, Options, Split, DEFAULT_IMAGE_SIZE};

#[derive(Args)]
pub struct WorldArgs {
    /// Output directory: DIR/<split>.json, DIR/images/<split>/<id>.png, multi-image sets as
    /// <id>-1.png, <id>-2.png, ... and videos both as frame folders <id>/0000.png, ... and as
    /// <id>.mp4 at 1 fps, samples naming the two in turn (train them with --image-folder DIR
    /// --video-folder DIR).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Which split; train and test never share a scene, whatever their seeds.
    #[arg(long, value_name = "train|test")]
    split: Split,
    /// The same seed writes byte-identical files on every machine (the MP4s: with the same
    /// FFmpeg and x264 builds).
    #[arg(long, value_name = "S")]
    seed: u64,
    /// Samples to write; the task families take turns (caption, detail, color, shape, count,
    /// position, choice, then multi_differs, multi_count, multi_changed, video_direction,
    /// video_color, video_appear, video_order), and after every 14 of those ocr_word,
    /// ocr_number, chart_value and chart_max.
    #[arg(long, value_name = "N", default_value_t = 700)]
    count: usize,
    /// Side of the square images, in pixels (even, for the MP4s' YUV 4:2:0).
    #[arg(long, value_name = "PX", default_value_t = DEFAULT_IMAGE_SIZE)]
    image_size: u32,
    /// At most this many objects in each single-image scene (1 to 6): an easier world, for
    /// probes and curricula (docs/NANO.md). Multi-image sets, videos, text cards and charts are
    /// unchanged.
    #[arg(long, value_name = "N", default_value_t = onevision_world::scene::MAX_OBJECTS)]
    max_objects: usize,
}

pub fn run(args: WorldArgs) -> Result<()> {
    let opts = Options {
        image_size: args.image_size,
        max_objects: args.max_objects,
    };
    let summary = generate_with(&args.out, args.split, args.seed, args.count, &opts)
        .with_context(|| format!("writing the {} split to {}", args.split, args.out.display()))?;
    println!("{summary}");
    Ok(())
}
