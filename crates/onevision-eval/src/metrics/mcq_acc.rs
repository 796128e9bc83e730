//! `mcq_acc(answer, pred)`, the option-letter matcher that lmms-eval 0.2.1 copies into both
//! lmms_eval/tasks/mvbench/utils.py and lmms_eval/tasks/llava_interleave_bench/utils.py
//! (identical code): each side goes through `process` (an `X. text` form -> `X`; otherwise the
//! VQA punctuation cleanup, lowercased, and the first stand-alone letter A-E if any) and the
//! score is 1 when they are equal.
//!
//! Quirks kept: `periodStrip.sub("", text, re.UNICODE)` passes `re.UNICODE` (32) as `count`, so
//! at most 32 periods are removed; its `(?!<=\d)` is a lookahead for the text "<=" + digit,
//! always true before a ".", so the pattern is `\.(?!\d)`; the punctuation rule looks at the
//! *input* text (`p + " " in inText`, or a digit-comma-digit anywhere) for every character.

use crate::metrics::pyre;
use crate::metrics::pystr;

const PUNCT: [char; 21] = [
    ';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',',
    '?', '!',
];

/// `re.search(r"(\d)(\,)(\d)", text)` with Python's Unicode `\d`.
fn has_digit_comma_digit(chars: &[char]) -> bool {
    chars
        .windows(3)
        .any(|w| w[1] == ',' && pyre::is_digit(w[0]) && pyre::is_digit(w[2]))
}

/// `processPunctuation(inText)`.
fn process_punctuation(in_text: &str) -> String {
    let in_chars: Vec<char> = in_text.chars().collect();
    let comma = has_digit_comma_digit(&in_chars);
    let mut out = in_text.to_string();
    for p in PUNCT {
        let delete =
            in_text.contains(&format!("{p} ")) || in_text.contains(&format!(" {p}")) || comma;
        out = out.replace(p, if delete { "" } else { " " });
    }
    // periodStrip.sub("", outText, 32): the first 32 periods not followed by a digit.
    let chars: Vec<char> = out.chars().collect();
    let mut result = String::with_capacity(out.len());
    let mut removed = 0;
    for (i, &c) in chars.iter().enumerate() {
        let next_is_digit = chars.get(i + 1).is_some_and(|&n| pyre::is_digit(n));
        if c == '.' && !next_is_digit && removed < 32 {
            removed += 1;
            continue;
        }
        result.push(c);
    }
    result
}

/// `re.compile(r"^([A-E])\.\s*(.+)$", re.IGNORECASE).match(s)` on a stripped `s`: the letter,
/// when a period follows it and the rest is whitespace then a non-empty last line (`.` stops
/// at `\n`, `$` is the end, the text being stripped).
fn option_prefix(s: &str) -> Option<char> {
    let mut it = s.chars();
    let letter = it.next()?;
    if !matches!(letter, 'A'..='E' | 'a'..='e') || it.next() != Some('.') {
        return None;
    }
    let rest = it.as_str();
    let (head, tail) = match rest.rfind('\n') {
        Some(k) => (&rest[..=k], &rest[k + 1..]),
        None => ("", rest),
    };
    (head.chars().all(pyre::is_space) && !tail.is_empty()).then_some(letter)
}

/// `re.search(r"\b([A-E])\b", s, re.IGNORECASE)`: the first letter A-E/a-e standing alone
/// between Python `\w` boundaries.
fn standalone_letter(s: &str) -> Option<char> {
    let chars: Vec<char> = s.chars().collect();
    (0..chars.len()).find_map(|i| {
        let c = chars[i];
        (matches!(c, 'A'..='E' | 'a'..='e')
            && pyre::is_boundary(&chars, i)
            && pyre::is_boundary(&chars, i + 1))
        .then_some(c)
    })
}

/// `mcq_acc`'s inner `process(answer)`.
pub fn mcq_process(answer: &str) -> String {
    if let Some(l) = option_prefix(pystr::strip(answer)) {
        return l.to_ascii_uppercase().to_string();
    }
    let a = answer.replace(['\n', '\t'], " ");
    let a = process_punctuation(pystr::strip(&a));
    let a = a
        .trim_matches('\'')
        .trim_matches('"')
        .trim_matches(')')
        .trim_matches('(');
    let a = pystr::strip(a).to_lowercase();
    match standalone_letter(&a) {
        Some(l) => l.to_ascii_uppercase().to_string(),
        None => a,
    }
}

/// `mcq_acc(answer, pred)`: 1 when both sides process to the same string, else 0.
pub fn mcq_acc(answer: &str, pred: &str) -> u8 {
    u8::from(mcq_process(pred) == mcq_process(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values printed by lmms-eval 0.2.1's mcq_acc / process.
    #[test]
    fn known_answers() {
        assert_eq!(mcq_process("(B) a cat"), "B");
        assert_eq!(mcq_process("b. a cat"), "B");
        assert_eq!(mcq_process("B."), "B");
        assert_eq!(mcq_process("The answer is c"), "C");
        assert_eq!(mcq_process("Option: none"), "option: none");
        assert_eq!(mcq_process("B.\n  \ncat"), "B");
        // `.+$` cannot cross the newline, so no option form; the period goes, then no letter stands alone
        assert_eq!(mcq_process("B.cat\ndog"), "bcat dog");
        assert_eq!(mcq_acc("A", "(a)"), 1);
        assert_eq!(mcq_acc("A", "B"), 0);
        // 1,000 -> every listed punctuation mark is deleted, none turned into a space
        assert_eq!(mcq_process("1,000 (x)"), "1000 x");
        assert_eq!(mcq_process("3.5 x."), "3.5 x");
    }
}
