//! LLaVA-OneVision in candle: SigLIP vision tower, MLP projector, Qwen2 decoder, and the
//! AnyRes / multi-image / video feature packing, numerically following transformers 5.24
//! (`models/llava_onevision/modeling_llava_onevision.py`). See shared/spec/llava-onevision.md.

pub mod config;
pub mod error;
pub mod fixtures;
pub mod generate;
pub mod llava_ov;
pub mod projector;
pub mod qwen2;
pub mod siglip;

pub use config::{AspectRatio, LlavaOnevisionConfig, Qwen2Config, SiglipConfig};
pub use error::{Error, Result};
pub use llava_ov::{LlavaOnevision, Media, MultimodalInput};
