//! VQA answer normalisation and accuracy: lmms_eval/tasks/_task_utils/vqa_eval_metric.py
//! `EvalAIAnswerProcessor` (copied upstream from mmf's pythia/tasks/processors.py) and the
//! leave-one-out accuracy of lmms_eval/tasks/textvqa/utils.py `textvqa_process_results`.

use crate::metrics::{pyre, pystr};

/// `EvalAIAnswerProcessor.CONTRACTIONS` (keys with capitals can never match: the words are
/// lower-cased first; kept as upstream has them).
const CONTRACTIONS: &[(&str, &str)] = &[
    ("aint", "ain't"),
    ("arent", "aren't"),
    ("cant", "can't"),
    ("couldve", "could've"),
    ("couldnt", "couldn't"),
    ("couldn'tve", "couldn't've"),
    ("couldnt've", "couldn't've"),
    ("didnt", "didn't"),
    ("doesnt", "doesn't"),
    ("dont", "don't"),
    ("hadnt", "hadn't"),
    ("hadnt've", "hadn't've"),
    ("hadn'tve", "hadn't've"),
    ("hasnt", "hasn't"),
    ("havent", "haven't"),
    ("hed", "he'd"),
    ("hed've", "he'd've"),
    ("he'dve", "he'd've"),
    ("hes", "he's"),
    ("howd", "how'd"),
    ("howll", "how'll"),
    ("hows", "how's"),
    ("Id've", "I'd've"),
    ("I'dve", "I'd've"),
    ("Im", "I'm"),
    ("Ive", "I've"),
    ("isnt", "isn't"),
    ("itd", "it'd"),
    ("itd've", "it'd've"),
    ("it'dve", "it'd've"),
    ("itll", "it'll"),
    ("let's", "let's"),
    ("maam", "ma'am"),
    ("mightnt", "mightn't"),
    ("mightnt've", "mightn't've"),
    ("mightn'tve", "mightn't've"),
    ("mightve", "might've"),
    ("mustnt", "mustn't"),
    ("mustve", "must've"),
    ("neednt", "needn't"),
    ("notve", "not've"),
    ("oclock", "o'clock"),
    ("oughtnt", "oughtn't"),
    ("ow's'at", "'ow's'at"),
    ("'ows'at", "'ow's'at"),
    ("'ow'sat", "'ow's'at"),
    ("shant", "shan't"),
    ("shed've", "she'd've"),
    ("she'dve", "she'd've"),
    ("she's", "she's"),
    ("shouldve", "should've"),
    ("shouldnt", "shouldn't"),
    ("shouldnt've", "shouldn't've"),
    ("shouldn'tve", "shouldn't've"),
    ("somebody'd", "somebodyd"),
    ("somebodyd've", "somebody'd've"),
    ("somebody'dve", "somebody'd've"),
    ("somebodyll", "somebody'll"),
    ("somebodys", "somebody's"),
    ("someoned", "someone'd"),
    ("someoned've", "someone'd've"),
    ("someone'dve", "someone'd've"),
    ("someonell", "someone'll"),
    ("someones", "someone's"),
    ("somethingd", "something'd"),
    ("somethingd've", "something'd've"),
    ("something'dve", "something'd've"),
    ("somethingll", "something'll"),
    ("thats", "that's"),
    ("thered", "there'd"),
    ("thered've", "there'd've"),
    ("there'dve", "there'd've"),
    ("therere", "there're"),
    ("theres", "there's"),
    ("theyd", "they'd"),
    ("theyd've", "they'd've"),
    ("they'dve", "they'd've"),
    ("theyll", "they'll"),
    ("theyre", "they're"),
    ("theyve", "they've"),
    ("twas", "'twas"),
    ("wasnt", "wasn't"),
    ("wed've", "we'd've"),
    ("we'dve", "we'd've"),
    ("weve", "we've"),
    ("werent", "weren't"),
    ("whatll", "what'll"),
    ("whatre", "what're"),
    ("whats", "what's"),
    ("whatve", "what've"),
    ("whens", "when's"),
    ("whered", "where'd"),
    ("wheres", "where's"),
    ("whereve", "where've"),
    ("whod", "who'd"),
    ("whod've", "who'd've"),
    ("who'dve", "who'd've"),
    ("wholl", "who'll"),
    ("whos", "who's"),
    ("whove", "who've"),
    ("whyll", "why'll"),
    ("whyre", "why're"),
    ("whys", "why's"),
    ("wont", "won't"),
    ("wouldve", "would've"),
    ("wouldnt", "wouldn't"),
    ("wouldnt've", "wouldn't've"),
    ("wouldn'tve", "wouldn't've"),
    ("yall", "y'all"),
    ("yall'll", "y'all'll"),
    ("y'allll", "y'all'll"),
    ("yall'd've", "y'all'd've"),
    ("y'alld've", "y'all'd've"),
    ("y'all'dve", "y'all'd've"),
    ("youd", "you'd"),
    ("youd've", "you'd've"),
    ("you'dve", "you'd've"),
    ("youll", "you'll"),
    ("youre", "you're"),
    ("youve", "you've"),
];

