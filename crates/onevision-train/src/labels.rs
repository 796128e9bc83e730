//! Templates and labels, token for token as LLaVA-NeXT makes them (LLaVA-VL/LLaVA-NeXT,
//! `llava/train/train.py` `preprocess_qwen` / `preprocess_plain`, `llava/mm_utils.py`
//! `tokenizer_image_token`, and the splice and truncation of `llava/model/llava_arch.py`
//! `prepare_inputs_labels_for_multimodal`). See shared/spec/llava-onevision.md §5.2.
//!
//! Two steps, because the media token counts are known only once the images are processed:
//! [`encode`] renders a conversation with a [`Template`] and gives ids with one
//! [`MEDIA_MARKER`] where each `<image>` stood, and labels; [`expand`] replaces each marker by
//! its [`MediaSlot`]'s placeholder run (labels [`IGNORE_INDEX`]) and truncates to `max_length`.
//!
//! The checks against a Python port of those functions are in tests/labels.rs, on the fixtures
//! of tools/fixtures/make_train_label_fixtures.py.

use std::fmt;
use std::str::FromStr;

use onevision_processor::TextTokenizer;

use crate::data::{Speaker, Turn};
use crate::{Error, Result};

/// The label of a position that is not trained on (`llava/constants.py` `IGNORE_INDEX`, and
/// the `ignore_index` of torch's cross-entropy).
pub const IGNORE_INDEX: i64 = -100;

/// Where a medium (an image, or a whole video) stands in [`Encoded::ids`]: LLaVA-NeXT's
/// `IMAGE_TOKEN_INDEX`.
pub const MEDIA_MARKER: i64 = -200;

/// The marker written in the data (`DEFAULT_IMAGE_TOKEN`); it stands for a video too.
pub const IMAGE_MARKER: &str = "<image>";

/// `preprocess_qwen`'s default system message.
pub const QWEN_SYSTEM_PROMPT: &str = "You are a helpful assistant.";

/// `conv_llava_plain.sep`, appended to the caption (`llava/conversation.py`).
const PLAIN_SEP: &str = "\n";

/// A conversation template, by its LLaVA-NeXT name (`--version`, our `--template`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Template {
    /// `plain` (stage 1): the image, the caption, `\n`; only the image is masked.
    Plain,
    /// `qwen_1_5` (the other stages): ChatML with the system prompt, assistant turns supervised.
    Qwen15,
}

impl Template {
    pub const ALL: [Template; 2] = [Template::Plain, Template::Qwen15];

    pub fn name(self) -> &'static str {
        match self {
            Template::Plain => "plain",
            Template::Qwen15 => "qwen_1_5",
        }
    }
}

impl FromStr for Template {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Template::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown template {s:?}; expected plain or qwen_1_5"
                ))
            })
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which tokens of a [`Template::Qwen15`] conversation carry a label (`--label-mask`).
/// [`Template::Plain`] has a single rule and ignores this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LabelMask {
    /// As the released models were trained: assistant turns, and also every `\n`,
    /// `<|im_start|>` and `<|im_end|>` token anywhere, system and user turns included
    /// (`preprocess_qwen`'s `unmask_tokens_idx` loop).
    #[default]
    Original,
    /// Assistant turns only (header and `<|im_end|>\n` included): the strict rule.
    AssistantOnly,
}

impl LabelMask {
    pub const ALL: [LabelMask; 2] = [LabelMask::Original, LabelMask::AssistantOnly];

    pub fn name(self) -> &'static str {
        match self {
            LabelMask::Original => "original",
            LabelMask::AssistantOnly => "assistant-only",
        }
    }
}

impl FromStr for LabelMask {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        LabelMask::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown label mask {s:?}; expected original or assistant-only"
                ))
            })
    }
}

impl fmt::Display for LabelMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rendered conversation before media expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, with [`MEDIA_MARKER`] where each `<image>` stood.
    pub ids: Vec<i64>,
    /// One per id: the id itself where trained on, else [`IGNORE_INDEX`]. Always
    /// [`IGNORE_INDEX`] at a marker (upstream drops those positions in the splice).
    pub labels: Vec<i64>,
}

