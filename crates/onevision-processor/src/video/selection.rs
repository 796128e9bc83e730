//! Which frames of a video to decode, as pure index arithmetic: `n` spread uniformly
//! (inference, as lmms-eval samples), or LLaVA-NeXT's training rule, one frame every
//! `avg_fps / fps` frames capped by the same linspace.
//!
//! The training rule follows LLaVA-NeXT (LLaVA-VL/LLaVA-NeXT) `process_video_with_decord` in
//! `llava/utils.py`, which the video branch of `LazySupervisedDataset._get_item`
//! (`llava/train/train.py`) calls, with `force_sample` off:
//!
//! ```text
//! avg_fps = round(vr.get_avg_fps() / video_fps)       # Python round(): half to even
//! frame_idx = list(range(0, total_frame_num, avg_fps))
//! if frames_upbound > 0 and len(frame_idx) > frames_upbound:
//!     frame_idx = np.linspace(0, total_frame_num - 1, frames_upbound, dtype=int).tolist()
//! ```
//!
//! Where upstream fails, rules of ours (golden: `fixtures/video/fps/`, made by
//! `tools/fixtures/make_video_fps_fixtures.py`):
//! - the step rounds to 0 (a video slower than half the requested rate): `range()` raises
//!   ValueError upstream and `_get_item` silently moves on to the next sample; we take step 1,
//!   every frame (then the cap as usual);
//! - no rate (a directory of frames, a stream without `avg_frame_rate`): every frame, capped at
//!   the upbound by linspace; the frames are taken as already sampled.

use std::fmt;

use super::video_error;
use crate::Result;

/// `np.linspace(0, total - 1, n).astype(int)` as numpy computes it (the original LLaVA-NeXT and
/// lmms-eval sampling); when `total <= n`, every frame once: `0..total`.
///
/// numpy multiplies `arange(n)` by the f64 step `(total - 1) / (n - 1)`, truncates toward zero
/// and pins the last value to `total - 1`; so do we, so the indices agree for every size.
pub fn sample_indices(total: usize, n: usize) -> Vec<usize> {
    if total <= n {
        return (0..total).collect();
    }
    match n {
        0 => Vec::new(),
        // numpy: no step for a single sample, the start.
        1 => vec![0],
        _ => {
            let step = (total - 1) as f64 / (n - 1) as f64;
            let mut indices: Vec<usize> = (0..n).map(|i| (i as f64 * step) as usize).collect();
            indices[n - 1] = total - 1;
            indices
        }
    }
}

/// A video's average frame rate as the exact fraction FFmpeg keeps (`AVRational`), e.g.
/// 30000/1001 for NTSC; always positive, reduced to lowest terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameRate {
    num: u64,
    den: u64,
}

impl FrameRate {
    /// `num / den` frames per second, reduced; `None` when either is 0 (FFmpeg writes an
    /// unknown rate as 0/0 or 0/1).
    pub fn new(num: u64, den: u64) -> Option<Self> {
        if num == 0 || den == 0 {
            return None;
        }
        let g = gcd(num, den);
        Some(FrameRate {
            num: num / g,
            den: den / g,
        })
    }

    pub fn num(self) -> u64 {
        self.num
    }

    pub fn den(self) -> u64 {
        self.den
    }

