//! ROUGE-L as the `rouge` PyPI package (1.0.1, `rouge/rouge_score.py`) computes it, which
//! lmms-eval's llava_interleave_bench scores open-ended answers with
//! (`Rouge().get_scores(pred, answer)[0]["rouge-l"]["f"]`, lmms_eval/tasks/llava_interleave_bench/
//! utils.py `oe_rogue`).
//!
//! The package's quirks, kept: sentences are the pieces of `text.split(".")` that are not empty,
//! each with its whitespace collapsed to single spaces; words are `sentence.split(" ")` (so a
//! piece of only spaces is one empty word); word counts and the LCS are *sets* of words (its
//! `Ngrams` is a `set` by default, `exclusive=True`), and the summary-level LCS is the size of
//! the union, over reference sentences and hypothesis sentences, of the words on one particular
//! LCS path (the package's reconstruction prefers `table[i-1][j] > table[i][j-1]` -> up, else
//! left). `get_scores` also computes ROUGE-1 and ROUGE-2 first, which raise on an empty
//! sentence list ("Hypothesis is empty." / "Reference is empty."), e.g. a text of only periods.

use crate::metrics::pystr;

/// `[" ".join(_.split()) for _ in text.split(".") if len(_) > 0]`.
fn sentences(text: &str) -> Vec<String> {
    text.split('.')
        .filter(|p| !p.is_empty())
        .map(|p| pystr::split_whitespace(p).join(" "))
        .collect()
}

/// `_split_into_words`: every sentence's `split(" ")`, flattened.
fn words(sentences: &[String]) -> Vec<&str> {
    sentences.iter().flat_map(|s| s.split(' ')).collect()
}

/// `_recon_lcs(x, y)`: the words of the LCS path the package reconstructs (as a set, by the
/// caller). The DP table is `_lcs`'s; the walk back is `_recon`'s recursion, unrolled.
fn recon_lcs<'a>(x: &[&'a str], y: &[&str]) -> Vec<&'a str> {
    let (n, m) = (x.len(), y.len());
    let mut table = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in 1..=n {
        for j in 1..=m {
            table[at(i, j)] = if x[i - 1] == y[j - 1] {
                table[at(i - 1, j - 1)] + 1
            } else {
                table[at(i - 1, j)].max(table[at(i, j - 1)])
            };
        }
    }
    let (mut i, mut j) = (n, m);
    let mut out = vec![];
    while i > 0 && j > 0 {
        if x[i - 1] == y[j - 1] {
            out.push(x[i - 1]);
            i -= 1;
            j -= 1;
        } else if table[at(i - 1, j)] > table[at(i, j - 1)] {
            i -= 1;
        } else {
            j -= 1;
        }
    }
    out
}

/// `rouge_l_summary_level(hyp_sentences, ref_sentences)["f"]`, after `Rouge._get_scores`'
/// sentence split, with `get_scores`' errors for an empty sentence list.
pub fn rouge_l_f(hypothesis: &str, reference: &str) -> Result<f64, String> {
    let hyp = sentences(hypothesis);
    let refs = sentences(reference);
    if hyp.is_empty() {
        return Err("rouge: Hypothesis is empty.".into());
    }
    if refs.is_empty() {
        return Err("rouge: Reference is empty.".into());
    }
    let distinct = |w: Vec<&str>| {
        let mut w = w;
        w.sort_unstable();
        w.dedup();
        w.len()
    };
    let m = distinct(words(&refs));
    let n = distinct(words(&hyp));
    let mut union: Vec<&str> = vec![];
    for r in &refs {
        let ref_words: Vec<&str> = r.split(' ').collect();
        for h in &hyp {
            let hyp_words: Vec<&str> = h.split(' ').collect();
            union.extend(recon_lcs(&ref_words, &hyp_words));
        }
    }
    let llcs = distinct(union) as f64;
    let r_lcs = llcs / m as f64;
    let p_lcs = llcs / n as f64;
    Ok(2.0 * ((p_lcs * r_lcs) / (p_lcs + r_lcs + 1e-8)))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values printed by rouge 1.0.1: Rouge().get_scores(h, r)[0]["rouge-l"]["f"].
    #[test]
    fn known_answers() {
        // identical: 2 * (1 * 1) / (2 + 1e-8)
        assert_eq!(
            rouge_l_f("the cat is on the mat", "the cat is on the mat").unwrap(),
            2.0 * (1.0 / (2.0 + 1e-8))
        );
        // words are a set: "the" counts once on both sides (m = 5, n = 5, lcs {the, cat, mat})
        let f = rouge_l_f("the cat sat on the mat", "the cat is on the mat").unwrap();
        let (p, r) = (4.0 / 5.0, 4.0 / 5.0);
        assert_eq!(f, 2.0 * ((p * r) / (p + r + 1e-8)));
        assert_eq!(rouge_l_f("dog", "cat").unwrap(), 0.0);
        // a piece of only spaces is one empty word
        assert_eq!(rouge_l_f(" . ", " .").unwrap(), 2.0 * (1.0 / (2.0 + 1e-8)));
        assert!(rouge_l_f("...", "cat").is_err());
        assert!(rouge_l_f("cat", ".").is_err());
    }
}
