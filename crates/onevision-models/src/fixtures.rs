//! The golden fixtures written by `tools/fixtures/make_model_fixtures.py` (see its docstring):
//! the manifest, the per-case tensors and summaries, and the seeded pixel pattern the inputs are
//! made of. Used by the tests and by `onevision fixture-check`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Deserialize;

use crate::llava_ov::ImageLayout;
use crate::{Error, Media, MultimodalInput, Result};

pub const TILE: usize = 384;

/// `fixtures/models` of this repository (the tests' default).
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models")
}

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub models: HashMap<String, ModelEntry>,
}

#[derive(Debug, Deserialize)]
pub struct ModelEntry {
    pub eos_token_id: u32,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ImageSpec {
    pub size: [usize; 2],
    pub seed: i64,
    pub patches: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VideoSpec {
    pub frames: usize,
    pub seed: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub images: Vec<ImageSpec>,
    pub batch_num_images: Option<usize>,
    pub video: Option<VideoSpec>,
    pub greedy: Vec<u32>,
}

pub fn manifest_in(dir: &Path) -> Result<Manifest> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::BadJson {
        path,
        reason: e.to_string(),
    })
}

pub fn case_tensors_in(dir: &Path, model: &str, case: &str) -> Result<HashMap<String, Tensor>> {
    let p = dir
        .join(model)
        .join("cases")
        .join(format!("{case}.safetensors"));
    candle_core::safetensors::load(&p, &Device::Cpu).map_err(|e| {
        onevision_nn::Error::BadSafetensors {
            path: p.clone(),
            reason: e.to_string(),
        }
        .into()
    })
}

/// The repository's manifest; panics if it is missing (tests only).
pub fn manifest() -> Manifest {
    manifest_in(&fixtures()).expect("fixtures/models/manifest.json")
}

/// A case's tensors from the repository's fixtures; panics if missing (tests only).
pub fn case_tensors(model: &str, case: &str) -> HashMap<String, Tensor> {
    case_tensors_in(&fixtures(), model, case).expect("fixture case")
}

/// Same as `pattern_u8` + `normalize` in make_model_fixtures.py.
///
/// # Shapes
/// returns (n, 3, 384, 384), f32
pub fn pattern_pixels(seed: i64, n: usize) -> Tensor {
    let mut v = Vec::with_capacity(n * 3 * TILE * TILE);
    for p in 0..n as i64 {
        for c in 0..3i64 {
            for y in 0..TILE as i64 {
                for x in 0..TILE as i64 {
                    let h = x * 7 + y * 13 + c * 101 + p * 211 + seed * 7919;
                    let h = (h * 2_654_435_761 + x * y) % (1i64 << 32);
                    let ramp = (x * (seed % 5 + 1) + y * (p + 2) + c * 85) / 3;
                    let u8 = (ramp + ((h >> 24) & 63)) % 256;
                    let r = ((u8 as f64) * (1.0 / 255.0)) as f32;
                    v.push((r - 0.5) / 0.5);
                }
            }
        }
    }
    Tensor::from_vec(v, (n, 3, TILE, TILE), &Device::Cpu).expect("pixel tensor")
}

/// A stored tensor of a case, or an error naming the missing entry.
fn entry<'a>(t: &'a HashMap<String, Tensor>, name: &str) -> Result<&'a Tensor> {
    t.get(name).ok_or_else(|| {
        Error::Input(format!(
            "the fixture case has no tensor `{name}`; regenerate it with tools/fixtures"
        ))
    })
}

/// The model input of a case: its token ids and its media made from the pixel pattern.
pub fn input(case: &Case, tensors: &HashMap<String, Tensor>) -> Result<MultimodalInput> {
    let ids: Vec<i64> = entry(tensors, "input_ids")?.to_vec1()?;
    let layout = if case.batch_num_images.unwrap_or(1) > 1 {
        ImageLayout::Single
    } else {
        ImageLayout::AnyRes
    };
    let mut media: Vec<Media> = case
        .images
        .iter()
        .map(|i| Media::Image {
            pixels: pattern_pixels(i.seed, i.patches),
            size: (i.size[0], i.size[1]),
            layout,
        })
        .collect();
    if let Some(v) = &case.video {
        media.push(Media::Video {
            frames: pattern_pixels(v.seed, v.frames),
        });
    }
    Ok(MultimodalInput {
        input_ids: ids.into_iter().map(|i| i as u32).collect(),
        media,
    })
}

/// How far a tensor (viewed as rows x last axis) is from a stored summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct Deviation {
    /// max |ours - theirs| over the rows stored in full
    pub sample_max_abs: f32,
    /// max |Σ ours - Σ theirs| over every row
    pub row_sum_max_abs: f32,
    /// max |Σ ours² - Σ theirs²| / max(1, Σ theirs²) over every row
    pub row_sumsq_max_rel: f32,
    /// max |value| in the stored rows (the scale the errors are judged against)
    pub scale: f32,
}

/// Compares `ours` with the summary stored under `name`.
pub fn deviation(name: &str, ours: &Tensor, t: &HashMap<String, Tensor>) -> Result<Deviation> {
    let cols = ours.dims().last().copied().unwrap_or(1);
    let ours: Vec<Vec<f32>> = ours
        .to_dtype(candle_core::DType::F32)?
        .reshape(((), cols))?
        .to_vec2()?;
    let rows: Vec<i64> = entry(t, &format!("{name}.rows"))?.to_vec1()?;
    let sample: Vec<Vec<f32>> = entry(t, &format!("{name}.sample"))?.to_vec2()?;
    let sums: Vec<f32> = entry(t, &format!("{name}.row_sum"))?.to_vec1()?;
    let sumsq: Vec<f32> = entry(t, &format!("{name}.row_sumsq"))?.to_vec1()?;
    if ours.len() != sums.len()
        || sumsq.len() != sums.len()
        || rows.iter().any(|&r| r < 0 || r as usize >= ours.len())
    {
        return Err(Error::Input(format!(
            "{name}: {} rows computed, the fixture summarizes {}",
            ours.len(),
            sums.len()
        )));
    }
    let mut d = Deviation::default();
    for (r, want) in rows.iter().zip(&sample) {
        for (a, b) in ours[*r as usize].iter().zip(want) {
            d.sample_max_abs = d.sample_max_abs.max((a - b).abs());
            d.scale = d.scale.max(b.abs());
        }
    }
    for (i, row) in ours.iter().enumerate() {
        let s: f64 = row.iter().map(|&x| x as f64).sum();
        let q: f64 = row.iter().map(|&x| (x as f64) * (x as f64)).sum();
        d.row_sum_max_abs = d.row_sum_max_abs.max((s as f32 - sums[i]).abs());
        d.row_sumsq_max_rel = d
            .row_sumsq_max_rel
            .max((q as f32 - sumsq[i]).abs() / sumsq[i].abs().max(1.0));
    }
    Ok(d)
}
