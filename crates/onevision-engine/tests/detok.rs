//! Streaming detokenization and stop strings with the real Qwen2 tokenizer
//! (fixtures/tokenizer/qwen2): text whose tokens split multi-byte characters (CJK, emoji ZWJ
//! sequences, flags, skin tones, accents, other scripts) comes out whole, piece by piece, and
//! adds up to the full decode.

use std::path::Path;
use std::sync::OnceLock;

use onevision_engine::detok::{IncrementalDecoder, StopStrings, TokenBytes};
use onevision_processor::TextTokenizer;

fn qwen2() -> &'static TextTokenizer {
    static TOK: OnceLock<TextTokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tokenizer/qwen2");
        let dir = tempfile::tempdir().expect("temp dir");
        let xz = std::fs::read(src.join("tokenizer.json.xz")).expect("tokenizer.json.xz");
        let mut raw = Vec::new();
        lzma_rs::xz_decompress(&mut &xz[..], &mut raw).expect("unxz tokenizer.json.xz");
        std::fs::write(dir.path().join("tokenizer.json"), &raw).expect("write tokenizer.json");
        std::fs::copy(
            src.join("tokenizer_config.json"),
            dir.path().join("tokenizer_config.json"),
        )
        .expect("copy tokenizer_config.json");
        TextTokenizer::from_dir(dir.path()).expect("load the Qwen2 tokenizer")
    })
}

const TEXTS: [&str; 5] = [
    "你好，世界！今天天气很好。我们去公园散步吧。日本語のテキストも少し。",
    "Family: 👨‍👩‍👧‍👦, flags: 🇯🇵🇫🇷🏳️‍🌈, skin tone: 👍🏽 and 🧑🏿‍🚀 in space.",
    "Ça va? Crème brûlée, naïve façade, Ørsted, Đakovo, Ångström, cafe\u{301} (combining).",
    "Привет, мир! مرحبا بالعالم שלום עולם สวัสดีชาวโลก 한국어 텍스트 ∑∫√∞≠≤ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "Plain ASCII, with  two spaces,\ttabs and\nnewlines.\n",
];

fn ids(text: &str) -> Vec<u32> {
    qwen2().encode(text).expect("encode")
}

/// Feeds ids one by one; returns the pieces, the last one from `finish`.
fn stream(ids: &[u32]) -> Vec<String> {
    let tok = qwen2();
    let mut d = IncrementalDecoder::new();
    let mut pieces: Vec<String> = ids
        .iter()
        .map(|&id| d.push(tok, id).expect("push"))
        .collect();
    pieces.push(d.finish(tok).expect("finish"));
    assert_eq!(d.ids(), ids);
    pieces
}

#[test]
fn pieces_add_up_to_the_full_decode_and_never_split_a_character() {
    let tok = qwen2();
    let mut split_chars = 0;
    for text in TEXTS {
        let ids = ids(text);
        let full = tok.decode(&ids, true).expect("decode");
        // Qwen2 normalizes to NFC (the combining accent); otherwise the text round-trips.
        assert_eq!(full.len() < text.len(), text.contains('\u{301}'));
        split_chars += ids
            .iter()
            .filter(|&&id| {
                tok.decode(&[id], true)
                    .expect("decode")
                    .contains('\u{FFFD}')
            })
            .count();
        let pieces = stream(&ids);
        assert_eq!(pieces.concat(), full);
        for p in &pieces {
            assert!(
                !p.contains('\u{FFFD}'),
                "{text:?}: piece {p:?} splits a character"
            );
        }
        assert_eq!(
            pieces.last().map(String::as_str),
            Some(""),
            "nothing left at the end"
        );
    }
    assert!(
        split_chars > 10,
        "the texts must have tokens that split characters"
    );
}

/// A long answer is decoded a few tokens at a time, not from the start at every step.
#[test]
fn the_decode_window_stays_small_over_a_long_answer() {
    let tok = qwen2();
    let ids: Vec<u32> = TEXTS
        .iter()
        .cycle()
        .take(200)
        .flat_map(|t| ids(t))
        .collect();
    assert!(ids.len() > 5000);
    let mut d = IncrementalDecoder::new();
    let mut out = String::new();
    let mut widest = 0;
    for &id in &ids {
        out += &d.push(tok, id).expect("push");
        widest = widest.max(d.window());
    }
    out += &d.finish(tok).expect("finish");
    assert_eq!(out, tok.decode(&ids, true).expect("decode"));
    assert!(widest <= 8, "a step decoded {widest} ids");
}

