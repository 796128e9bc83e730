//! `onevision bench-preprocess`: time the image preprocessing (decode the file, AnyRes tiles,
//! normalized pixels) per image, median of N runs after a warm-up. tools/bench/preprocess.py
//! runs it next to transformers' PIL and torchvision processors and prints the ratios.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use onevision_processor::config::ProcessorConfig;
use onevision_processor::image::{decode_file, DecodeLimits};
use onevision_processor::pixels::{anyres_tiles, normalize};

#[derive(Args)]
pub struct BenchPreprocessArgs {
    /// Image files to time, each on its own.
    #[arg(long = "image", value_name = "PATH", required = true)]
    images: Vec<PathBuf>,
    /// Timed runs per image (after one warm-up run).
    #[arg(long, default_value_t = 10)]
    iters: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(args: BenchPreprocessArgs) -> Result<()> {
    // The llava-hf processor settings (mean/std 0.5, 384 px, the 36 pinpoints).
    let cfg = ProcessorConfig::from_json(
        &serde_json::json!({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}),
        "llava-hf defaults",
        false,
    )?;
    let limits = DecodeLimits::default();
    let mut rows = vec![];
    for path in &args.images {
        let mut times = vec![];
        let mut tiles_n = 0;
        for i in 0..=args.iters.max(1) {
            let t = Instant::now();
            let img = decode_file(path, &limits).with_context(|| path.display().to_string())?;
            let tiles = anyres_tiles(&img, &cfg);
            let px = normalize(&tiles, &cfg.normalize);
            std::hint::black_box(&px.data);
            tiles_n = px.shape[0];
            if i > 0 {
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        rows.push(serde_json::json!({
            "image": path.display().to_string(),
            "tiles": tiles_n,
            "median_ms": median(times),
        }));
    }
    println!("{}", serde_json::Value::Array(rows));
    Ok(())
}