/// `NUMBER_MAP` (its `setdefault` also inserts every other word as itself: no effect on the
/// output).
const NUMBER_MAP: &[(&str, &str)] = &[
    ("none", "0"),
    ("zero", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
];

const ARTICLES: &[&str] = &["a", "an", "the"];

/// `PUNCTUATIONS`, in upstream's order (the order matters: each is replaced in turn).
const PUNCTUATIONS: &[char] = &[
    ';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',',
    '?', '!',
];

/// `COMMA_STRIP = (?<=\d)(\,)+(?=\d)`, searched: a run of commas between two digits (`\d` is
/// any script's decimal digit).
fn comma_strip_matches(text: &[char]) -> bool {
    let mut i = 1;
    while i < text.len() {
        if text[i] == ',' && pyre::is_digit(text[i - 1]) {
            let mut j = i;
            while j < text.len() && text[j] == ',' {
                j += 1;
            }
            if j < text.len() && pyre::is_digit(text[j]) {
                return true;
            }
            i = j;
        } else {
            i += 1;
        }
    }
    false
}

/// `PERIOD_STRIP.sub("", text, re.UNICODE)` with `PERIOD_STRIP = (?!<=\d)(\.)(?!\d)`. The
/// first group is a lookahead for "<=" + digit (a typo for a lookbehind), which never holds
/// where a `.` is, so the pattern is `\.(?!\d)`; and the third positional argument of
/// `Pattern.sub` is `count`, so `re.UNICODE` (32) caps the removals at the first 32 periods.
fn period_strip(text: &str) -> String {
    const COUNT: usize = 32; // re.UNICODE
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut removed = 0;
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_digit = chars.get(i + 1).is_some_and(|&n| pyre::is_digit(n));
        if c == '.' && !followed_by_digit && removed < COUNT {
            removed += 1;
        } else {
            out.push(c);
        }
    }
    out
}

/// `EvalAIAnswerProcessor.process_punctuation`: each mark is deleted when it touches a space
/// in the input (or the input has digit-commas-digit), else replaced by a space; then periods
/// not before a digit go ([`period_strip`]).
pub fn process_punctuation(in_text: &str) -> String {
    let chars: Vec<char> = in_text.chars().collect();
    let comma = comma_strip_matches(&chars);
    let mut out = in_text.to_string();
    for &p in PUNCTUATIONS {
        let touches_space =
            in_text.contains(&format!("{p} ")) || in_text.contains(&format!(" {p}"));
        if touches_space || comma {
            out = out.replace(p, "");
        } else {
            out = out.replace(p, " ");
        }
    }
    period_strip(&out)
}

/// `EvalAIAnswerProcessor.process_digit_article`: number words to digits, articles dropped,
/// contractions restored, words joined by one space.
pub fn process_digit_article(in_text: &str) -> String {
    let lower = in_text.to_lowercase();
    let words: Vec<&str> = pystr::split_whitespace(&lower)
        .into_iter()
        .map(|w| {
            NUMBER_MAP
                .iter()
                .find(|(k, _)| *k == w)
                .map_or(w, |(_, v)| *v)
        })
        .filter(|w| !ARTICLES.contains(w))
        .map(|w| {
            CONTRACTIONS
                .iter()
                .find(|(k, _)| *k == w)
                .map_or(w, |(_, v)| *v)
        })
        .collect();
    words.join(" ")
}

/// `EvalAIAnswerProcessor.__call__`: `word_tokenize` (lower, drop `,` and `?`, `'s` -> ` 's`,
/// strip), newlines and tabs to spaces, strip, then [`process_punctuation`] and
/// [`process_digit_article`].
pub fn eval_ai_answer_processor(item: &str) -> String {
    let word = item
        .to_lowercase()
        .replace([',', '?'], "")
        .replace("'s", " 's");
    let item = pystr::strip(&word).replace(['\n', '\t'], " ");
    let item = process_punctuation(pystr::strip(&item));
    process_digit_article(&item)
}

/// The accuracy of `textvqa_process_results` (VQA's): with the references and the prediction
/// through [`eval_ai_answer_processor`], for each reference i, `min(1, matches among the other
/// nine / 3)`, averaged by `statistics.mean` (exactly, see [`statistics_mean`]). None for no
/// references (`statistics.mean([])` raises).
pub fn vqa_leave_one_out_accuracy(references: &[String], prediction: &str) -> Option<f64> {
    let res = eval_ai_answer_processor(prediction);
    let gts: Vec<String> = references
        .iter()
        .map(|a| eval_ai_answer_processor(a))
        .collect();
    let accs: Vec<f64> = (0..gts.len())
        .map(|i| {
            let matching = gts
                .iter()
                .enumerate()
                .filter(|(j, g)| *j != i && **g == res)
                .count();
            // min(1, float(n) / 3)
            let x = matching as f64 / 3.0;
            if x < 1.0 {
                x
            } else {
                1.0
            }
        })
        .collect();
    statistics_mean(&accs)
}

