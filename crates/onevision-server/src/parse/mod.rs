//! An OpenAI chat-completions body (JSON) -> a validated [`ChatRequest`]. Every field is
//! checked here, with an error that names the field, says what was expected and what was
//! given; below this line nothing looks at a string or a range again. Media stay unfetched
//! ([`MediaSource`]): fetching is `media::resolve`'s job, after everything cheap has passed.
//!
//! Hand-written rather than `serde(derive)`: derived untagged enums report "data did not match
//! any variant", and OpenAI clients deserve "`messages[2].content` must be a string or a list
//! of content parts, got a number".

mod fields;
mod messages;

use std::path::PathBuf;

use onevision_engine::{SamplingParams, StopRules};
use onevision_processor::Message;
use serde_json::Value;

use crate::error::ApiError;
use crate::Limits;
use fields::{type_name, Fields};
use messages::messages;
pub use messages::truncate;

/// Frames sampled from a video when the request does not say (`video_url.num_frames`), as
/// `onevision generate --frames` defaults; capped by `Limits::max_video_frames`.
pub const DEFAULT_VIDEO_FRAMES: usize = 32;

/// The most `stop` strings a request may give, as OpenAI allows.
pub const MAX_STOP_STRINGS: usize = 4;

/// The most alternatives `top_logprobs` may ask for, as OpenAI allows.
pub const MAX_TOP_LOGPROBS: usize = 20;

/// A chat-completions request that passed every check.
#[derive(Debug)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    /// Every image and video of the conversation, in the order of their parts.
    pub media: Vec<MediaItem>,
    pub sampling: SamplingParams,
    pub stop: StopRules,
    /// None: no log-probabilities; Some(k): k alternatives per token.
    pub logprobs: Option<usize>,
    /// Some when the answer is streamed (server-sent events).
    pub stream: Option<StreamOptions>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// Send a last chunk with the token usage (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// An image or a video of a request, not fetched yet.
#[derive(Debug)]
pub struct MediaItem {
    /// Where it is in the request (`messages[0].content[1].image_url`), for error messages.
    pub param: String,
    pub kind: MediaKind,
    pub source: MediaSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Video { frames: usize },
}

#[derive(Debug)]
pub enum MediaSource {
    /// A base64 data URI, decoded (never empty).
    Inline(Vec<u8>),
    /// An http(s) URL.
    Remote(reqwest::Url),
    /// A `file://` URL (percent-decoded, dot segments removed; not checked against the
    /// allowed directory yet).
    Local(PathBuf),
}

/// What the parser needs to know about the server.
pub struct ParseContext<'a> {
    pub served_model_name: &'a str,
    /// The model's context length in tokens (prompt + generated).
    pub context_length: usize,
    pub limits: &'a Limits,
}

type Result<T> = std::result::Result<T, ApiError>;

/// Parses and checks a chat-completions body. The model name is checked first (404), then
/// every other field (400).
pub fn chat_request(body: &Value, cx: &ParseContext<'_>) -> Result<ChatRequest> {
    let top = match body {
        Value::Object(_) => Fields::of(body, "")?,
        other => {
            return Err(ApiError::bad_request(format!(
                "the request body must be a JSON object, got {}",
                type_name(other)
            )))
        }
    };

    if let Some(model) = top.str("model")? {
        if model != cx.served_model_name {
            return Err(ApiError::model_not_found(model, cx.served_model_name));
        }
    }

    let mut media = Vec::new();
    let messages = messages(&top, cx.limits, &mut media)?;
    let images = media.iter().filter(|m| m.kind == MediaKind::Image).count();
    let videos = media.len() - images;
    if images > cx.limits.max_images_per_request {
        return Err(ApiError::invalid(
            "messages",
            format!(
                "the request has {images} images; this server accepts at most {} per request",
                cx.limits.max_images_per_request
            ),
        ));
    }
    if videos > cx.limits.max_videos_per_request {
        return Err(ApiError::invalid(
            "messages",
            format!(
                "the request has {videos} videos; this server accepts at most {} per request",
                cx.limits.max_videos_per_request
            ),
        ));
    }

    unsupported_features(&top)?;

    if let Some(n) = top.int("n")? {
        if n != 1 {
            return Err(top.out_of_range(
                "n",
                "1 (this server returns one choice per request; send separate requests for more)",
                n,
            ));
        }
    }

    let sampling = sampling(&top)?;
    let stop = stop_rules(&top, cx)?;

    let logprobs = match (top.bool("logprobs")?, top.int("top_logprobs")?) {
        (Some(true), k) => {
            let k = k.unwrap_or(0);
            if !(0..=MAX_TOP_LOGPROBS as i64).contains(&k) {
                return Err(top.out_of_range(
                    "top_logprobs",
                    &format!("an integer in [0, {MAX_TOP_LOGPROBS}]"),
                    k,
                ));
            }
            Some(k as usize)
        }
        (_, Some(_)) => {
            return Err(ApiError::invalid(
                "top_logprobs",
                "`top_logprobs` needs `logprobs: true`",
            ))
        }
        (_, None) => None,
    };

    let stream_options = match top.get("stream_options") {
        None => None,
        Some(v) => {
            let f = Fields::of(v, "stream_options")?;
            Some(f.bool("include_usage")?.unwrap_or(false))
        }
    };
    let stream = match (top.bool("stream")?.unwrap_or(false), stream_options) {
        (true, include_usage) => Some(StreamOptions {
            include_usage: include_usage.unwrap_or(false),
        }),
        (false, Some(_)) => {
            return Err(ApiError::invalid(
                "stream_options",
                "`stream_options` is only allowed with `stream: true`",
            ))
        }
        (false, None) => None,
    };

    Ok(ChatRequest {
        messages,
        media,
        sampling,
        stop,
        logprobs,
        stream,
    })
}

