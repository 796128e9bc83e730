//! Streaming text: generated ids -> text pieces that never split a UTF-8 character
//! ([`IncrementalDecoder`]), -> pieces that never show the start of a stop string
//! ([`StopStrings`]); and each token's own bytes for log-probability reports ([`TokenBytes`]).

use std::collections::HashMap;

use onevision_processor::TextTokenizer;
use tokenizers::DecoderWrapper;

use crate::Result;

/// Turns a growing id sequence into text pieces whose concatenation is the decode of all ids.
///
/// Decoding the whole sequence at every step costs O(n²) over a long answer; instead only a
/// window is decoded (the incremental scheme of vLLM's `detokenize_incrementally` and TGI's
/// `decode_token`): `ids[prefix_offset..read_offset]` are the tokens of the last piece
/// released, kept as left context so that decoders which treat the first token specially (a
/// SentencePiece leading space) give the same text as in the full decode, and
/// `ids[read_offset..]` are the tokens not released yet. A step decodes the window with and
/// without the new tokens and releases the difference, unless the window's text ends in
/// U+FFFD, the lossy decode of a character whose bytes have not all arrived.
#[derive(Debug, Default, Clone)]
pub struct IncrementalDecoder {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl IncrementalDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every id pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// How many ids the next step decodes: the last released piece's tokens plus those held.
    /// Stays small however long the answer grows, unless the model keeps producing bytes that
    /// are not UTF-8 (those are held, as in vLLM and TGI, until a whole character follows).
    pub fn window(&self) -> usize {
        self.ids.len() - self.prefix_offset
    }

    /// Adds one id; returns the text it completes (often empty: a partial character, or a
    /// special token, which decodes to nothing).
    pub fn push(&mut self, tokenizer: &TextTokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        self.release(tokenizer, false)
    }

    /// Releases whatever is still held, as decoded: a generation that ends inside a character
    /// ends with U+FFFD, as the full decode does.
    pub fn finish(&mut self, tokenizer: &TextTokenizer) -> Result<String> {
        self.release(tokenizer, true)
    }

    fn release(&mut self, tokenizer: &TextTokenizer, last: bool) -> Result<String> {
        if self.read_offset == self.ids.len() {
            return Ok(String::new());
        }
        let before = tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset], true)?;
        let after = tokenizer.decode(&self.ids[self.prefix_offset..], true)?;
        let complete = last || !after.ends_with('\u{FFFD}');
        if after.len() > before.len() && after.is_char_boundary(before.len()) && complete {
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            return Ok(after[before.len()..].to_string());
        }
        Ok(String::new())
    }
}

/// What [`StopStrings::push`] lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopScan {
    /// Text that is safe to show: it cannot be part of a stop string.
    pub emit: String,
    /// A stop string was found; `emit` ends right before it and nothing more follows.
    pub stopped: bool,
}

/// Finds stop strings in streamed text and holds back what could still become one.
///
/// Generation stops at the first moment the text contains a stop string; the answer ends right
/// before that occurrence (OpenAI `stop`). When one piece completes several stop strings, the
/// occurrence that ends first wins (then the one that starts first), which is the occurrence a
/// character-by-character stream would have stopped at: the result does not depend on how the
/// text was split into tokens.
#[derive(Debug, Clone, Default)]
pub struct StopStrings {
    stops: Vec<String>,
    /// Text received but not emitted: the longest suffix that is a proper prefix of a stop.
    held: String,
    stopped: bool,
}

impl StopStrings {
    /// Empty stop strings are ignored (they would match before any text).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Whether a stop string was found.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Takes the next piece of text.
    pub fn push(&mut self, piece: &str) -> StopScan {
        if self.stopped {
            return StopScan {
                emit: String::new(),
                stopped: true,
            };
        }
        self.held.push_str(piece);
        let text = std::mem::take(&mut self.held);
        // (end, start) of the first occurrence of each stop; the smallest wins.
        let found = self
            .stops
            .iter()
            .filter_map(|s| text.find(s.as_str()).map(|at| (at + s.len(), at)))
            .min();
        if let Some((_, at)) = found {
            self.stopped = true;
            let mut emit = text;
            emit.truncate(at);
            return StopScan {
                emit,
                stopped: true,
            };
        }
        let keep = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&text, s))
            .max()
            .unwrap_or(0);
        let split = text.len() - keep;
        self.held = text[split..].to_string();
        let mut emit = text;
        emit.truncate(split);
        StopScan {
            emit,
            stopped: false,
        }
    }

    /// The held text, at the end of generation when no stop string came (empty after a stop).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// The length of the longest suffix of `text` that is a proper prefix of `stop`.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let most = (stop.len() - 1).min(text.len());
    (1..=most)
        .rev()
        .find(|&n| stop.is_char_boundary(n) && text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

/// The raw bytes of single tokens, for log-probability reports (a token can hold part of a
/// character, so its bytes say more than its text).
///
/// For a byte-level BPE tokenizer (GPT-2, Qwen2) each character of a vocabulary entry stands
/// for one byte, through GPT-2's `bytes_to_unicode` table; added tokens are stored as plain
/// text. Other tokenizers fall back to the bytes of the token decoded on its own.
pub struct TokenBytes<'a> {
    tokenizer: &'a TextTokenizer,
    byte_level: bool,
    added: HashMap<u32, String>,
}

impl<'a> TokenBytes<'a> {
    pub fn new(tokenizer: &'a TextTokenizer) -> Self {
        let inner = tokenizer.inner();
        let byte_level = matches!(inner.get_decoder(), Some(DecoderWrapper::ByteLevel(_)));
        let added = inner
            .get_added_tokens_decoder()
            .into_iter()
            .map(|(id, t)| (id, t.content))
            .collect();
        Self {
            tokenizer,
            byte_level,
            added,
        }
    }

