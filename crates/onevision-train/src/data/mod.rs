//! Training samples in LLaVA-NeXT's formats (`.json` lists, `.jsonl` lines, mixture `.yaml`
//! files), read as they are in the wild and validated before any step runs.

/// Who speaks a turn. LLaVA-NeXT writes `"human"` / `"gpt"`; `"user"` / `"assistant"` are
/// accepted too, as its `preprocess_qwen` maps roles through `roles.get(role, role)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    Human,
    Gpt,
}

/// One turn of a conversation, after LLaVA-NeXT's `preprocess_multimodal` rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub from: Speaker,
    pub value: String,
}