/// Features a client may rely on that this server does not have: refusing them is better
/// than silently answering something else.
fn unsupported_features(top: &Fields<'_>) -> Result<()> {
    if let Some(tools) = top.get("tools") {
        if tools.as_array().is_none_or(|a| !a.is_empty()) {
            return Err(ApiError::invalid(
                "tools",
                "tool calling is not supported by this server; remove `tools`",
            ));
        }
    }
    if let Some(bias) = top.get("logit_bias") {
        if bias.as_object().is_none_or(|m| !m.is_empty()) {
            return Err(ApiError::invalid(
                "logit_bias",
                "`logit_bias` is not supported by this server",
            ));
        }
    }
    if let Some(format) = top.get("response_format") {
        let f = Fields::of(format, "response_format")?;
        match f.str("type")? {
            None | Some("text") => {}
            Some(other) => {
                return Err(ApiError::invalid(
                    "response_format",
                    format!(
                        "`response_format` `{other}` is not supported (no constrained \
                         decoding); only `text`"
                    ),
                ))
            }
        }
    }
    Ok(())
}

fn sampling(top: &Fields<'_>) -> Result<SamplingParams> {
    let d = SamplingParams::default();
    let top_k = match top.int("top_k")? {
        None | Some(-1) | Some(0) => None,
        Some(k) if k > 0 => Some(k as usize),
        Some(k) => {
            return Err(top.out_of_range("top_k", "a positive integer (or -1 / 0 for no limit)", k))
        }
    };
    Ok(SamplingParams {
        // OpenAI's default is 1 (sampling); greedy decoding is `temperature: 0`.
        temperature: top.f64_in("temperature", 0.0, 2.0, false)?.unwrap_or(1.0),
        top_k,
        top_p: top.f64_in("top_p", 0.0, 1.0, true)?.unwrap_or(d.top_p),
        min_p: top.f64_in("min_p", 0.0, 1.0, false)?.unwrap_or(d.min_p),
        repetition_penalty: match top.f64("repetition_penalty")? {
            None => d.repetition_penalty,
            Some(x) if x > 0.0 => x as f32,
            Some(x) => return Err(top.out_of_range("repetition_penalty", "> 0 (1 = off)", x)),
        },
        presence_penalty: top
            .f64_in("presence_penalty", -2.0, 2.0, false)?
            .unwrap_or(d.presence_penalty),
        frequency_penalty: top
            .f64_in("frequency_penalty", -2.0, 2.0, false)?
            .unwrap_or(d.frequency_penalty),
        // Any integer is a seed; negative ones keep their bits.
        seed: top.int("seed")?.map(|s| s as u64),
    })
}