impl Encoded {
    /// How many media the conversation refers to.
    pub fn num_markers(&self) -> usize {
        self.ids.iter().filter(|&&id| id == MEDIA_MARKER).count()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Renders `turns` (already through the data module's `preprocess_multimodal` rewrite) with
/// `template` and labels them with `mask`.
///
/// Errors ([`Error::Data`]) name what the conversation lacks: an empty conversation, a `plain`
/// sample that is not one human turn with a marker and one gpt turn; ([`Error::Processor`]) a
/// tokenizer without the tokens the template needs.
pub fn encode(
    tok: &TextTokenizer,
    turns: &[Turn],
    template: Template,
    mask: LabelMask,
) -> Result<Encoded> {
    match template {
        Template::Plain => encode_plain(tok, turns),
        Template::Qwen15 => encode_qwen(tok, turns, mask),
    }
}

/// `preprocess_plain`: the human turn is replaced by the bare marker (whatever else it held),
/// then `marker + caption + "\n"`; the marker's tokens are ignored.
fn encode_plain(tok: &TextTokenizer, turns: &[Turn]) -> Result<Encoded> {
    let [human, gpt] = turns else {
        return Err(Error::Data(format!(
            "the plain template (stage 1) takes exactly 2 turns, a human turn with {IMAGE_MARKER} \
             and the gpt caption; this conversation has {}",
            turns.len()
        )));
    };
    if human.from != Speaker::Human || gpt.from != Speaker::Gpt {
        return Err(Error::Data(format!(
            "the plain template (stage 1) takes a human turn then a gpt turn; this conversation \
             has {:?} then {:?}",
            human.from, gpt.from
        )));
    }
    if !human.value.contains(IMAGE_MARKER) {
        return Err(Error::Data(format!(
            "the plain template (stage 1) needs {IMAGE_MARKER} in the human turn (it trains \
             captions of images); the human turn is {:?}",
            preview(&human.value)
        )));
    }
    let ids = tokenizer_image_token(tok, &format!("{IMAGE_MARKER}{}{PLAIN_SEP}", gpt.value))?;
    // 1 for Qwen2 (no BOS): `len(tokenizer_image_token("<image>"))`.
    let masked = tokenizer_image_token(tok, IMAGE_MARKER)?.len();
    let labels = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            if i < masked || id == MEDIA_MARKER {
                IGNORE_INDEX
            } else {
                id
            }
        })
        .collect();
    Ok(Encoded { ids, labels })
}

/// `llava/mm_utils.py` `tokenizer_image_token`: the text is split at each `<image>` string, each
/// chunk tokenized on its own (`tokenizer(chunk)`, special tokens of the post-processor
/// included) and the chunks joined by [`MEDIA_MARKER`]; a leading BOS is kept once.
pub fn tokenizer_image_token(tok: &TextTokenizer, prompt: &str) -> Result<Vec<i64>> {
    let chunks = prompt
        .split(IMAGE_MARKER)
        .map(|chunk| tok.encode(chunk))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let bos = tok.special().bos;
    let leading = chunks.first().and_then(|c| c.first()).copied();
    // Bug-compatible: when the first chunk starts with BOS, one id is cut from the start of
    // every chunk, BOS or not.
    let offset = usize::from(bos.is_some() && leading == bos);
    let mut out = Vec::with_capacity(chunks.iter().map(Vec::len).sum::<usize>() + chunks.len());
    if let (1, Some(b)) = (offset, leading) {
        out.push(i64::from(b));
    }
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            out.push(MEDIA_MARKER);
        }
        out.extend(chunk.iter().skip(offset).map(|&id| i64::from(id)));
    }
    Ok(out)
}

/// The ids `preprocess_qwen` needs from the tokenizer.
struct ChatMlIds {
    im_start: u32,
    im_end: u32,
    /// The id of `"\n"`: `preprocess_qwen` hard-codes 198, which it is in Qwen2's vocabulary;
    /// we ask the tokenizer, so that a tokenizer with another vocabulary gets the same rule
    /// (the tiny test tokenizers' byte-level alphabet happens to put it at 198 too).
    /// `None` when "\n" is not one token (then only [`LabelMask::AssistantOnly`] works).
    newline: Option<u32>,
    /// `<image>` as an added token; `None` when the tokenizer has none (then no text may hold
    /// one).
    image: Option<u32>,
}

