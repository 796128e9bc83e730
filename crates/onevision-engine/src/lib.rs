//! The engine: one request in (a conversation with image and video files), generated text,
//! token ids and timings out. Issue 3 runs one request at a time with greedy decoding; the
//! sampler, the scheduler and the server's worker build on this.

pub mod error;
pub mod pipeline;

pub use error::{Error, Result};
pub use pipeline::{
    GenerateOptions, GenerateOutput, ImageInput, Pipeline, Request, Timings, VideoInput,
};
