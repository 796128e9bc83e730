//! The checkpoint's `tokenizer.json` through the `tokenizers` crate (the library transformers'
//! fast tokenizers run on), and the ids of the tokens the prompt side needs.

use std::path::Path;

use tokenizers::Tokenizer;

use super::TokenizerConfig;
use crate::{Error, Result};

/// Ids of the special tokens the processor and the generation loop use. `None` when the
/// tokenizer has no such token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpecialTokens {
    /// `<image>` (or `tokenizer_config.json`'s `image_token`), an added token.
    pub image: Option<u32>,
    /// `<video>` (or `video_token`), an added token.
    pub video: Option<u32>,
    /// `eos_token` of `tokenizer_config.json`, else `<|im_end|>`.
    pub eos: Option<u32>,
    /// `pad_token` of `tokenizer_config.json`, else `<|endoftext|>`.
    pub pad: Option<u32>,
    /// `bos_token` of `tokenizer_config.json` (null for Qwen2).
    pub bos: Option<u32>,
}

/// A loaded `tokenizer.json`.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    special: SpecialTokens,
}

impl TextTokenizer {
    /// Loads `dir/tokenizer.json`, and `dir/tokenizer_config.json` if present for the names of
    /// the eos/pad/bos tokens.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let mut inner = Tokenizer::from_bytes(&bytes)
            .map_err(|e| Error::Tokenizer(format!("cannot load {}: {e}", path.display())))?;
        // transformers' processor neither truncates nor pads unless asked to, whatever the
        // tokenizer.json says.
        inner
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        inner.with_padding(None);
        let cfg = TokenizerConfig::from_dir(dir)?;
        let special = special_tokens(&inner, &cfg, dir)?;
        Ok(Self { inner, special })
    }

    /// The ids of `text`, as transformers' `tokenizer(text)` gives them (special tokens of the
    /// post-processor added, which for Qwen2 is none). Special tokens written in the text,
    /// such as `<|im_start|>` or `<image>`, become their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner
            .encode_fast(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::Tokenizer(format!("cannot encode: {e}")))
    }

    /// The text of `ids`; with `skip_special`, special tokens are left out.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| Error::Tokenizer(format!("cannot decode {} ids: {e}", ids.len())))
    }

    /// The id of a token (added tokens included).
    pub fn token_id(&self, tok: &str) -> Option<u32> {
        self.inner.token_to_id(tok)
    }

    /// The token of an id.
    pub fn id_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn special(&self) -> &SpecialTokens {
        &self.special
    }

    /// The `<image>` id, or an error that says the tokenizer has none.
    pub fn image_id(&self) -> Result<u32> {
        self.special
            .image
            .ok_or_else(|| missing("an added <image> token (image_token)"))
    }

    /// The `<video>` id, or an error that says the tokenizer has none.
    pub fn video_id(&self) -> Result<u32> {
        self.special
            .video
            .ok_or_else(|| missing("an added <video> token (video_token)"))
    }

    /// The end-of-turn id, or an error that says the tokenizer has none.
    pub fn eos_id(&self) -> Result<u32> {
        self.special
            .eos
            .ok_or_else(|| missing("an eos token (eos_token or <|im_end|>)"))
    }

    /// The underlying tokenizer, e.g. for incremental decoding.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

fn missing(what: &str) -> Error {
    Error::Tokenizer(format!(
        "the tokenizer has no {what}; a LLaVA-OneVision checkpoint's tokenizer.json must define it"
    ))
}

fn special_tokens(inner: &Tokenizer, cfg: &TokenizerConfig, dir: &Path) -> Result<SpecialTokens> {
    let added = inner.get_added_tokens_decoder();
    // A token named in tokenizer_config.json must exist.
    let named = |key: &str, name: &Option<String>| -> Result<Option<u32>> {
        match name {
            None => Ok(None),
            Some(tok) => inner
                .token_to_id(tok)
                .map(Some)
                .ok_or_else(|| Error::Config {
                    what: format!("{} key {key:?}", dir.join(TokenizerConfig::FILE).display()),
                    reason: format!("names {tok:?}, which is not in tokenizer.json"),
                }),
        }
    };
    // A placeholder only works if it is an added token: those are cut out of the text before
    // BPE, which is what makes id-level expansion equal transformers' text-level expansion.
    let placeholder = |key: &str, name: &Option<String>, default: &str| -> Result<Option<u32>> {
        let tok = name.as_deref().unwrap_or(default);
        match inner.token_to_id(tok) {
            Some(id) if added.contains_key(&id) => Ok(Some(id)),
            Some(id) => Err(Error::Config {
                what: format!("{} token {tok:?}", dir.join("tokenizer.json").display()),
                reason: format!(
                    "id {id} is an ordinary vocabulary entry, but the {key} placeholder must be an \
                     added (special) token so that the text is split around it"
                ),
            }),
            None if name.is_some() => named(key, name),
            None => Ok(None),
        }
    };
    let or_default = |id: Option<u32>, default: &str| id.or_else(|| inner.token_to_id(default));
    Ok(SpecialTokens {
        image: placeholder("image_token", &cfg.image_token, "<image>")?,
        video: placeholder("video_token", &cfg.video_token, "<video>")?,
        eos: or_default(named("eos_token", &cfg.eos_token)?, "<|im_end|>"),
        pad: or_default(named("pad_token", &cfg.pad_token)?, "<|endoftext|>"),
        bos: named("bos_token", &cfg.bos_token)?,
    })
}
