//! Single-image recipes with open or letter answers scored by string metrics: ai2d, chartqa,
//! docvqa_val, textvqa_val, pope, mme.

use crate::task::Task;

/// The tasks of this module, in lmms-eval's names.
pub fn tasks() -> Vec<Box<dyn Task>> {
    vec![]
}