impl ChatMlIds {
    fn of(tok: &TextTokenizer, mask: LabelMask) -> Result<Self> {
        let special = |name: &str| {
            tok.token_id(name).ok_or_else(|| {
                tokenizer_error(format!(
                    "the qwen_1_5 template needs the token {name}, which the tokenizer lacks"
                ))
            })
        };
        let im_start = special("<|im_start|>")?;
        let im_end = special("<|im_end|>")?;
        let nl = encode_plain_text(tok, "\n")?;
        let newline = match nl.as_slice() {
            [id] => Some(*id),
            _ => None,
        };
        if newline.is_none() && mask == LabelMask::Original {
            return Err(tokenizer_error(format!(
                "the original label mask un-masks the \"\\n\" token, but this tokenizer \
                 encodes \"\\n\" as {} tokens; use --label-mask assistant-only",
                nl.len()
            )));
        }
        // `preprocess_qwen` adds <image> as a special token when the sample has media; ours
        // must already have it (every LLaVA-OneVision tokenizer does), as an added token, so
        // that the text is split around it rather than BPE'd.
        let image = tok.token_id(IMAGE_MARKER).filter(|id| {
            tok.inner()
                .get_added_tokens_decoder()
                .get(id)
                .is_some_and(|t| t.content == IMAGE_MARKER)
        });
        Ok(Self {
            im_start,
            im_end,
            newline,
            image,
        })
    }
}

/// `preprocess_qwen`.
fn encode_qwen(tok: &TextTokenizer, turns: &[Turn], mask: LabelMask) -> Result<Encoded> {
    let Some(first) = turns.first() else {
        return Err(Error::Data(
            "the conversation has no turns; a sample needs a human turn and a gpt turn".into(),
        ));
    };
    // Upstream drops one leading turn that is not the human's (only one).
    let turns = if first.from == Speaker::Human {
        turns
    } else {
        &turns[1..]
    };
    if turns.is_empty() {
        return Err(Error::Data(
            "the conversation has only a gpt turn, which the qwen_1_5 template drops (a leading \
             turn that is not the human's); a sample needs a human turn and a gpt turn"
                .into(),
        ));
    }
    let ids_of = ChatMlIds::of(tok, mask)?;
    if ids_of.image.is_none() && turns.iter().any(|t| t.value.contains(IMAGE_MARKER)) {
        return Err(tokenizer_error(format!(
            "the conversation holds {IMAGE_MARKER}, but the tokenizer has no added \
             {IMAGE_MARKER} token; use the checkpoint's tokenizer"
        )));
    }

    let mut ids: Vec<u32> = Vec::new();
    let mut labels: Vec<i64> = Vec::new();
    // Each turn is rendered and tokenized on its own, as upstream's one-message
    // `apply_chat_template` calls do (which tokenize with add_special_tokens=False).
    let mut push_turn = |role: &str, content: &str, supervised: bool| -> Result<()> {
        let turn = encode_plain_text(tok, &format!("<|im_start|>{role}\n{content}<|im_end|>\n"))?;
        if supervised {
            labels.extend(turn.iter().map(|&id| i64::from(id)));
        } else {
            labels.extend(std::iter::repeat_n(IGNORE_INDEX, turn.len()));
        }
        ids.extend(turn);
        Ok(())
    };
    push_turn("system", QWEN_SYSTEM_PROMPT, false)?;
    for turn in turns {
        match turn.from {
            Speaker::Human => push_turn("user", &turn.value, false)?,
            Speaker::Gpt => push_turn("assistant", &turn.value, true)?,
        }
    }

    if mask == LabelMask::Original {
        // Bug-compatible with preprocess_qwen's `unmask_tokens_idx = [198, im_start, im_end]`:
        // these tokens are trained on in every turn, the system's and the user's included.
        for (label, &id) in labels.iter_mut().zip(&ids) {
            if Some(id) == ids_of.newline || id == ids_of.im_start || id == ids_of.im_end {
                *label = i64::from(id);
            }
        }
    }
    let mut ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
    if let Some(image) = ids_of.image.map(i64::from) {
        for (id, label) in ids.iter_mut().zip(labels.iter_mut()) {
            if *id == image {
                *id = MEDIA_MARKER;
                *label = IGNORE_INDEX;
            }
        }
    }
    Ok(Encoded { ids, labels })
}

/// One medium's placeholder run: `count` copies of `token_id` (the `<image>` id for an image,
/// the `<video>` id for a video), as many as the model's features for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaSlot {
    pub token_id: u32,
    pub count: usize,
}