    /// Frames per second as decord's `get_avg_fps` computes it: `double(num) / den`.
    pub fn fps(self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

impl fmt::Display for FrameRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{} fps", self.num)
        } else {
            write!(f, "{}/{} fps ({:.3})", self.num, self.den, self.fps())
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Which frames of a video to take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FrameSelection {
    /// `n` frames spread over the whole video, first and last included ([`sample_indices`]):
    /// inference and lmms-eval. Every frame once when the video has no more than `n`.
    Uniform(usize),
    /// LLaVA-NeXT's training rule (module docs): every `round(avg_fps / fps)`-th frame from the
    /// first (Python's round, half to even; at least 1), and when that is more than `upbound`
    /// frames, `upbound` spread by [`sample_indices`] instead. `upbound` 0 means no cap, as
    /// upstream's `frames_upbound > 0` test. Without a rate, every frame, capped the same way.
    Fps { fps: f64, upbound: usize },
}

impl FrameSelection {
    /// The frames to take of a video of `total_frames` frames at `avg_frame_rate`: ascending,
    /// without repeats. Errors on a selection no video can satisfy (`Uniform(0)`, a rate that
    /// is not finite and above 0), with the same messages as the loaders.
    pub fn indices(
        &self,
        total_frames: usize,
        avg_frame_rate: Option<FrameRate>,
    ) -> Result<Vec<usize>> {
        self.check("(frame selection)")?;
        Ok(self.pick(total_frames, avg_frame_rate))
    }

    /// Refuses selections that can never be met; `what` names the video in the error.
    pub(super) fn check(&self, what: &str) -> Result<()> {
        match *self {
            FrameSelection::Uniform(0) => Err(video_error(
                what,
                "0 frames were requested; ask for at least 1 (LLaVA-OneVision is evaluated with \
                 8 to 32)",
            )),
            FrameSelection::Fps { fps, .. } if !(fps.is_finite() && fps > 0.0) => Err(video_error(
                what,
                format!(
                    "a sampling rate of {fps} frames per second was requested; expected a finite \
                     rate above 0 (LLaVA-NeXT trains with 1)"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// [`Self::indices`] for a checked selection.
    pub(super) fn pick(&self, total: usize, rate: Option<FrameRate>) -> Vec<usize> {
        match *self {
            FrameSelection::Uniform(n) => sample_indices(total, n),
            FrameSelection::Fps { fps, upbound } => {
                let step = fps_step(rate, fps);
                // len(range(0, total, step)), without building it.
                let count = total.div_ceil(step);
                if upbound > 0 && count > upbound {
                    // count > upbound implies total > upbound: this is numpy's linspace.
                    sample_indices(total, upbound)
                } else {
                    (0..total).step_by(step).collect()
                }
            }
        }
    }
}

/// `round(avg_fps / fps)` with Python's round (ties to even, on the exact f64 quotient, as
/// `f64::round_ties_even`), and 1 where upstream has no answer: no rate, or a quotient that
/// rounds to 0. A quotient beyond `usize` saturates, which leaves only the first frame.
fn fps_step(rate: Option<FrameRate>, fps: f64) -> usize {
    let Some(rate) = rate else {
        return 1;
    };
    let step = (rate.fps() / fps).round_ties_even();
    if step >= 1.0 {
        step as usize
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(num: u64, den: u64) -> Option<FrameRate> {
        FrameRate::new(num, den)
    }

    fn fps(fps: f64, upbound: usize) -> FrameSelection {
        FrameSelection::Fps { fps, upbound }
    }

    fn every(total: usize, step: usize) -> Vec<usize> {
        (0..total).step_by(step).collect()
    }

    #[test]
    fn sampling_edges() {
        assert_eq!(sample_indices(0, 8), Vec::<usize>::new());
        assert_eq!(sample_indices(5, 8), vec![0, 1, 2, 3, 4]);
        assert_eq!(sample_indices(8, 8), (0..8).collect::<Vec<_>>());
        assert_eq!(sample_indices(9, 0), Vec::<usize>::new());
        assert_eq!(sample_indices(9, 1), vec![0]);
        assert_eq!(sample_indices(9, 2), vec![0, 8]);
        // np.linspace(0, 47, 8).astype(int)
        assert_eq!(sample_indices(48, 8), vec![0, 6, 13, 20, 26, 33, 40, 47]);
    }

    #[test]
    fn frame_rates_are_exact_fractions() {
        assert_eq!(FrameRate::new(0, 0), None);
        assert_eq!(FrameRate::new(0, 1), None);
        assert_eq!(FrameRate::new(25, 0), None);
        let r = FrameRate::new(2400, 168).unwrap();
        assert_eq!((r.num(), r.den()), (100, 7));
        assert_eq!(FrameRate::new(48, 2), FrameRate::new(24, 1));
        assert_eq!(FrameRate::new(30000, 1001).unwrap().fps(), 30000.0 / 1001.0);
        assert_eq!(FrameRate::new(24, 1).unwrap().to_string(), "24 fps");
        assert_eq!(
            FrameRate::new(30000, 1001).unwrap().to_string(),
            "30000/1001 fps (29.970)"
        );
    }

    /// Python's `round()` is half to even: these would differ with `f64::round`.
    #[test]
    fn step_rounds_half_to_even() {
        // round(2.5) == 2, round(3.5) == 4, round(7.5) == 8, round(12.5) == 12
        assert_eq!(fps(1.0, 0).pick(100, rate(5, 2)), every(100, 2));
        assert_eq!(fps(1.0, 0).pick(100, rate(7, 2)), every(100, 4));
        assert_eq!(fps(1.0, 0).pick(100, rate(15, 2)), every(100, 8));
        assert_eq!(fps(1.0, 0).pick(100, rate(25, 2)), every(100, 12));
        // 7.5 / 3 == 2.5 -> 2; 12.5 / 5 == 2.5 -> 2; 1.5 -> 2
        assert_eq!(fps(3.0, 0).pick(20, rate(15, 2)), every(20, 2));
        assert_eq!(fps(5.0, 0).pick(12, rate(25, 2)), every(12, 2));
        assert_eq!(fps(1.0, 0).pick(10, rate(3, 2)), every(10, 2));
        // Not ties: 29.97 -> 30, 14.985 -> 15, 9.99 -> 10, 24 / 0.5 -> 48.
        assert_eq!(fps(1.0, 0).pick(100, rate(30000, 1001)), every(100, 30));
        assert_eq!(fps(2.0, 0).pick(100, rate(30000, 1001)), every(100, 15));
        assert_eq!(fps(3.0, 0).pick(100, rate(30000, 1001)), every(100, 10));
        assert_eq!(fps(0.5, 0).pick(100, rate(24, 1)), vec![0, 48, 96]);
    }

    #[test]
    fn step_rounding_to_zero_takes_every_frame() {
        // round(0.3) == 0 and round(0.5) == 0: upstream's range() would raise.
        assert_eq!(fps(1.0, 0).pick(7, rate(3, 10)), every(7, 1));
        assert_eq!(fps(1.0, 0).pick(7, rate(1, 2)), every(7, 1));
        assert_eq!(fps(20.0, 0).pick(20, rate(15, 2)), every(20, 1));
        // ... and the cap still applies.
        assert_eq!(fps(1.0, 4).pick(7, rate(3, 10)), sample_indices(7, 4));
        // A quotient too large for usize: the first frame.
        assert_eq!(fps(f64::MIN_POSITIVE, 32).pick(1000, rate(60, 1)), vec![0]);
    }

    #[test]
    fn upbound_caps_by_linspace() {
        // 100 frames at 1 fps sampled at 1 fps: 100 > 32, so linspace(0, 99, 32).
        assert_eq!(fps(1.0, 32).pick(100, rate(1, 1)), sample_indices(100, 32));
        // Exactly `upbound` frames is not more than it: the step's frames stay.
        assert_eq!(fps(1.0, 32).pick(64, rate(2, 1)), every(64, 2));
        // One more frame gives 33 > 32: linspace, first and last frame included.
        let capped = fps(1.0, 32).pick(65, rate(2, 1));
        assert_eq!(capped, sample_indices(65, 32));
        assert_eq!((capped.len(), capped[0], capped[31]), (32, 0, 64));
        // upbound 0: no cap, as `frames_upbound > 0` upstream.
        assert_eq!(fps(1.0, 0).pick(3600, rate(1, 1)), every(3600, 1));
        // np.linspace(0, 19, 4, dtype=int) == [0, 6, 12, 19]
        assert_eq!(fps(20.0, 4).pick(20, rate(15, 2)), vec![0, 6, 12, 19]);
    }

    #[test]
    fn short_videos_and_no_rate() {
        assert_eq!(fps(1.0, 32).pick(1, rate(24, 1)), vec![0]);
        assert_eq!(fps(1.0, 32).pick(5, rate(24, 1)), vec![0]);
        assert_eq!(fps(1.0, 32).pick(25, rate(24, 1)), vec![0, 24]);
        assert_eq!(fps(1.0, 32).pick(0, rate(24, 1)), Vec::<usize>::new());
        // No rate: every frame, capped.
        assert_eq!(fps(1.0, 32).pick(10, None), every(10, 1));
        assert_eq!(fps(1.0, 4).pick(10, None), vec![0, 3, 6, 9]);
        assert_eq!(fps(5.0, 0).pick(50, None), every(50, 1));
    }

    #[test]
    fn uniform_is_sample_indices() {
        for total in [1usize, 7, 48, 1000] {
            for n in [1usize, 8, 32] {
                assert_eq!(
                    FrameSelection::Uniform(n).pick(total, rate(24, 1)),
                    sample_indices(total, n)
                );
            }
        }
    }

    #[test]
    fn impossible_selections_are_errors() {
        let msg = |sel: FrameSelection| match sel.indices(10, rate(24, 1)) {
            Err(crate::Error::Video { reason, .. }) => reason,
            other => panic!("{sel:?}: expected an error, got {other:?}"),
        };
        assert!(msg(FrameSelection::Uniform(0)).contains("0 frames were requested"));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let m = msg(fps(bad, 32));
            assert!(m.contains("expected a finite rate above 0"), "{m}");
        }
        assert!(fps(1.0, 32).indices(10, rate(24, 1)).is_ok());
    }
}
