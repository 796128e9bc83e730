//! The scoring functions of lmms-eval 0.2.1, each a pure function named after the upstream
//! function it reproduces, with its known-answer tests beside it. Their per-document values are
//! checked against lmms-eval's own functions by `tests/metrics.rs` on the committed fixtures
//! (`fixtures/eval/metrics/`, written by `tools/eval_fixtures/`).

pub mod aggregate;
pub mod anls;
pub mod choice;
pub mod exact;
pub mod filters;
pub mod mcq_acc;
pub mod mmmu;
pub mod pylit;
pub mod pyrandom;
pub mod pyre;
pub mod pyrepr;
pub mod pystr;
pub mod relaxed;
pub mod rouge;
pub mod video_choice;
pub mod vqa;
pub mod yesno;