/// A sample as the model sees it: placeholders expanded, truncated to the maximum length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    pub input_ids: Vec<u32>,
    /// One per id; [`IGNORE_INDEX`] on every placeholder.
    pub labels: Vec<i64>,
    /// The expanded length before truncation, when the sample was truncated.
    pub truncated_from: Option<usize>,
}

impl Tokenized {
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
}

/// Why [`expand`] refused a sample. [`ExpandError::MediaTooLong`] is the one a trainer skips
/// and counts; the others are bugs in the data or the caller. Converts into [`Error::Data`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error(
        "the conversation has {markers} {IMAGE_MARKER} marker(s) but the sample has {slots} \
         media; each image, or the video, needs exactly one {IMAGE_MARKER} in a human turn"
    )]
    MarkerMismatch { markers: usize, slots: usize },
    #[error(
        "the media alone take {media} tokens, more than the maximum length of {max_length}; the \
         sample is skipped (raise --max-length, or use fewer or smaller images, or fewer frames)"
    )]
    MediaTooLong { media: usize, max_length: usize },
    #[error("the maximum length is 0; it must be at least 1 (--max-length)")]
    ZeroMaxLength,
    #[error("malformed encoding: {0}")]
    Malformed(String),
}

impl From<ExpandError> for Error {
    fn from(e: ExpandError) -> Self {
        Error::Data(e.to_string())
    }
}

/// The splice and truncation of `prepare_inputs_labels_for_multimodal`, on ids: marker `i`
/// becomes `slots[i].count` copies of `slots[i].token_id` with [`IGNORE_INDEX`] labels, then
/// ids and labels are cut to `max_length`, which therefore counts the media tokens.
///
/// As upstream, the cut may fall inside a placeholder run (upstream cuts the features there).
/// Upstream's collator also cuts the unexpanded ids at the same length first; with every count
/// at least 1 that changes nothing, except that it could drop a marker, which upstream then
/// misaligns and we refuse instead (markers are counted before any cut).
pub fn expand(
    encoded: &Encoded,
    slots: &[MediaSlot],
    max_length: usize,
) -> std::result::Result<Tokenized, ExpandError> {
    if encoded.ids.len() != encoded.labels.len() {
        return Err(ExpandError::Malformed(format!(
            "{} ids but {} labels",
            encoded.ids.len(),
            encoded.labels.len()
        )));
    }
    let markers = encoded.num_markers();
    if markers != slots.len() {
        return Err(ExpandError::MarkerMismatch {
            markers,
            slots: slots.len(),
        });
    }
    if max_length == 0 {
        return Err(ExpandError::ZeroMaxLength);
    }
    let media: usize = slots.iter().map(|s| s.count).sum();
    if media > max_length {
        return Err(ExpandError::MediaTooLong { media, max_length });
    }
    let full = encoded.ids.len() - markers + media;
    let keep = full.min(max_length);
    let mut input_ids = Vec::with_capacity(keep);
    let mut labels = Vec::with_capacity(keep);
    let mut slots = slots.iter();
    for (pos, (&id, &label)) in encoded.ids.iter().zip(&encoded.labels).enumerate() {
        let room = keep - input_ids.len();
        if room == 0 {
            break;
        }
        if id == MEDIA_MARKER {
            // Counted above: there is one slot per marker.
            let Some(slot) = slots.next() else { break };
            let n = slot.count.min(room);
            input_ids.extend(std::iter::repeat_n(slot.token_id, n));
            labels.extend(std::iter::repeat_n(IGNORE_INDEX, n));
        } else {
            let id = u32::try_from(id).map_err(|_| {
                ExpandError::Malformed(format!("id {id} at position {pos} is not a token id"))
            })?;
            input_ids.push(id);
            labels.push(label);
        }
    }
    Ok(Tokenized {
        input_ids,
        labels,
        truncated_from: (full > max_length).then_some(full),
    })
}

/// Ids of `text` with no special tokens added by the post-processor (what
/// `apply_chat_template` does); special tokens written in the text become their ids.
fn encode_plain_text(tok: &TextTokenizer, text: &str) -> Result<Vec<u32>> {
    tok.inner()
        .encode_fast(text, false)
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| tokenizer_error(format!("cannot encode {:?}: {e}", preview(text))))
}

fn tokenizer_error(msg: String) -> Error {
    Error::Processor(onevision_processor::Error::Tokenizer(msg))
}

