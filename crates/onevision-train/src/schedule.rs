//! The learning-rate schedule: transformers' `get_cosine_schedule_with_warmup`
//! (`transformers/optimization.py`, `_get_cosine_schedule_with_warmup_lr_lambda`), a linear
//! warmup from 0 then half a cosine down to 0, computed in f64 exactly as the Python does.
//!
//! How the Trainer drives it (and how the training loop must, to log the same numbers):
//! - `get_cosine_schedule_with_warmup` returns a `torch.optim.lr_scheduler.LambdaLR`, whose
//!   constructor already takes one step, so before the first update every group's lr is
//!   `base_lr * lambda(0)`. The Trainer calls `lr_scheduler.step()` after each
//!   `optimizer.step()`, so **the update of optimizer step k (0-based) uses `lambda(k)`**: under
//!   warmup the first update has lr 0 (it still moves the moments and the step count).
//! - `LambdaLR.get_lr` computes `base_lr * lmbda(last_epoch)` in Python floats: the lr of a group
//!   is exactly `base * multiplier(k)` in f64 ([`crate::optim::GroupLrs::scaled`]).
//! - The Trainer logs `learning_rate` after the scheduler has stepped, i.e. the lr the *next*
//!   update will use (`_get_learning_rate` reads `get_last_lr()`); our log records the lr the
//!   update of that line used, which is the one a reader means.

/// `get_cosine_schedule_with_warmup(optimizer, num_warmup_steps, num_training_steps)` with the
/// default `num_cycles = 0.5` (half a cosine: from 1 down to 0 over the post-warmup steps).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineWithWarmup {
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub num_cycles: f64,
}

impl CosineWithWarmup {
    pub fn new(warmup_steps: usize, total_steps: usize) -> Self {
        Self {
            warmup_steps,
            total_steps,
            num_cycles: 0.5,
        }
    }

    /// The lr multiplier at `step` (`_get_cosine_schedule_with_warmup_lr_lambda(current_step)`):
    /// `step / max(1, warmup)` during warmup, then
    /// `max(0, 0.5 * (1 + cos(pi * num_cycles * 2 * progress)))` with
    /// `progress = (step - warmup) / max(1, total - warmup)`. Past `total_steps` the formula
    /// is applied as it stands (the Trainer never asks for it).
    pub fn multiplier(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return step as f64 / self.warmup_steps.max(1) as f64;
        }
        // Python: max(1, num_training_steps - num_warmup_steps), which is 1 when warmup >= total.
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = (step - self.warmup_steps) as f64 / span as f64;
        // Evaluated left to right as in Python: ((pi * num_cycles) * 2.0) * progress.
        let factor = 0.5 * (1.0 + (std::f64::consts::PI * self.num_cycles * 2.0 * progress).cos());
        // Python's max(0.0, x) returns 0.0 unless x > 0.0 (also for NaN).
        if factor > 0.0 {
            factor
        } else {
            0.0
        }
    }
}

/// `CosineWithWarmup::new(warmup_steps, total_steps).multiplier(step)`: the multiplier of update
/// `step` (0-based).
pub fn cosine_with_warmup(step: usize, warmup_steps: usize, total_steps: usize) -> f64 {
    CosineWithWarmup::new(warmup_steps, total_steps).multiplier(step)
}

/// Warmup steps for a ratio of the total, as `TrainingArguments.get_warmup_steps` computes them
/// for a ratio below 1: `math.ceil(num_training_steps * ratio)` (in f64). transformers 5 folds the
/// old `warmup_ratio` into `warmup_steps` (a value >= 1 there is a step count); the CLI keeps
/// `--warmup-ratio` a ratio in [0, 1]. A negative or NaN ratio gives 0.
pub fn warmup_steps(ratio: f64, total_steps: usize) -> usize {
    let steps = (total_steps as f64 * ratio).ceil();
    if steps > 0.0 {
        steps as usize
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_is_linear_from_zero_then_cosine_to_zero() {
        let s = CosineWithWarmup::new(2, 6);
        assert_eq!(s.multiplier(0), 0.0);
        assert_eq!(s.multiplier(1), 0.5);
        assert_eq!(s.multiplier(2), 1.0);
        // progress 2/4: cos(pi/2) is 6.1e-17, not 0.
        assert_eq!(
            s.multiplier(4),
            0.5 * (1.0 + (std::f64::consts::PI * 0.5).cos())
        );
        assert!(s.multiplier(6) < 1e-30);
    }

    #[test]
    fn no_warmup_and_degenerate_spans() {
        let s = CosineWithWarmup::new(0, 1);
        assert_eq!(s.multiplier(0), 1.0);
        // warmup >= total: the span is max(1, total - warmup) = 1, as in Python.
        let s = CosineWithWarmup::new(5, 3);
        assert_eq!(s.multiplier(4), 0.8);
        assert_eq!(s.multiplier(5), 1.0);
    }

    #[test]
    fn warmup_steps_round_up() {
        assert_eq!(warmup_steps(0.03, 100), 3);
        assert_eq!(warmup_steps(0.03, 1000), 30);
        assert_eq!(warmup_steps(0.03, 10), 1);
        assert_eq!(warmup_steps(0.3, 6), 2); // 6 * 0.3 = 1.7999999999999998
        assert_eq!(warmup_steps(0.0, 10), 0);
        assert_eq!(warmup_steps(-1.0, 10), 0);
        assert_eq!(warmup_steps(f64::NAN, 10), 0);
    }
}
