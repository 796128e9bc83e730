//! From a conversation to the token ids LLaVA-OneVision consumes (spec §2.5, §4): the
//! checkpoint's chat template rendered as transformers renders it, the text tokenized with the
//! checkpoint's `tokenizer.json`, and each `<image>`/`<video>` id expanded into as many copies
//! as the media item has feature rows.
//!
//! transformers expands the *text* (each `<image>` becomes n copies of the string) and then
//! tokenizes; we tokenize once and expand the *ids*. The two agree because `<image>` and
//! `<video>` are special added tokens: the tokenizer cuts them out of the text before BPE runs,
//! so the text around them is encoded the same whichever way (checked against transformers by
//! `tests/prompt.rs` on the fixtures in `fixtures/tokenizer/`).

mod expand;
mod template;
mod tokenizer;

pub use expand::{expand_placeholders, expand_placeholders_with_ranges, Expanded};
pub use template::ChatTemplate;
pub use tokenizer::{SpecialTokens, TextTokenizer};

use serde::{Deserialize, Serialize};

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The name chat templates see in `message['role']`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One piece of a message. In JSON this is transformers' content item:
/// `{"type": "text", "text": "..."}`, `{"type": "image"}`, `{"type": "video"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "text", rename_all = "lowercase")]
pub enum Part {
    Text(String),
    /// Where an image goes; the llava-hf template puts every image of a message first.
    Image,
    /// Where a video goes; rendered after the images, before the text.
    Video,
}

/// One turn of a conversation. In JSON, transformers' message shape:
/// `{"role": "user", "content": [parts...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    #[serde(rename = "content")]
    pub parts: Vec<Part>,
}

impl Message {
    pub fn new(role: Role, parts: Vec<Part>) -> Self {
        Self { role, parts }
    }

    /// A message with a single text part.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Self::new(role, vec![Part::Text(text.into())])
    }

    /// Images in this message, in order.
    pub fn image_count(&self) -> usize {
        self.parts
            .iter()
            .filter(|p| matches!(p, Part::Image))
            .count()
    }

    /// Videos in this message, in order.
    pub fn video_count(&self) -> usize {
        self.parts
            .iter()
            .filter(|p| matches!(p, Part::Video))
            .count()
    }
}

/// Keys of `tokenizer_config.json` that the prompt side reads. Both the template (its
/// `bos_token`/`eos_token` variables, its fallback `chat_template`) and the tokenizer (eos and
/// pad ids) use them.
#[derive(Debug, Default)]
struct TokenizerConfig {
    bos_token: Option<String>,
    eos_token: Option<String>,
    pad_token: Option<String>,
    unk_token: Option<String>,
    image_token: Option<String>,
    video_token: Option<String>,
    chat_template: Option<serde_json::Value>,
}

impl TokenizerConfig {
    const FILE: &'static str = "tokenizer_config.json";

    /// Reads `dir/tokenizer_config.json`; an absent file is an empty config.
    fn from_dir(dir: &std::path::Path) -> crate::Result<Self> {
        let path = dir.join(Self::FILE);
        match read_json_if_exists(&path)? {
            Some(v) => Self::from_json(&v, &path),
            None => Ok(Self::default()),
        }
    }

    fn from_json(v: &serde_json::Value, path: &std::path::Path) -> crate::Result<Self> {
        use serde_json::Value;
        let obj = v.as_object().ok_or_else(|| crate::Error::Config {
            what: path.display().to_string(),
            reason: "expected a JSON object".into(),
        })?;
        // A token is a string, an AddedToken dict (`{"content": ..., "__type": "AddedToken"}`,
        // the transformers-4 form) or null.
        let token = |key: &str| -> crate::Result<Option<String>> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Object(o)) => match o.get("content") {
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    _ => Err(bad_key(path, key, "an object without a string \"content\"")),
                },
                Some(other) => Err(bad_key(path, key, &format!("{other}"))),
            }
        };
        // transformers 5 keeps named extra tokens under "extra_special_tokens" (a map), 4.x
        // had them as top-level keys.
        let extra = |key: &str| -> Option<String> {
            obj.get("extra_special_tokens")
                .and_then(|e| e.get(key))
                .or_else(|| obj.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Ok(Self {
            bos_token: token("bos_token")?,
            eos_token: token("eos_token")?,
            pad_token: token("pad_token")?,
            unk_token: token("unk_token")?,
            image_token: extra("image_token"),
            video_token: extra("video_token"),
            chat_template: obj.get("chat_template").filter(|v| !v.is_null()).cloned(),
        })
    }
}

fn bad_key(path: &std::path::Path, key: &str, found: &str) -> crate::Error {
    crate::Error::Config {
        what: format!("{} key {key:?}", path.display()),
        reason: format!(
            "expected a token string, an {{\"content\": ...}} object or null, found {found}"
        ),
    }
}

/// Reads a file as text; `Ok(None)` when it does not exist.
fn read_if_exists(path: &std::path::Path) -> crate::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(crate::Error::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn read_json_if_exists(path: &std::path::Path) -> crate::Result<Option<serde_json::Value>> {
    let Some(text) = read_if_exists(path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| crate::Error::Config {
            what: path.display().to_string(),
            reason: format!("not valid JSON: {e}"),
        })
}