fn stop_rules(top: &Fields<'_>, cx: &ParseContext<'_>) -> Result<StopRules> {
    // `max_completion_tokens` replaced `max_tokens` in OpenAI's API; the newer name wins.
    let key = if top.get("max_completion_tokens").is_some() {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    let room = cx.context_length.saturating_sub(1).max(1);
    let max_new_tokens = match top.int(key)? {
        None => cx.limits.max_tokens_default.min(room),
        Some(n) if n < 1 => return Err(top.out_of_range(key, "a positive integer", n)),
        Some(n) if n as u64 > room as u64 => {
            return Err(top.out_of_range(
                key,
                &format!(
                    "at most {room}: the model's context is {} tokens, prompt included",
                    cx.context_length
                ),
                n,
            ))
        }
        Some(n) => n as usize,
    };

    let stop_strings = match top.get("stop") {
        None => vec![],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            if items.len() > MAX_STOP_STRINGS {
                return Err(top.out_of_range(
                    "stop",
                    &format!("at most {MAX_STOP_STRINGS} strings"),
                    format!("{} strings", items.len()),
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(ApiError::invalid(
                        "stop",
                        format!("`stop[{i}]` must be a string, got {}", type_name(other)),
                    )),
                })
                .collect::<Result<Vec<_>>>()?
        }
        Some(v) => return Err(top.wrong("stop", "a string or a list of strings", v)),
    };
    if stop_strings.iter().any(|s| s.is_empty()) {
        return Err(ApiError::invalid(
            "stop",
            "`stop` strings must not be empty",
        ));
    }

    // Extensions (as vLLM spells them): extra stop ids, and generating past end-of-sequence.
    let stop_token_ids = match top.get("stop_token_ids") {
        None => vec![],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "stop_token_ids",
                            format!("`stop_token_ids` must hold token ids, got {v}"),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?,
        Some(v) => return Err(top.wrong("stop_token_ids", "a list of token ids", v)),
    };
    Ok(StopRules {
        max_new_tokens,
        stop_strings,
        stop_token_ids,
        ignore_eos: top.bool("ignore_eos")?.unwrap_or(false),
        // Without an explicit max_tokens the default shrinks to what the prompt leaves.
        clamp_to_context: top.int(key)?.is_none(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use onevision_processor::{Part, Role};
    use serde_json::json;

    use messages::BASE64;

    fn cx(limits: &Limits) -> ParseContext<'_> {
        ParseContext {
            served_model_name: "m",
            context_length: 4096,
            limits,
        }
    }

    fn parse(v: Value) -> Result<ChatRequest> {
        let limits = Limits::default();
        chat_request(&v, &cx(&limits))
    }

    #[test]
    fn minimal_request_gets_openai_defaults() {
        let r = parse(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
            .expect("valid");
        assert_eq!(r.messages, vec![Message::text(Role::User, "hi")]);
        assert_eq!(r.sampling.temperature, 1.0);
        assert_eq!(r.stop.max_new_tokens, Limits::default().max_tokens_default);
        assert!(r.stream.is_none() && r.logprobs.is_none() && r.media.is_empty());
    }

    #[test]
    fn parts_and_media_keep_their_order() {
        let png = BASE64.encode(b"\x89PNG....");
        let r = parse(json!({"messages": [
            {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}"), "detail": "high"}},
                {"type": "video_url", "video_url": {"url": "https://example.com/v.mp4", "num_frames": 8}},
                {"type": "text", "text": "what?"}
            ]},
        ], "stream": true, "stream_options": {"include_usage": true},
           "logprobs": true, "top_logprobs": 3, "stop": ["a", "b"], "max_completion_tokens": 7}))
        .expect("valid");
        assert_eq!(
            r.messages[1].parts,
            vec![Part::Image, Part::Video, Part::Text("what?".into())]
        );
        assert_eq!(r.media.len(), 2);
        assert_eq!(r.media[1].kind, MediaKind::Video { frames: 8 });
        assert!(matches!(&r.media[0].source, MediaSource::Inline(b) if b.starts_with(b"\x89PNG")));
        assert_eq!(
            r.stream,
            Some(StreamOptions {
                include_usage: true
            })
        );
        assert_eq!(r.logprobs, Some(3));
        assert_eq!(r.stop.stop_strings, vec!["a", "b"]);
        assert_eq!(r.stop.max_new_tokens, 7);
    }

    #[test]
    fn file_urls_are_normalized() {
        let r = parse(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "file:///srv/media/../etc/a%20b.png"}}]}]}))
        .expect("valid");
        assert!(
            matches!(&r.media[0].source, MediaSource::Local(p) if p == std::path::Path::new("/srv/etc/a b.png"))
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"messages": "hi"}), "messages"),
            (
                json!({"messages": [{"role": "user", "content": 5}]}),
                "messages[0].content",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "temperature": 5}),
                "temperature",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}),
                "top_logprobs",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA", "num_frames": 1000}}]}]}),
                "messages[0].content[0].video_url.num_frames",
            ),
        ];
        for (body, param) in cases {
            let e = parse(body.clone()).expect_err(&body.to_string());
            assert_eq!(e.status.as_u16(), 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
        }
        let e = parse(json!({"model": "other", "messages": []})).expect_err("wrong model");
        assert_eq!(e.status.as_u16(), 404);
    }
}
