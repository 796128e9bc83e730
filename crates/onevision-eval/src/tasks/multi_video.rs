//! Multi-image and video recipes: muirbench, llava_interleave_bench, videomme, nextqa_mc_test,
//! mvbench, mlvu, egoschema_subset.

use crate::task::Task;

/// The tasks of this module, in lmms-eval's names.
pub fn tasks() -> Vec<Box<dyn Task>> {
    vec![]
}
