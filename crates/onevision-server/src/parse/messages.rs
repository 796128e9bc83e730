//! `messages`: roles, content parts, and the media sources of `image_url` / `video_url`
//! parts (data URIs decoded here, URLs only classified).

use base64::engine::{general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig};
use base64::Engine as _;
use onevision_processor::{Message, Part, Role};
use serde_json::Value;

use super::fields::Fields;
use super::{MediaItem, MediaKind, MediaSource, Result, DEFAULT_VIDEO_FRAMES};
use crate::error::ApiError;
use crate::Limits;

pub(super) fn messages(
    top: &Fields<'_>,
    limits: &Limits,
    media: &mut Vec<MediaItem>,
) -> Result<Vec<Message>> {
    let list = match top.get("messages") {
        None => {
            return Err(ApiError::invalid(
                "messages",
                "`messages` is required: a list of {\"role\", \"content\"} objects",
            ))
        }
        Some(Value::Array(list)) => list,
        Some(v) => return Err(top.wrong("messages", "a list of messages", v)),
    };
    if list.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` is empty; send at least one message",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| message(m, &format!("messages[{i}]"), limits, media))
        .collect()
}

fn message(v: &Value, path: &str, limits: &Limits, media: &mut Vec<MediaItem>) -> Result<Message> {
    let f = Fields::of(v, path)?;
    let role = match f.str("role")? {
        None => {
            return Err(ApiError::invalid(
                f.param("role"),
                format!("`{path}.role` is required: system, user or assistant"),
            ))
        }
        // OpenAI's newer name for the system role.
        Some("system") | Some("developer") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some(r @ ("tool" | "function")) => {
            return Err(ApiError::invalid(
                f.param("role"),
                format!("`{path}.role` `{r}` is not supported: this server has no tool calling"),
            ))
        }
        Some(other) => {
            return Err(ApiError::invalid(
                f.param("role"),
                format!(
                    "`{path}.role` must be system, user or assistant, got `{}`",
                    truncate(other, 40)
                ),
            ))
        }
    };
    let content_path = f.param("content");
    let parts = match f.get("content") {
        None => {
            return Err(ApiError::invalid(
                &content_path,
                format!("`{content_path}` is required: a string or a list of content parts"),
            ))
        }
        Some(Value::String(s)) => vec![Part::Text(s.clone())],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(j, item)| part(item, &format!("{content_path}[{j}]"), role, limits, media))
            .collect::<Result<Vec<_>>>()?,
        Some(v) => return Err(f.wrong("content", "a string or a list of content parts", v)),
    };
    Ok(Message::new(role, parts))
}

fn part(
    v: &Value,
    path: &str,
    role: Role,
    limits: &Limits,
    media: &mut Vec<MediaItem>,
) -> Result<Part> {
    let f = Fields::of(v, path)?;
    let kind = f.str("type")?.ok_or_else(|| {
        ApiError::invalid(
            f.param("type"),
            format!("`{path}.type` is required: text, image_url or video_url"),
        )
    })?;
    let media_kind = match kind {
        "text" => {
            let text = f.str("text")?.ok_or_else(|| {
                ApiError::invalid(f.param("text"), format!("`{path}.text` is required"))
            })?;
            return Ok(Part::Text(text.to_string()));
        }
        "image_url" => MediaKind::Image,
        "video_url" => MediaKind::Video {
            frames: DEFAULT_VIDEO_FRAMES.min(limits.max_video_frames),
        },
        other => {
            return Err(ApiError::invalid(
                f.param("type"),
                format!(
                    "`{path}.type` must be text, image_url or video_url, got `{}`",
                    truncate(other, 40)
                ),
            ))
        }
    };
    if role != Role::User {
        return Err(ApiError::invalid(
            path,
            format!(
                "`{path}`: only user messages may hold images and videos, this is a {} message",
                role.as_str()
            ),
        ));
    }
    let param = f.param(kind);
    // `{"url": ...}` as OpenAI sends it; a bare string is accepted too.
    let (url, media_kind) = match f.get(kind) {
        Some(Value::String(url)) => (url.as_str(), media_kind),
        Some(obj @ Value::Object(_)) => {
            let inner = Fields::of(obj, &param)?;
            let url = inner.str("url")?.ok_or_else(|| {
                ApiError::invalid(inner.param("url"), format!("`{param}.url` is required"))
            })?;
            let media_kind = match media_kind {
                MediaKind::Video { frames } => MediaKind::Video {
                    frames: match inner.int("num_frames")? {
                        None => frames,
                        Some(n) if n >= 1 && n as u64 <= limits.max_video_frames as u64 => {
                            n as usize
                        }
                        Some(n) => {
                            return Err(inner.out_of_range(
                                "num_frames",
                                &format!(
                                    "an integer in [1, {}] (this server's frame limit)",
                                    limits.max_video_frames
                                ),
                                n,
                            ))
                        }
                    },
                },
                image => image,
            };
            (url, media_kind)
        }
        Some(v) => return Err(f.wrong(kind, "an object {\"url\": ...}", v)),
        None => {
            return Err(ApiError::invalid(
                &param,
                format!("`{param}` is required: {{\"url\": ...}}"),
            ))
        }
    };
    let source = media_source(url, &param, media_kind)?;
    media.push(MediaItem {
        param,
        kind: media_kind,
        source,
    });
    Ok(match media_kind {
        MediaKind::Image => Part::Image,
        MediaKind::Video { .. } => Part::Video,
    })
}

/// At most `n` characters of `s`, for echoing user input in messages.
pub fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Base64 as clients write it: with or without padding.
pub(super) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn media_source(url: &str, param: &str, kind: MediaKind) -> Result<MediaSource> {
    let what = match kind {
        MediaKind::Image => "an image",
        MediaKind::Video { .. } => "a video",
    };
    if let Some(rest) = url.strip_prefix("data:") {
        return data_uri(rest, param, kind).map(MediaSource::Inline);
    }
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http") | Some("https") | Some("file") => {}
        _ => {
            return Err(ApiError::invalid(
                param,
                format!(
                    "`{param}.url` must be a data: URI, an http(s):// URL or a file:// URL of \
                     {what}, got `{}`",
                    truncate(url, 60)
                ),
            ))
        }
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        ApiError::invalid(
            param,
            format!(
                "`{param}.url` is not a valid URL ({e}): `{}`",
                truncate(url, 60)
            ),
        )
    })?;
    if parsed.scheme() == "file" {
        // `to_file_path` percent-decodes and refuses hosts other than "" and "localhost".
        let path = parsed.to_file_path().map_err(|()| {
            ApiError::invalid(
                param,
                format!(
                    "`{param}.url` must be file:///absolute/path (no host), got `{}`",
                    truncate(url, 60)
                ),
            )
        })?;
        Ok(MediaSource::Local(path))
    } else {
        Ok(MediaSource::Remote(parsed))
    }
}

/// `[<mime>][;param]*;base64,<data>` (the part after `data:`) -> the decoded bytes.
fn data_uri(rest: &str, param: &str, kind: MediaKind) -> Result<Vec<u8>> {
    let Some((header, data)) = rest.split_once(',') else {
        return Err(ApiError::invalid(
            param,
            format!("`{param}.url` is not a data URI: no `,` after `data:<type>;base64`"),
        ));
    };
    let mut fields = header.split(';');
    let mime = fields
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if !fields.any(|p| p.trim().eq_ignore_ascii_case("base64")) {
        return Err(ApiError::invalid(
            param,
            format!("`{param}.url`: only base64 data URIs are supported (data:<type>;base64,...)"),
        ));
    }
    let type_ok = match kind {
        MediaKind::Image => {
            mime.is_empty() || mime.starts_with("image/") || mime == "application/octet-stream"
        }
        MediaKind::Video { .. } => {
            mime.is_empty()
                || mime.starts_with("video/")
                || mime == "image/gif"
                || mime == "application/octet-stream"
        }
    };
    if !type_ok {
        let expected = match kind {
            MediaKind::Image => "an image type (data:image/png;base64,...)",
            MediaKind::Video { .. } => "a video type (data:video/mp4;base64,...)",
        };
        return Err(ApiError::invalid(
            param,
            format!(
                "`{param}.url` is a data URI of type `{}`; expected {expected}",
                truncate(&mime, 40)
            ),
        ));
    }
    let decoded = if data.bytes().any(|b| b.is_ascii_whitespace()) {
        let compact: Vec<u8> = data.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        BASE64.decode(compact)
    } else {
        BASE64.decode(data)
    }
    .map_err(|e| ApiError::invalid(param, format!("`{param}.url` holds invalid base64: {e}")))?;
    if decoded.is_empty() {
        return Err(ApiError::invalid(
            param,
            format!("`{param}.url` is an empty data URI; expected the bytes of the file"),
        ));
    }
    Ok(decoded)
}
