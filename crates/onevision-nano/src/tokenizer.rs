//! The nano model's own byte-level BPE tokenizer, trained (the tokenizers crate's trainer) over
//! the procedural world's text, with Qwen2's normalizer, pre-tokenizer regex and byte-level
//! decoder, and Qwen2's special tokens placed after the learned vocabulary as Qwen2 places them:
//! `<|endoftext|>` (padding), `<|im_start|>`, `<|im_end|>` (end of turn, EOS), then `<image>`
//! and `<video>` (the placeholders the llava-hf processor expands).
//!
//! Qwen2's regex splits every digit on its own, so numbers are read and written digit by digit
//! whatever the vocabulary; words of the world become single tokens once they are frequent.

use std::path::Path;

use serde_json::json;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::byte_level::ByteLevel as ByteLevelProcessor;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::io;
use crate::{Error, Result};

/// Qwen2's pre-tokenizer pattern (its `tokenizer.json`).
pub const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

pub const PAD: &str = "<|endoftext|>";
pub const IM_START: &str = "<|im_start|>";
pub const IM_END: &str = "<|im_end|>";
pub const IMAGE: &str = "<image>";
pub const VIDEO: &str = "<video>";
/// In id order, after the learned vocabulary.
pub const SPECIALS: [&str; 5] = [PAD, IM_START, IM_END, IMAGE, VIDEO];

/// Learned merges plus the 256 byte symbols; the specials come on top.
pub const DEFAULT_LEARNED_VOCAB: usize = 1024;

/// A trained tokenizer and the ids of its specials.
pub struct Trained {
    pub tokenizer: Tokenizer,
    pub pad_id: u32,
    pub im_start_id: u32,
    pub im_end_id: u32,
    pub image_id: u32,
    pub video_id: u32,
}

impl Trained {
    /// Every id, specials included.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }
}

fn tk(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

/// Trains a byte-level BPE of at most `learned_vocab` entries (the 256 bytes included) over
/// `texts`, then appends the specials. Deterministic for the same texts (the trainer breaks
/// count ties by the pair itself).
pub fn train(texts: &[String], learned_vocab: usize) -> Result<Trained> {
    if learned_vocab < 256 {
        return Err(Error::Invalid(format!(
            "a byte-level BPE vocabulary of {learned_vocab} cannot hold the 256 byte symbols; \
             expected at least 256"
        )));
    }
    if texts.iter().all(|t| t.is_empty()) {
        return Err(Error::Invalid(
            "no text to train the tokenizer on; expected the world's samples".into(),
        ));
    }
    let split = Split::new(
        SplitPattern::Regex(QWEN2_PATTERN.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(tk)?;
    let pre = Sequence::new(vec![
        PreTokenizerWrapper::Split(split),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)),
    ]);
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_normalizer(Some(NFC)).map_err(tk)?;
    tokenizer.with_pre_tokenizer(Some(pre));
    tokenizer.with_post_processor(Some(ByteLevelProcessor::new(true, true, true)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::new(false, false, false)));
    let mut trainer = TrainerWrapper::BpeTrainer(
        BpeTrainer::builder()
            .vocab_size(learned_vocab)
            .min_frequency(2)
            .show_progress(false)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build(),
    );
    tokenizer
        .train(&mut trainer, texts.iter().map(|s| s.as_str()))
        .map_err(tk)?;
    let specials: Vec<AddedToken> = SPECIALS
        .iter()
        .map(|s| AddedToken::from(*s, true).normalized(false))
        .collect();
    tokenizer.add_special_tokens(specials).map_err(tk)?;
    let id = |s: &str| {
        tokenizer
            .token_to_id(s)
            .ok_or_else(|| Error::Tokenizer(format!("special token {s} missing after training")))
    };
    Ok(Trained {
        pad_id: id(PAD)?,
        im_start_id: id(IM_START)?,
        im_end_id: id(IM_END)?,
        image_id: id(IMAGE)?,
        video_id: id(VIDEO)?,
        tokenizer,
    })
}

/// Writes `tokenizer.json` and `tokenizer_config.json` (Qwen2's settings: no BOS, EOS
/// `<|im_end|>`, pad `<|endoftext|>`, right padding, the image/video tokens named) into `dir`.
pub fn save(trained: &Trained, dir: &Path) -> Result<()> {
    let path = dir.join("tokenizer.json");
    trained.tokenizer.save(&path, false).map_err(tk)?;
    let config = json!({
        "add_prefix_space": false,
        "bos_token": null,
        "clean_up_tokenization_spaces": false,
        "eos_token": IM_END,
        "errors": "replace",
        "extra_special_tokens": {"image_token": IMAGE, "video_token": VIDEO},
        "model_max_length": 32768,
        "pad_token": PAD,
        "padding_side": "right",
        "split_special_tokens": false,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": null
    });
    let path = dir.join("tokenizer_config.json");
    std::fs::write(&path, serde_json::to_string_pretty(&config)? + "\n").map_err(io(&path))
}
