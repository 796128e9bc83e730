//! Single-image multiple-choice recipes: mmbench_en_dev, scienceqa_img, mmstar, realworldqa,
//! seedbench, mmmu_val.

use crate::task::Task;

/// The tasks of this module, in lmms-eval's names.
pub fn tasks() -> Vec<Box<dyn Task>> {
    vec![]
}
