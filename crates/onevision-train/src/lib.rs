//! Training LLaVA-OneVision in Rust through the paper's curriculum (stage 1, 1.5, 2-SI, 2-OV),
//! with losses and gradients equal to PyTorch's: LLaVA-NeXT's data formats and labels
//! (`llava/train/train.py`), transformers' Trainer semantics for AdamW, the cosine schedule,
//! clipping and gradient accumulation, and checkpoints that transformers loads.
//! See shared/spec/llava-onevision.md §5.1-§5.2 and docs/TRAINING.md.

pub mod check;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod example;
pub mod labels;
pub mod log;
pub mod optim;
pub mod params;
pub mod plot;
pub mod rng;
pub mod schedule;
pub mod settings;
pub mod step;
pub mod trainer;

pub use error::{Error, Result};
pub use rng::Rng;