/// Python's `statistics.mean` for non-negative floats that are multiples of 2^-60 below 2^4
/// (every value `min(1, k/3)` is): the exact sum of the exact values over n, rounded once
/// (`_sum` adds Fractions, `_convert` divides two ints, correctly rounded). A plain
/// left-to-right mean differs in the last bit (`[2/3]*3 + [0]*7` is 0.19999999999999998, not
/// 0.2). None when a value is outside that range or there are no values.
pub fn statistics_mean(xs: &[f64]) -> Option<f64> {
    const SCALE: i32 = 60;
    if xs.is_empty() || xs.len() as u128 >= 1 << 60 {
        return None;
    }
    let mut sum: u128 = 0;
    for &x in xs {
        let y = x * 2f64.powi(SCALE);
        if !(0.0..16.0 * 2f64.powi(SCALE)).contains(&y) || y.fract() != 0.0 {
            return None;
        }
        sum += y as u128;
    }
    Some(ratio_to_f64(sum, (xs.len() as u128) << SCALE))
}

/// `num / den` rounded to the nearest f64, ties to even (CPython's int true division).
/// `den` must be below 2^126 and non-zero; the quotient must be a normal f64.
fn ratio_to_f64(num: u128, den: u128) -> f64 {
    if num == 0 {
        return 0.0;
    }
    let (mut q, mut r) = (num / den, num % den);
    let mut exp: i32 = 0;
    // value = (q + r / den) * 2^exp; take quotient bits until q has 55 of them.
    while q < 1 << 54 {
        r <<= 1;
        q <<= 1;
        if r >= den {
            r -= den;
            q |= 1;
        }
        exp -= 1;
    }
    let mut sticky = r != 0;
    while q >= 1 << 55 {
        sticky |= q & 1 == 1;
        q >>= 1;
        exp += 1;
    }
    // 55 bits: 53 kept, a half bit and one more (with the sticky rest).
    let low = q & 3;
    let mut m = (q >> 2) as u64;
    exp += 2;
    if low == 3 || (low == 2 && (sticky || m & 1 == 1)) {
        m += 1;
        if m == 1 << 53 {
            m >>= 1;
            exp += 1;
        }
    }
    m as f64 * 2f64.powi(exp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processor_known_answers() {
        assert_eq!(eval_ai_answer_processor("The Home Depot"), "home depot");
        assert_eq!(eval_ai_answer_processor("Two"), "2");
        assert_eq!(eval_ai_answer_processor("dont walk"), "don't walk");
        assert_eq!(eval_ai_answer_processor("$3.50"), "$3.50");
        assert_eq!(eval_ai_answer_processor("1,990"), "1990");
        assert_eq!(eval_ai_answer_processor("Bulls's"), "bulls 's");
        assert_eq!(eval_ai_answer_processor("coca-cola"), "coca cola");
        assert_eq!(eval_ai_answer_processor("a / b"), "b");
        assert_eq!(eval_ai_answer_processor("x-y"), "x y");
        assert_eq!(eval_ai_answer_processor("U.S.A."), "usa");
        assert_eq!(eval_ai_answer_processor("3.14"), "3.14");
    }

    #[test]
    fn period_strip_stops_after_32() {
        let s = ".".repeat(40);
        assert_eq!(period_strip(&s), ".".repeat(8));
        assert_eq!(period_strip("a.5 b. c"), "a.5 b c");
        assert_eq!(period_strip("x.\u{661}"), "x.\u{661}");
    }

    #[test]
    fn comma_strip() {
        let c = |s: &str| comma_strip_matches(&s.chars().collect::<Vec<_>>());
        assert!(c("1,,000"));
        assert!(!c("1, 000"));
        assert!(!c(",1"));
    }

    #[test]
    fn exact_mean_matches_statistics_mean() {
        let third = 1.0 / 3.0;
        let two = 2.0 / 3.0;
        let v = |a: &[(f64, usize)]| -> Vec<f64> {
            a.iter()
                .flat_map(|&(x, n)| std::iter::repeat_n(x, n))
                .collect()
        };
        // Values from CPython 3.11's statistics.mean.
        assert_eq!(
            statistics_mean(&v(&[(two, 3), (0.0, 7)])),
            Some(0.19999999999999998)
        );
        assert_eq!(
            statistics_mean(&v(&[(third, 1), (two, 1), (0.0, 8)])),
            Some(0.09999999999999999)
        );
        assert_eq!(
            statistics_mean(&v(&[(third, 1), (two, 4), (0.0, 5)])),
            Some(0.3)
        );
        assert_eq!(statistics_mean(&v(&[(two, 10)])), Some(0.6666666666666666));
        assert_eq!(statistics_mean(&[1.0; 10]), Some(1.0));
        assert_eq!(statistics_mean(&[]), None);
    }

    #[test]
    fn leave_one_out() {
        let refs: Vec<String> = ["2", "two", "2", "3", "2", "2", "2", "2", "2", "2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(vqa_leave_one_out_accuracy(&refs, "Two"), Some(1.0));
        assert_eq!(vqa_leave_one_out_accuracy(&refs, "3"), Some(0.3));
        assert_eq!(vqa_leave_one_out_accuracy(&[], "3"), None);
    }
}
