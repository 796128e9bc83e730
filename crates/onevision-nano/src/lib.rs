//! onevision-nano (issue 12): a small LLaVA-OneVision made from nothing on a CPU. The pieces
//! the existing crates do not have live here: the model's own BPE tokenizer trained over the
//! procedural world's text ([`tokenizer`]), its configuration and initial weights in the
//! llava-hf layout ([`init`]), and the vision tower's pretraining with SigLIP's sigmoid
//! image-text loss ([`vision_pretrain`]) or its dense, placed objective
//! ([`dense_pretrain`]). The language model's pretraining and the paper's
//! stages run through `onevision train`; grading through `onevision eval`.

pub mod corpus;
pub mod dense_pretrain;
pub mod error;
pub mod init;
pub mod tokenizer;
pub mod vision_pretrain;

pub use error::{Error, Result};