    /// The bytes of one token (empty for an id the tokenizer does not know).
    pub fn bytes(&self, id: u32) -> Vec<u8> {
        if let Some(text) = self.added.get(&id) {
            return text.as_bytes().to_vec();
        }
        if self.byte_level {
            if let Some(tok) = self.tokenizer.id_token(id) {
                if let Some(bytes) = tok.chars().map(byte_level_byte).collect::<Option<Vec<_>>>() {
                    return bytes;
                }
            }
        }
        self.tokenizer
            .decode(&[id], false)
            .map(String::into_bytes)
            .unwrap_or_default()
    }

    /// The token's text (lossy where it holds part of a character) and bytes.
    pub fn text_and_bytes(&self, id: u32) -> (String, Vec<u8>) {
        let bytes = self.bytes(id);
        (String::from_utf8_lossy(&bytes).into_owned(), bytes)
    }
}

/// Whether GPT-2's `bytes_to_unicode` maps byte `b` to the character of the same code point:
/// the printable ranges `!..=~`, `¡..=¬` and `®..=ÿ`.
fn printable(b: u32) -> bool {
    (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
}

/// The byte a byte-level BPE character stands for. The printable bytes stand for themselves;
/// the other 68 bytes, in increasing order, were moved to U+0100, U+0101, ...
fn byte_level_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if printable(cp) {
        return Some(cp as u8);
    }
    let n = cp.checked_sub(0x100)?;
    (0u32..=0xFF)
        .filter(|&b| !printable(b))
        .nth(n as usize)
        .map(|b| b as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(s: &[&str]) -> StopStrings {
        StopStrings::new(&s.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    /// Pushes the pieces; returns everything emitted (finish included) and whether it stopped.
    fn run(s: &mut StopStrings, pieces: &[&str]) -> (String, bool) {
        let mut out = String::new();
        for p in pieces {
            let scan = s.push(p);
            out += &scan.emit;
            if scan.stopped {
                return (out, true);
            }
        }
        out += &s.finish();
        (out, false)
    }

    #[test]
    fn byte_level_table_is_a_bijection() {
        let mut seen = [false; 256];
        for cp in (0x21..=0xFF).chain(0x100..0x100 + 68) {
            if let Some(c) = char::from_u32(cp) {
                if let Some(b) = byte_level_byte(c) {
                    assert!(!seen[b as usize], "byte {b} twice");
                    seen[b as usize] = true;
                }
            }
        }
        assert!(seen.iter().all(|&s| s));
        // 'Ġ' (U+0120) is the space, 'Ċ' (U+010A) the newline in GPT-2 vocabularies.
        assert_eq!(byte_level_byte('Ġ'), Some(b' '));
        assert_eq!(byte_level_byte('Ċ'), Some(b'\n'));
        assert_eq!(byte_level_byte('a'), Some(b'a'));
        assert_eq!(byte_level_byte('€'), None);
    }

    #[test]
    fn holds_only_possible_stop_prefixes() {
        let mut s = stops(&["END"]);
        assert_eq!(s.push("abc E").emit, "abc ");
        assert_eq!(s.push("N").emit, "");
        assert_eq!(s.push("x").emit, "ENx");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn stop_across_pieces_cuts_before_it() {
        assert_eq!(
            run(&mut stops(&["</s>"]), &["a <", "/", "s> tail"]),
            ("a ".into(), true)
        );
    }

    #[test]
    fn stop_at_the_very_start() {
        assert_eq!(run(&mut stops(&["Hi"]), &["Hi there"]), ("".into(), true));
        assert_eq!(run(&mut stops(&["Hi"]), &["H", "i"]), ("".into(), true));
    }

    #[test]
    fn earliest_ending_occurrence_wins_whatever_the_split() {
        // "bc" completes before "abcd" does, character by character.
        for pieces in [&["abcd"][..], &["a", "b", "c", "d"], &["ab", "cd"]] {
            assert_eq!(
                run(&mut stops(&["abcd", "bc"]), pieces),
                ("a".into(), true),
                "{pieces:?}"
            );
        }
        // Same end: the longer (earlier-starting) one.
        assert_eq!(run(&mut stops(&["c", "bc"]), &["abc"]), ("a".into(), true));
    }

    #[test]
    fn overlapping_candidates() {
        // Of the suffixes of "aa", "a" is a prefix of "ab" and "aa" is not: one 'a' goes out.
        let mut s = stops(&["ab"]);
        assert_eq!(s.push("aa").emit, "a");
        assert_eq!(
            s.push("b"),
            StopScan {
                emit: "".into(),
                stopped: true
            }
        );
        // A self-overlapping stop string.
        assert_eq!(
            run(&mut stops(&["aab"]), &["a", "a", "a", "b", "z"]),
            ("a".into(), true)
        );
    }

    #[test]
    fn a_stop_that_never_completes_is_released_at_the_end() {
        assert_eq!(
            run(&mut stops(&["STOP"]), &["go S", "TO"]),
            ("go STO".into(), false)
        );
    }

    #[test]
    fn multibyte_stop_strings() {
        assert_eq!(
            run(&mut stops(&["。"]), &["你好", "。再见"]),
            ("你好".into(), true)
        );
        let mut s = stops(&["é!"]);
        assert_eq!(s.push("café").emit, "caf");
        assert_eq!(s.push("?").emit, "é?");
    }

    #[test]
    fn empty_stop_strings_are_ignored() {
        assert_eq!(run(&mut stops(&[""]), &["abc"]), ("abc".into(), false));
    }
}
