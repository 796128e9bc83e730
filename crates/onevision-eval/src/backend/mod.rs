//! The model under evaluation: in-process ([`local::LocalBackend`], the engine's greedy path)
//! or any OpenAI-compatible server ([`openai::OpenAiBackend`]: onevision serve, vLLM, SGLang).
//!
//! Both send the same conversation, lmms-eval's `llava_onevision` protocol as a chat:
//! a system message [`SYSTEM_PROMPT`], then one user message whose content is every image
//! (in order), or the video, followed by the task's text; the checkpoint's chat template puts
//! `<image>\n` before the text per image, as lmms-eval's `qwen_1_5` conversation does. Several
//! images go on the pad path (the processor does this for a message with more than one image);
//! a video is sampled at [`VIDEO_FRAMES`] frames by `np.linspace`. Decoding is greedy.

mod apng;
mod frames;
pub mod local;
pub mod openai;

pub use frames::linspace_indices;

use crate::doc::Prompt;

/// lmms-eval's `qwen_1_5` conversation system prompt.
pub const SYSTEM_PROMPT: &str = "You are a helpful assistant.";

/// lmms-eval's `llava_onevision` `max_frames_num`.
pub const VIDEO_FRAMES: usize = 32;

/// One document's generation.
#[derive(Debug, Clone, Copy)]
pub struct EvalRequest<'a> {
    pub prompt: &'a Prompt,
    pub max_new_tokens: usize,
}

/// Why a generation gave no text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenError {
    /// This document failed (undecodable media, a prompt longer than the context, an endpoint
    /// that kept failing on it after the retries): it is scored as failed, counted, and the
    /// run goes on.
    #[error("{0}")]
    Doc(String),
    /// The backend is gone (every endpoint unreachable): the run stops; what was written stays.
    #[error("{0}")]
    Fatal(String),
}

/// A model that answers [`EvalRequest`]s. `generate` may be called from several threads at
/// once, up to [`Backend::concurrency`] at a time.
pub trait Backend: Send + Sync {
    /// The answer's text as the model produced it (the run loop strips it, as lmms-eval does).
    fn generate(&self, request: &EvalRequest) -> Result<String, GenError>;

    /// How many requests the run loop keeps in flight.
    fn concurrency(&self) -> usize {
        1
    }

    /// What results.json's `config.model` / `config.model_args` say about it.
    fn describe(&self) -> serde_json::Value;
}
