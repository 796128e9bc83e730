//! From files and text to what LLaVA-OneVision consumes, equal to transformers 5.24's
//! `LlavaOnevisionProcessor` (PIL backend): decoded RGB images, Pillow-exact bicubic resizing,
//! AnyRes tiling or square padding, normalized pixels, sampled video frames, the chat template
//! rendered and tokenized with placeholders expanded. Spec §2 and §4.

pub mod config;
pub mod error;
pub mod image;
mod jpeg;
pub mod pixels;
pub mod processor;
pub mod prompt;
pub mod resize;
pub mod video;

pub use config::{Normalize, ProcessorConfig, ProcessorConfigs};
pub use error::{Error, Result};
pub use image::{decode_bytes, decode_file, DecodeLimits, RgbImage};
pub use pixels::Pixels;
pub use processor::{ProcessedImage, ProcessedPrompt, ProcessedVideo, Processor};
pub use prompt::{ChatTemplate, Message, Part, Role, TextTokenizer};
