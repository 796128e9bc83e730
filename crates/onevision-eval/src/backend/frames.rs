//! The frames of a frame-folder video ([`crate::doc::Visual::Frames`]), as lmms-eval's
//! `llava_onevision` takes them: `np.linspace(0, len(visual) - 1, sample_frames, dtype=int)`
//! over the listed frames (`lmms_eval/models/llava_onevision.py` `generate_until`, the
//! `"sample_frames" in metadata` branch), each frame decoded as an image. Both backends use
//! this, so they see the same frames.

use std::path::PathBuf;

use onevision_processor::{decode_file, DecodeLimits, RgbImage};

use super::GenError;

/// `np.linspace(0, total - 1, n, dtype=int)` as numpy computes it: `arange(n) * step`
/// with the f64 step `(total - 1) / (n - 1)`, truncated toward zero, the last value pinned to
/// `total - 1`. Unlike [`onevision_processor::video::sample_indices`] (which takes every frame
/// once when a video is short), a list shorter than `n` gives repeated indices, as numpy does:
/// lmms-eval then asserts `len(visual) == sample_frames`, so a short folder is fed with
/// repeated frames.
pub fn linspace_indices(total: usize, n: usize) -> Vec<usize> {
    match (total, n) {
        (0, _) | (_, 0) => Vec::new(),
        // numpy: no step for a single sample, the start.
        (_, 1) => vec![0],
        _ => {
            let step = (total - 1) as f64 / (n - 1) as f64;
            let mut indices: Vec<usize> = (0..n).map(|i| (i as f64 * step) as usize).collect();
            indices[n - 1] = total - 1;
            indices
        }
    }
}

/// Decodes the `n` frames [`linspace_indices`] picks from `paths` (in the order given; a
/// frame picked twice is decoded once). Every frame must have the size of the first, as a
/// video's frames do. An empty list, an undecodable frame or a size change is a
/// [`GenError::Doc`] naming the file.
pub fn load_frames(
    paths: &[PathBuf],
    n: usize,
    limits: &DecodeLimits,
) -> Result<Vec<RgbImage>, GenError> {
    if paths.is_empty() {
        return Err(GenError::Doc(
            "the document's video has no frames (an empty frame list)".into(),
        ));
    }
    let indices = linspace_indices(paths.len(), n);
    let mut frames: Vec<RgbImage> = Vec::with_capacity(indices.len());
    let mut last: Option<usize> = None;
    for &i in &indices {
        let frame = match (last, frames.last()) {
            (Some(prev), Some(f)) if prev == i => f.clone(),
            _ => decode_file(&paths[i], limits).map_err(|e| GenError::Doc(e.to_string()))?,
        };
        if let Some(first) = frames.first() {
            if (first.width, first.height) != (frame.width, frame.height) {
                return Err(GenError::Doc(format!(
                    "frame {} is {}x{} but frame {} is {}x{}; all frames of a video must have \
                     one size",
                    paths[i].display(),
                    frame.width,
                    frame.height,
                    paths[indices[0]].display(),
                    first.width,
                    first.height
                )));
            }
        }
        last = Some(i);
        frames.push(frame);
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_equals_numpy() {
        // python -c "import numpy as np; print(np.linspace(0, 10, 32, dtype=int).tolist())"
        assert_eq!(
            linspace_indices(11, 32),
            vec![
                0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8,
                9, 9, 9, 10
            ]
        );
        // np.linspace(0, 99, 32, dtype=int)
        assert_eq!(
            linspace_indices(100, 32),
            vec![
                0, 3, 6, 9, 12, 15, 19, 22, 25, 28, 31, 35, 38, 41, 44, 47, 51, 54, 57, 60, 63, 67,
                70, 73, 76, 79, 83, 86, 89, 92, 95, 99
            ]
        );
        assert_eq!(linspace_indices(1, 4), vec![0, 0, 0, 0]);
        assert_eq!(linspace_indices(7, 1), vec![0]);
        assert_eq!(linspace_indices(0, 4), Vec::<usize>::new());
    }

    #[test]
    fn long_lists_agree_with_the_processor() {
        for total in [33, 50, 64, 100, 1000, 4097] {
            assert_eq!(
                linspace_indices(total, 32),
                onevision_processor::video::sample_indices(total, 32),
                "total {total}"
            );
        }
    }
}
