//! The engine: validated requests in, events out. `pipeline` turns a conversation with media
//! files into model input; `generate` runs one request (sampling, stop rules, streaming
//! detokenization, log-probabilities); `worker` owns the model on its own thread behind a
//! bounded queue and batches the running requests continuously, for servers; `resolve` finds checkpoints (directories, Hugging Face cache).

pub mod detok;
pub mod encoder_cache;
pub mod error;
pub mod generate;
pub mod pipeline;
pub mod request;
pub mod resolve;
pub mod sampler;
pub mod worker;

pub use error::{Error, Result};
pub use pipeline::{
    GenerateOptions, GenerateOutput, ImageInput, Pipeline, Request, Timings, VideoInput,
};
pub use request::{Event, Finish, GenRequest, SamplingParams, StopRules, TokenInfo, Usage};
pub use worker::{BatchConfig, Engine, EngineThread, Sink, SubmitError};