#[test]
fn special_tokens_decode_to_nothing_in_the_stream() {
    let tok = qwen2();
    let end = tok.eos_id().expect("<|im_end|>");
    let mut ids = ids(TEXTS[0]);
    ids.insert(3, end);
    ids.push(end);
    let full = tok.decode(&ids, true).expect("decode");
    assert_eq!(full, TEXTS[0]);
    assert_eq!(stream(&ids).concat(), full);
}

#[test]
fn an_answer_that_ends_inside_a_character_is_released_as_decoded() {
    let tok = qwen2();
    let mut cases = 0;
    for text in &TEXTS[..2] {
        let ids = ids(text);
        for k in 1..ids.len() {
            let partial = tok.decode(&ids[..k], true).expect("decode");
            if !partial.ends_with('\u{FFFD}') {
                continue;
            }
            cases += 1;
            let pieces = stream(&ids[..k]);
            assert_eq!(pieces.concat(), partial);
            let last = pieces.last().expect("finish piece");
            assert!(
                last.ends_with('\u{FFFD}'),
                "the held bytes come out at the end"
            );
            assert!(pieces[..k].iter().all(|p| !p.contains('\u{FFFD}')));
        }
    }
    assert!(cases > 5, "{cases} prefixes end inside a character");
}

#[test]
fn token_bytes_add_up_to_the_text() {
    let tok = qwen2();
    let bytes = TokenBytes::new(tok);
    for text in TEXTS {
        let ids = ids(text);
        let all: Vec<u8> = ids.iter().flat_map(|&id| bytes.bytes(id)).collect();
        assert_eq!(all, tok.decode(&ids, true).expect("decode").as_bytes());
    }
    let end = tok.eos_id().expect("<|im_end|>");
    assert_eq!(bytes.text_and_bytes(end).0, "<|im_end|>");
    assert!(bytes.bytes(u32::MAX).is_empty());
}

/// Streams `ids` through the decoder and the stop strings; returns the emitted text and
/// whether a stop string was found.
fn stream_with_stops(ids: &[u32], stops: &[String]) -> (String, bool) {
    let tok = qwen2();
    let mut d = IncrementalDecoder::new();
    let mut s = StopStrings::new(stops);
    let mut out = String::new();
    for &id in ids {
        let scan = s.push(&d.push(tok, id).expect("push"));
        out += &scan.emit;
        if scan.stopped {
            return (out, true);
        }
    }
    let scan = s.push(&d.finish(tok).expect("finish"));
    out += &scan.emit;
    if scan.stopped {
        return (out, true);
    }
    out += &s.finish();
    (out, false)
}

#[test]
fn stop_strings_cut_before_the_first_occurrence_across_tokens() {
    let tok = qwen2();
    let bytes = TokenBytes::new(tok);
    let mut spanning = 0;
    for text in TEXTS {
        let ids = ids(text);
        let text = &tok.decode(&ids, true).expect("decode");
        // Where each token's text starts, to count stops that span token boundaries.
        let mut starts = vec![];
        let mut at = 0;
        for &id in &ids {
            starts.push(at);
            at += bytes.bytes(id).len();
        }
        let chars: Vec<usize> = text.char_indices().map(|c| c.0).collect();
        for (n, &a) in chars.iter().enumerate().step_by(3) {
            for len in 1..=3 {
                let b = chars.get(n + len).copied().unwrap_or(text.len());
                let stop = &text[a..b];
                let cut = text.find(stop).expect("a substring");
                let got = stream_with_stops(&ids, &["\u{0}never".into(), stop.into()]);
                assert_eq!(
                    got,
                    (text[..cut].to_string(), true),
                    "stop {stop:?} in {text:?}"
                );
                if starts.iter().any(|&s| s > cut && s < cut + stop.len()) {
                    spanning += 1;
                }
            }
        }
        // At the very start; never completing (the held prefix is released at the end).
        let first: String = text.chars().take(2).collect();
        assert_eq!(stream_with_stops(&ids, &[first]), (String::new(), true));
        let never = format!("{}\u{0}", &text[chars[chars.len() - 2]..]);
        assert_eq!(stream_with_stops(&ids, &[never]), (text.to_string(), false));
    }
    assert!(
        spanning > 20,
        "only {spanning} stop strings span token boundaries"
    );
}