/// The start of a long text, for messages.
fn preview(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(ids: &[i64]) -> Encoded {
        Encoded {
            ids: ids.to_vec(),
            labels: ids
                .iter()
                .map(|&i| if i == MEDIA_MARKER { IGNORE_INDEX } else { i })
                .collect(),
        }
    }

    const IMG: MediaSlot = MediaSlot {
        token_id: 9,
        count: 3,
    };

    #[test]
    fn names_parse_and_print() {
        for t in Template::ALL {
            assert_eq!(t.name().parse::<Template>().unwrap(), t);
            assert_eq!(t.to_string(), t.name());
        }
        for m in LabelMask::ALL {
            assert_eq!(m.name().parse::<LabelMask>().unwrap(), m);
        }
        assert_eq!(LabelMask::default(), LabelMask::Original);
        let e = "qwen".parse::<Template>().unwrap_err().to_string();
        assert!(e.contains("\"qwen\"") && e.contains("qwen_1_5"), "{e}");
        let e = "strict".parse::<LabelMask>().unwrap_err().to_string();
        assert!(e.contains("assistant-only"), "{e}");
    }

    #[test]
    fn expand_splices_each_marker() {
        let t = expand(
            &enc(&[1, MEDIA_MARKER, 2, MEDIA_MARKER]),
            &[
                IMG,
                MediaSlot {
                    token_id: 8,
                    count: 1,
                },
            ],
            100,
        )
        .unwrap();
        assert_eq!(t.input_ids, [1, 9, 9, 9, 2, 8]);
        assert_eq!(t.labels, [1, -100, -100, -100, 2, -100]);
        assert_eq!(t.truncated_from, None);
    }

    #[test]
    fn expand_truncates_counting_media() {
        let t = expand(&enc(&[1, MEDIA_MARKER, 2, 3]), &[IMG], 5).unwrap();
        assert_eq!(t.input_ids, [1, 9, 9, 9, 2]);
        assert_eq!(t.truncated_from, Some(6));
        // Inside the placeholder run, as upstream cuts inside the features.
        let t = expand(&enc(&[1, 4, MEDIA_MARKER, 2]), &[IMG], 3).unwrap();
        assert_eq!(t.input_ids, [1, 4, 9]);
        assert_eq!(t.labels, [1, 4, -100]);
        assert_eq!(t.truncated_from, Some(6));
        // Exactly max_length is not truncated.
        let t = expand(&enc(&[1, MEDIA_MARKER]), &[IMG], 4).unwrap();
        assert_eq!((t.len(), t.truncated_from), (4, None));
    }

    #[test]
    fn expand_errors() {
        assert_eq!(
            expand(&enc(&[1, MEDIA_MARKER]), &[IMG, IMG], 100),
            Err(ExpandError::MarkerMismatch {
                markers: 1,
                slots: 2
            })
        );
        assert_eq!(
            expand(&enc(&[1, 2]), &[IMG], 100),
            Err(ExpandError::MarkerMismatch {
                markers: 0,
                slots: 1
            })
        );
        assert_eq!(
            expand(&enc(&[MEDIA_MARKER, MEDIA_MARKER]), &[IMG, IMG], 5),
            Err(ExpandError::MediaTooLong {
                media: 6,
                max_length: 5
            })
        );
        // Media exactly max_length are kept (only the text after them is cut).
        let t = expand(&enc(&[MEDIA_MARKER, MEDIA_MARKER, 1]), &[IMG, IMG], 6).unwrap();
        assert_eq!((t.len(), t.truncated_from), (6, Some(7)));
        assert_eq!(expand(&enc(&[1]), &[], 0), Err(ExpandError::ZeroMaxLength));
        let bad = Encoded {
            ids: vec![1, 2],
            labels: vec![1],
        };
        assert!(matches!(
            expand(&bad, &[], 9),
            Err(ExpandError::Malformed(_))
        ));
        assert!(matches!(
            expand(&enc(&[1, -7]), &[], 9),
            Err(ExpandError::Malformed(_))
        ));
        let msg = Error::from(ExpandError::MediaTooLong {
            media: 6,
            max_length: 5,
        })
        .to_string();
        assert!(
            msg.contains("6 tokens") && msg.contains("--max-length"),
            "{msg}"
        );
    }

    #[test]
    fn preview_cuts_on_char_boundaries() {
        assert_eq!(preview("abc"), "abc");
        let long = "猫".repeat(100);
        assert_eq!(preview(&long), format!("{}...", "猫".repeat(80)));
    }
}
