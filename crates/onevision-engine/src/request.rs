//! The engine's validated request and event types. Wire formats (OpenAI JSON, CLI flags) are
//! parsed into these at the edge; nothing below this line sees strings that still need checking.

use crate::pipeline::{Request, Timings};

/// How the next token is chosen. `temperature == 0` is greedy (arg-max; the first index wins
/// ties, as `torch.argmax`). Penalties follow the usual definitions:
/// - `repetition_penalty` (transformers / CTRL): for every token id already in the prompt or the
///   output, a positive logit is divided by it and a negative one multiplied (1.0 = off);
/// - `presence_penalty` / `frequency_penalty` (OpenAI): subtract `presence` once for every token
///   id that occurs in the output so far, and `frequency × count` (0.0 = off).
///
/// Filters apply after the penalties and temperature, in the order top-k, top-p, min-p.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy; otherwise logits are divided by it before the softmax. Range 0..=2 at the API.
    pub temperature: f32,
    /// Keep only the k most likely tokens (None = all).
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p` (1.0 = all).
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p × p(most likely)` (0.0 = off).
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// Same seed, same request, same checkpoint -> same output. None = a fresh random seed.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
        }
    }
}

/// When generation ends.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StopRules {
    /// The most tokens to generate; the engine also refuses prompt + this > context length.
    pub max_new_tokens: usize,
    /// Generation stops when the text contains one of these; the text returned ends right
    /// before it (OpenAI `stop`). Not matched inside the prompt.
    pub stop_strings: Vec<String>,
    /// Extra token ids that end generation (included in `token_ids`, not in the text).
    pub stop_token_ids: Vec<u32>,
    /// Do not stop at the checkpoint's end-of-sequence ids.
    pub ignore_eos: bool,
    /// When `max_new_tokens` is only a default (the caller did not ask for a number), lower it
    /// to the room the prompt leaves in the context instead of refusing the request.
    pub clamp_to_context: bool,
}

/// One generation request for the engine.
#[derive(Debug, Clone)]
pub struct GenRequest {
    pub request: Request,
    pub sampling: SamplingParams,
    pub stop: StopRules,
    /// None: no log-probabilities. Some(k): each generated token's log-probability plus the k
    /// most likely alternatives (k = 0..=20), from the distribution the token was drawn from
    /// before sampling filters (after penalties), as OpenAI reports them.
    pub logprobs: Option<usize>,
}

/// A generated token with its log-probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    pub id: u32,
    /// The token's own text (lossy for partial UTF-8 sequences) and raw bytes.
    pub text: String,
    pub bytes: Vec<u8>,
    /// log p(token); 0.0 when log-probabilities were not requested.
    pub logprob: f32,
    /// The most likely alternatives (id, text, bytes, logprob), best first.
    pub top: Vec<(u32, String, Vec<u8>, f32)>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-sequence id, a stop token id or a stop string.
    Stop,
    /// `max_new_tokens` reached.
    Length,
    /// The consumer stopped listening (client disconnected, Ctrl-C).
    Cancelled,
}

impl Finish {
    /// The OpenAI `finish_reason` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt tokens including media placeholders.
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Placeholder tokens of all images and videos (part of `prompt_tokens`).
    pub media_tokens: usize,
}

/// What the engine reports while it runs a request, in this order: `Started`, then zero or
/// more `Delta`, then exactly one `Done`; or `Failed` at any point (nothing follows it).
#[derive(Debug)]
pub enum Event {
    /// The prompt was processed (media decoded, template rendered, tokens counted).
    Started { usage: Usage },
    /// New text (always whole UTF-8 characters; never part of a stop string) and the tokens
    /// generated since the previous delta (a token whose text is still held back is reported
    /// with the delta that releases its text; tokens after a stop string are not reported).
    Delta {
        text: String,
        tokens: Vec<TokenInfo>,
    },
    Done {
        finish: Finish,
        usage: Usage,
        timings: Timings,
        /// All generated ids (stop / EOS ids included when they ended generation).
        token_ids: Vec<u32>,
        /// The whole answer (stop string excluded).
        text: String,
    },
    /// The request could not be run: `Error::Processor` / `Error::Request` are the caller's
    /// fault (bad media, too long), anything else is the engine's.
    Failed(crate::Error),
}
