//! OpenAI response shapes: `chat.completion`, `chat.completion.chunk`, the model list. Built
//! from engine events; the request side is `parse`.

use onevision_engine::{TokenInfo, Usage};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: UsageBody,
}

#[derive(Debug, Serialize)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    pub finish_reason: &'static str,
    /// `null` unless log-probabilities were asked for.
    pub logprobs: Option<Logprobs>,
}

#[derive(Debug, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Logprobs {
    pub content: Vec<TokenLogprob>,
}

#[derive(Debug, Serialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Debug, Serialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

/// OpenAI's stand-in for log(0): JSON has no infinities (serde_json would write `null`,
/// which clients typed as `f32` reject).
const LOG_ZERO: f32 = -9999.0;

fn finite(logprob: f32) -> f32 {
    if logprob.is_finite() {
        logprob
    } else {
        LOG_ZERO
    }
}

impl From<&TokenInfo> for TokenLogprob {
    fn from(t: &TokenInfo) -> Self {
        Self {
            token: t.text.clone(),
            logprob: finite(t.logprob),
            bytes: t.bytes.clone(),
            top_logprobs: t
                .top
                .iter()
                .map(|(_, text, bytes, logprob)| TopLogprob {
                    token: text.clone(),
                    logprob: finite(*logprob),
                    bytes: bytes.clone(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct UsageBody {
    /// Media placeholder tokens included.
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl From<Usage> for UsageBody {
    fn from(u: Usage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens + u.completion_tokens,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ChatChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<ChunkChoice>,
    /// Absent without `include_usage`; with it, `null` on every chunk but the last.
    #[serde(skip_serializing_if = "UsageField::is_absent")]
    pub usage: UsageField,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum UsageField {
    Absent,
    Null(()),
    Usage(UsageBody),
}

impl UsageField {
    fn is_absent(&self) -> bool {
        matches!(self, UsageField::Absent)
    }
}

#[derive(Debug, Serialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub logprobs: Option<Logprobs>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Default, Serialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}

#[derive(Debug, Serialize)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
    /// The context length in tokens (an extension, as vLLM reports it).
    pub max_model_len: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_usage_is_absent_null_or_set() {
        let chunk = |usage| ChatChunk {
            id: "x",
            object: "chat.completion.chunk",
            created: 0,
            model: "m",
            choices: vec![],
            usage,
        };
        let json = |c: ChatChunk<'_>| serde_json::to_value(c).expect("serializes");
        assert!(json(chunk(UsageField::Absent)).get("usage").is_none());
        assert_eq!(
            json(chunk(UsageField::Null(())))["usage"],
            serde_json::Value::Null
        );
        let u = UsageBody::from(Usage {
            prompt_tokens: 3,
            completion_tokens: 2,
            media_tokens: 1,
        });
        assert_eq!(
            json(chunk(UsageField::Usage(u)))["usage"]["total_tokens"],
            5
        );
    }

    #[test]
    fn infinite_logprobs_become_openai_log_zero() {
        let t = TokenInfo {
            id: 1,
            text: "a".into(),
            bytes: vec![97],
            logprob: f32::NEG_INFINITY,
            top: vec![(2, "b".into(), vec![98], f32::NEG_INFINITY)],
        };
        let w = TokenLogprob::from(&t);
        assert_eq!(w.logprob, LOG_ZERO);
        assert_eq!(w.top_logprobs[0].logprob, LOG_ZERO);
    }
}
