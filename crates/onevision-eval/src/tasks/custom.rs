//! The user's own data as tasks: a JSONL task file, or LLaVA-NeXT `.json` / `.jsonl` samples
//! as `onevision train` reads them. Each distinct `task` field becomes a task of its own
//! (default: the file's stem), so scores are reported per task field.
//!
//! JSONL task lines (one document each):
//! ```json
//! {"question": "What is shown?", "image": "a.jpg", "answer": "a cat", "metric": "vqa"}
//! {"question": "Which animal?", "images": ["a.jpg", "b.png"], "choices": ["cat", "dog"], "answer": "B"}
//! {"question": "What happens?", "video": "clip.mp4", "answer": ["jumps", "a jump"], "metric": "exact", "task": "clips"}
//! ```
//! - `question` (string, required); media: `image` (a path), `images` (paths) or `video` (a
//!   path), relative to `--image-folder` / `--video-dir` when given, else to the file's
//!   directory, unless absolute; none for a text-only question;
//! - `answer`: a string or a list of acceptable strings; with `choices` it may be the letter
//!   (`"B"`), the 0-based index (`1`) or the choice's text;
//! - `metric`: `exact` (lmms-eval's exact_match, ignoring case and punctuation, any reference),
//!   `vqa` (EvalAI-normalized VQA accuracy: min(1, matches/3) averaged over leave-one-out
//!   subsets when there are 4 or more references, as TextVQA/VQAv2 score 10-answer data;
//!   otherwise 1 when the normalized answer equals a normalized reference), `anls` (ANLS, τ 0.5,
//!   the best reference), `relaxed` (ChartQA's relaxed correctness, any reference) or `choice`
//!   (the answer's option letter: AI2D's prompt and MultiChoiceRegexFilter, exact match), or
//!   `recall` (for descriptions: the share of the reference's phrases, i.e. its sentences split
//!   at commas and " and ", that the answer has, case and end punctuation ignored; the best
//!   reference). Default: `choice` with `choices`, else `exact`;
//! - optional `id` (echoed into the samples file) and `task`.
//!
//! Prompts: `question + "\nAnswer the question using a single word or phrase."` for open
//! answers (lmms-eval's DocVQA/TextVQA post-prompt), and for choices AI2D's
//! `question + "\nA. ...\nB. ..." + "\nAnswer with the option's letter from the given choices
//! directly."`. Generation stops at 128 new tokens (open) / 16 (choice).
//!
//! LLaVA samples (`{"id", "image"|"video", "conversations": [{"from": "human", "value"}, {"from":
//! "gpt", "value"}, ...]}`): every human turn is a question (its `<image>` markers removed: the
//! chat template puts the media first), the gpt turn after it the reference answer; each turn
//! is asked on its own with the sample's media (earlier turns are not replayed), exactly as
//! written — no post-prompt, so a model is asked as it was trained — with up to 1024 new
//! tokens (lmms-eval's default). Optional
//! per-sample `task` and `metric` fields as above (default `exact`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::doc::{field_str, EncodedImage, Prompt, Row, Visual};
use crate::error::{DocError, Error, Result};
use crate::metrics::pyrandom::PyRandom;
use crate::task::{Context, DatasetSpec, Documents, MetricSpec, Task};

/// How a custom document is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Exact,
    Vqa,
    Anls,
    Relaxed,
    Choice,
    Recall,
}

impl Metric {
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "exact" | "exact_match" => Metric::Exact,
            "vqa" => Metric::Vqa,
            "anls" => Metric::Anls,
            "relaxed" => Metric::Relaxed,
            "choice" => Metric::Choice,
            "recall" => Metric::Recall,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Exact => "exact",
            Metric::Vqa => "vqa",
            Metric::Anls => "anls",
            Metric::Relaxed => "relaxed",
            Metric::Choice => "choice",
            Metric::Recall => "recall",
        }
    }
}

const OPEN_POST_PROMPT: &str = "\nAnswer the question using a single word or phrase.";
const CHOICE_POST_PROMPT: &str =
    "\nAnswer with the option's letter from the given choices directly.";

/// One question, parsed and checked when the file is read.
#[derive(Debug, Clone)]
struct Item {
    id: Option<Value>,
    question: String,
    images: Vec<PathBuf>,
    video: Option<PathBuf>,
    answers: Vec<String>,
    choices: Vec<String>,
    metric: Metric,
    /// A LLaVA sample's human turn: asked exactly as written (no post-prompt), so a model
    /// trained on these samples is asked as it was trained.
    as_written: bool,
}

/// A task made of the items that share a `task` field.
pub struct CustomTask {
    name: String,
    source: PathBuf,
    items: Vec<Item>,
}

fn letter(i: usize) -> String {
    char::from(b'A' + (i as u8)).to_string()
}

fn bad(path: &Path, line: usize, msg: impl std::fmt::Display) -> Error {
    Error::Dataset {
        what: format!("{}:{line}", path.display()),
        reason: msg.to_string(),
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

/// The answer of a choice question as its letter.
fn choice_letter(answer: &Value, choices: &[String]) -> std::result::Result<String, String> {
    if choices.len() > 26 {
        return Err(format!("at most 26 choices, got {}", choices.len()));
    }
    match answer {
        Value::Number(n) => match n.as_u64() {
            Some(i) if (i as usize) < choices.len() => Ok(letter(i as usize)),
            _ => Err(format!("answer index {n} is not in 0..{}", choices.len())),
        },
        Value::String(s) => {
            let t = s.trim();
            if t.len() == 1 {
                let c = t.as_bytes()[0].to_ascii_uppercase();
                if c.is_ascii_uppercase() && ((c - b'A') as usize) < choices.len() {
                    return Ok(letter((c - b'A') as usize));
                }
            }
            match choices.iter().position(|c| c == s) {
                Some(i) => Ok(letter(i)),
                None => Err(format!(
                    "answer {s:?} is neither an option letter (A..{}) nor one of the choices",
                    letter(choices.len().saturating_sub(1))
                )),
            }
        }
        other => Err(format!(
            "answer must be a string or an index with choices, got {other}"
        )),
    }
}

fn parse_task_line(
    v: &Value,
    base: &Path,
    video_base: &Path,
) -> std::result::Result<(Option<String>, Item), String> {
    let o = v.as_object().ok_or("each line must be a JSON object")?;
    let question = o
        .get("question")
        .and_then(Value::as_str)
        .ok_or("`question` (a string) is required")?
        .to_string();
    let mut images = vec![];
    if let Some(i) = o.get("image") {
        images.push(resolve(
            base,
            i.as_str().ok_or("`image` must be a path (a string)")?,
        ));
    }
    if let Some(list) = o.get("images") {
        let paths = strings(list).ok_or("`images` must be a list of paths")?;
        images.extend(paths.iter().map(|p| resolve(base, p)));
    }
    let video = match o.get("video") {
        Some(v) => Some(resolve(
            video_base,
            v.as_str().ok_or("`video` must be a path (a string)")?,
        )),
        None => None,
    };
    if video.is_some() && !images.is_empty() {
        return Err("give images or a video, not both".into());
    }
    let choices = match o.get("choices") {
        Some(c) => strings(c)
            .filter(|c| c.len() >= 2)
            .ok_or("`choices` must be a list of at least 2 strings")?,
        None => vec![],
    };
    let metric = match o.get("metric") {
        Some(m) => {
            let name = m.as_str().ok_or("`metric` must be a string")?;
            Metric::from_name(name).ok_or_else(|| {
                format!(
                    "unknown metric {name:?}; expected exact, vqa, anls, relaxed, recall or choice"
                )
            })?
        }
        None if !choices.is_empty() => Metric::Choice,
        None => Metric::Exact,
    };
    let answer = o.get("answer").ok_or("`answer` is required")?;
    let answers = if metric == Metric::Choice {
        if choices.is_empty() {
            return Err("metric `choice` needs `choices`".into());
        }
        vec![choice_letter(answer, &choices)?]
    } else {
        strings(answer)
            .filter(|a| !a.is_empty())
            .ok_or("`answer` must be a string or a non-empty list of strings")?
    };
    let task = match o.get("task") {
        Some(t) => Some(t.as_str().ok_or("`task` must be a string")?.to_string()),
        None => None,
    };
    Ok((
        task,
        Item {
            id: o.get("id").cloned(),
            question,
            images,
            video,
            answers,
            choices,
            metric,
            as_written: false,
        },
    ))
}

/// The questions of one LLaVA sample (one per human turn followed by a gpt turn).
fn parse_llava_sample(
    v: &Value,
    base: &Path,
    video_base: &Path,
) -> std::result::Result<(Option<String>, Vec<Item>), String> {
    let o = v.as_object().ok_or("each sample must be a JSON object")?;
    let turns = o
        .get("conversations")
        .and_then(Value::as_array)
        .ok_or("`conversations` (a list of {from, value}) is required")?;
    let images: Vec<PathBuf> = match o.get("image") {
        None | Some(Value::Null) => vec![],
        Some(i) => strings(i)
            .ok_or("`image` must be a path or a list of paths")?
            .iter()
            .map(|p| resolve(base, p))
            .collect(),
    };
    let video = match o.get("video") {
        None | Some(Value::Null) => None,
        Some(v) => Some(resolve(
            video_base,
            v.as_str().ok_or("`video` must be a path")?,
        )),
    };
    let metric = match o.get("metric") {
        Some(m) => {
            let name = m.as_str().ok_or("`metric` must be a string")?;
            let m = Metric::from_name(name).ok_or_else(|| {
                format!("unknown metric {name:?}; expected exact, vqa, anls, relaxed or recall")
            })?;
            if m == Metric::Choice {
                return Err("metric `choice` needs a JSONL task line with `choices`".into());
            }
            m
        }
        None => Metric::Exact,
    };
    let task = match o.get("task") {
        Some(t) => Some(t.as_str().ok_or("`task` must be a string")?.to_string()),
        None => None,
    };
    let mut items = vec![];
    let mut i = 0;
    while i < turns.len() {
        let from = turns[i].get("from").and_then(Value::as_str).unwrap_or("");
        let value = turns[i]
            .get("value")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("conversations[{i}].value must be a string"))?;
        if matches!(from, "human" | "user") {
            let next = turns.get(i + 1);
            let reply_from = next
                .and_then(|t| t.get("from"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if !matches!(reply_from, "gpt" | "assistant") {
                return Err(format!(
                    "conversations[{i}] (human) is not followed by a gpt turn"
                ));
            }
            let answer = next
                .and_then(|t| t.get("value"))
                .and_then(Value::as_str)
                .ok_or_else(|| format!("conversations[{}].value must be a string", i + 1))?;
            let question = value
                .replace("<image>\n", "")
                .replace("\n<image>", "")
                .replace("<image>", "")
                .replace("<video>\n", "")
                .replace("<video>", "")
                .trim()
                .to_string();
            items.push(Item {
                id: o.get("id").map(|id| {
                    Value::from(format!(
                        "{}#{}",
                        id.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| id.to_string()),
                        i / 2
                    ))
                }),
                question,
                images: images.clone(),
                video: video.clone(),
                answers: vec![answer.to_string()],
                choices: vec![],
                metric,
                as_written: true,
            });
            i += 2;
        } else {
            i += 1;
        }
    }
    if items.is_empty() {
        return Err("no human turn followed by a gpt turn".into());
    }
    Ok((task, items))
}

/// Reads a task file: `.jsonl` lines that are task lines (with `question`) or LLaVA samples
/// (with `conversations`), or a `.json` list of either. Every line with a problem is reported
/// (file:line and what was expected); nothing is skipped silently.
pub fn from_file(path: &Path) -> Result<Vec<Box<dyn Task>>> {
    from_file_with(path, None, None)
}

/// As [`from_file`], with relative image paths resolved against `image_folder` and relative
/// video paths against `video_dir` when given (`onevision train`'s `--image-folder` /
/// `--video-folder`), else against the file's directory.
pub fn from_file_with(
    path: &Path,
    image_folder: Option<&Path>,
    video_dir: Option<&Path>,
) -> Result<Vec<Box<dyn Task>>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
    let file_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = image_folder
        .map(Path::to_path_buf)
        .unwrap_or_else(|| file_dir.clone());
    let video_base = video_dir.map(Path::to_path_buf).unwrap_or(file_dir);
    let mut problems = vec![];
    let entries: Vec<(usize, Value)> = if path.extension().is_some_and(|e| e == "json") {
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| bad(path, e.line(), format!("not valid JSON: {e}")))?;
        match v {
            Value::Array(a) => a.into_iter().enumerate().map(|(i, v)| (i + 1, v)).collect(),
            _ => return Err(bad(path, 1, "a .json task file must be a list of samples")),
        }
    } else {
        let mut out = vec![];
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(line) {
                Ok(v) => out.push((i + 1, v)),
                Err(e) => {
                    problems.push(format!("{}:{}: not valid JSON: {e}", path.display(), i + 1))
                }
            }
        }
        out
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "custom".into());
    let mut by_task: BTreeMap<String, Vec<Item>> = BTreeMap::new();
    let mut order: Vec<String> = vec![];
    for (line, v) in &entries {
        let parsed = if v.get("conversations").is_some() {
            parse_llava_sample(v, &base, &video_base)
        } else {
            parse_task_line(v, &base, &video_base).map(|(t, i)| (t, vec![i]))
        };
        match parsed {
            Ok((task, items)) => {
                let name = task.unwrap_or_else(|| stem.clone());
                if !by_task.contains_key(&name) {
                    order.push(name.clone());
                }
                by_task.entry(name).or_default().extend(items);
            }
            Err(e) => problems.push(format!("{}:{line}: {e}", path.display())),
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        let shown: Vec<String> = problems.into_iter().take(20).collect();
        return Err(Error::Dataset {
            what: path.display().to_string(),
            reason: format!("{n} entries could not be read:\n  {}", shown.join("\n  ")),
        });
    }
    if order.is_empty() {
        return Err(bad(path, 1, "the file has no questions"));
    }
    Ok(order
        .into_iter()
        .map(|name| {
            let items = by_task.remove(&name).unwrap_or_default();
            Box::new(CustomTask {
                name,
                source: path.to_path_buf(),
                items,
            }) as Box<dyn Task>
        })
        .collect())
}

struct ItemDocs {
    rows: Vec<Row>,
}

impl Documents for ItemDocs {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn row(&mut self, doc_id: usize) -> std::result::Result<Row, DocError> {
        self.rows
            .get(doc_id)
            .cloned()
            .ok_or_else(|| DocError::new(format!("no document {doc_id}")))
    }
}

fn item_row(item: &Item) -> Row {
    let mut f = Map::new();
    if let Some(id) = &item.id {
        f.insert("id".into(), id.clone());
    }
    f.insert("question".into(), Value::from(item.question.clone()));
    f.insert("answers".into(), Value::from(item.answers.clone()));
    if !item.choices.is_empty() {
        f.insert("choices".into(), Value::from(item.choices.clone()));
    }
    f.insert("metric".into(), Value::from(item.metric.name()));
    if item.as_written {
        f.insert("as_written".into(), Value::from(true));
    }
    if !item.images.is_empty() {
        f.insert(
            "images".into(),
            Value::from(
                item.images
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>(),
            ),
        );
    }
    if let Some(v) = &item.video {
        f.insert("video".into(), Value::from(v.display().to_string()));
    }
    Row {
        fields: f,
        images: Default::default(),
    }
}

fn doc_metric(doc: &Map<String, Value>) -> std::result::Result<Metric, DocError> {
    let name = field_str(doc, "metric")?;
    Metric::from_name(name).ok_or_else(|| DocError::new(format!("unknown metric {name:?}")))
}

fn doc_strings(doc: &Map<String, Value>, key: &str) -> Vec<String> {
    doc.get(key).and_then(strings).unwrap_or_default()
}

impl Task for CustomTask {
    fn name(&self) -> &str {
        &self.name
    }

    fn dataset(&self) -> DatasetSpec {
        DatasetSpec {
            repo: self.source.display().to_string(),
            config: None,
            split: "all".into(),
            columns: vec![],
        }
    }

    fn documents(&self) -> Option<Result<Box<dyn Documents>>> {
        Some(Ok(Box::new(ItemDocs {
            rows: self.items.iter().map(item_row).collect(),
        })))
    }

    fn max_new_tokens(&self) -> usize {
        if self.items.iter().any(|i| i.as_written) {
            // lmms-eval's default when a task sets none: room for a detailed description.
            1024
        } else if self.items.iter().all(|i| i.metric == Metric::Choice) {
            16
        } else {
            128
        }
    }

    fn prompt(&self, row: &Row, _ctx: &Context) -> std::result::Result<Prompt, DocError> {
        let doc = &row.fields;
        let question = field_str(doc, "question")?;
        let choices = doc_strings(doc, "choices");
        let as_written = doc.get("as_written") == Some(&Value::Bool(true));
        let text = if as_written {
            question.to_string()
        } else if choices.is_empty() {
            format!("{question}{OPEN_POST_PROMPT}")
        } else {
            let opts: Vec<String> = choices
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{}. {c}", letter(i)))
                .collect();
            format!("{question}\n{}{CHOICE_POST_PROMPT}", opts.join("\n"))
        };
        let visual = if let Some(v) = doc.get("video").and_then(Value::as_str) {
            let p = PathBuf::from(v);
            // A video file, or a directory of frames (as `onevision train` reads them).
            if !p.exists() {
                return Err(DocError::new(format!("video {} not found", p.display())));
            }
            Visual::Video(p)
        } else {
            let paths = doc_strings(doc, "images");
            if paths.is_empty() {
                Visual::None
            } else {
                let mut imgs = vec![];
                for p in paths {
                    let bytes =
                        std::fs::read(&p).map_err(|e| DocError::new(format!("image {p}: {e}")))?;
                    imgs.push(EncodedImage {
                        bytes,
                        path: Some(p),
                    });
                }
                Visual::Images(imgs)
            }
        };
        Ok(Prompt { text, visual })
    }

    fn target(&self, doc: &Map<String, Value>) -> Value {
        let a = doc_strings(doc, "answers");
        if a.len() == 1 {
            Value::from(a[0].clone())
        } else {
            Value::from(a)
        }
    }

    fn filter_name(&self) -> &str {
        "none"
    }

    fn filter(&self, response: &str, doc: &Map<String, Value>) -> String {
        match doc_metric(doc) {
            Ok(Metric::Choice) => choice_filter(response),
            _ => response.to_string(),
        }
    }

    fn process(
        &self,
        doc: &Map<String, Value>,
        filtered: &str,
        _rng: &mut PyRandom,
    ) -> std::result::Result<Vec<(String, Value)>, DocError> {
        let metric = doc_metric(doc)?;
        let refs = doc_strings(doc, "answers");
        let score = score(metric, filtered, &refs);
        Ok(vec![
            (metric.name().to_string(), Value::from(score)),
            ("score".into(), Value::from(score)),
        ])
    }

    fn metrics(&self) -> Vec<MetricSpec> {
        let mut seen: Vec<Metric> = vec![];
        for i in &self.items {
            if !seen.contains(&i.metric) {
                seen.push(i.metric);
            }
        }
        let mut v: Vec<MetricSpec> = seen.iter().map(|m| MetricSpec::mean(m.name())).collect();
        // A task that mixes metrics also gets their mean over all its documents.
        if seen.len() > 1 {
            v.push(MetricSpec::mean("score"));
        }
        v
    }
}

/// The choice filter: AI2D's (`^\s*([A-Z])\.` gives the letter, else the response).
fn choice_filter(response: &str) -> String {
    crate::metrics::filters::ai2d_multi_choice_regex_filter(response)
}

/// One document's score under its metric (1.0 / 0.0, or a fraction for vqa and anls).
pub fn score(metric: Metric, answer: &str, refs: &[String]) -> f64 {
    use crate::metrics::{anls, exact, relaxed, vqa};
    let any = |f: &dyn Fn(&str) -> bool| if refs.iter().any(|r| f(r)) { 1.0 } else { 0.0 };
    match metric {
        Metric::Exact | Metric::Choice => {
            any(&|r| exact::exact_match_hf_evaluate(answer, r, true, true) == 1.0)
        }
        Metric::Vqa if refs.len() >= 4 => {
            vqa::vqa_leave_one_out_accuracy(refs, answer).unwrap_or(0.0)
        }
        Metric::Vqa => {
            let a = vqa::eval_ai_answer_processor(answer);
            any(&|r| vqa::eval_ai_answer_processor(r) == a)
        }
        Metric::Anls => {
            let r: Vec<&str> = refs.iter().map(String::as_str).collect();
            anls::anls(&r, answer, 0.5).unwrap_or(0.0)
        }
        Metric::Relaxed => any(&|r| relaxed::relaxed_correctness(answer, r, 0.05)),
        Metric::Recall => refs
            .iter()
            .map(|r| phrase_recall(answer, r))
            .fold(0.0, f64::max),
    }
}

/// A text's phrases: its sentences, split again at commas and at " and ", each lowercased,
/// trimmed, without end punctuation; empty ones dropped.
fn phrases(text: &str) -> Vec<String> {
    text.split(['.', '!', '?', ';', ','])
        .flat_map(|s| s.split(" and "))
        .map(|p| p.trim().to_lowercase())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The share of the reference's phrases that the answer also has (as a multiset: a phrase the
/// reference has twice must be there twice); 1 for a reference without phrases.
pub fn phrase_recall(answer: &str, reference: &str) -> f64 {
    let want = phrases(reference);
    if want.is_empty() {
        return 1.0;
    }
    let mut have = phrases(answer);
    let mut found = 0usize;
    for w in &want {
        if let Some(i) = have.iter().position(|h| h == w) {
            have.swap_remove(i);
            found += 1;
        }
    }
    found as f64 / want.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn scores_by_metric() {
        let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            score(Metric::Exact, "The Cat.", &r(&["dog", "the cat"])),
            1.0
        );
        assert_eq!(score(Metric::Exact, "a cat", &r(&["the cat"])), 0.0);
        // EvalAI normalization drops articles.
        assert_eq!(score(Metric::Vqa, "a cat", &r(&["cat"])), 1.0);
        // Leave-one-out over 4 references: three subsets give min(1, 2/3), one gives 1.
        assert_eq!(score(Metric::Vqa, "two", &r(&["2", "2", "2", "3"])), 0.75);
        assert_eq!(score(Metric::Relaxed, "10.4", &r(&["10"])), 1.0);
        assert_eq!(score(Metric::Relaxed, "10.6", &r(&["10"])), 0.0);
        assert!(score(Metric::Anls, "astronut", &r(&["astronaut"])) > 0.8);
        assert_eq!(choice_filter("B. coffee"), "B");
        assert_eq!(
            score(Metric::Choice, &choice_filter("(B)"), &r(&["B"])),
            1.0
        );
    }

    #[test]
    fn recall_counts_the_reference_phrases_the_answer_has() {
        let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let caption = "A blue star, a green circle and two red squares.";
        assert_eq!(score(Metric::Recall, caption, &r(&[caption])), 1.0);
        // Order and case do not matter; a wrong attribute loses its phrase.
        let swapped = "Two red squares, a green circle and a blue star";
        assert_eq!(score(Metric::Recall, swapped, &r(&[caption])), 1.0);
        let wrong = "A blue star, a red circle and two red squares.";
        assert!((score(Metric::Recall, wrong, &r(&[caption])) - 2.0 / 3.0).abs() < 1e-12);
        // A phrase the reference has twice counts twice.
        let detail = "There are two shapes. A small red circle at the top left. A small red circle at the center.";
        let once = "There are two shapes. A small red circle at the top left.";
        assert!((score(Metric::Recall, once, &r(&[detail])) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(score(Metric::Recall, "", &r(&[caption])), 0.0);
        assert_eq!(Metric::from_name("recall"), Some(Metric::Recall));
    }

    #[test]
    fn reads_task_lines_and_llava_samples() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "t.jsonl",
            r#"{"question": "Q1", "image": "a.png", "answer": "x"}
{"question": "Q2", "choices": ["p", "q", "r"], "answer": 2, "task": "mc"}
{"question": "Q3", "choices": ["p", "q"], "answer": "q", "task": "mc"}

{"id": 7, "image": ["a.png", "b.png"], "conversations": [{"from": "human", "value": "<image>\n<image>\nWhat?"}, {"from": "gpt", "value": "That."}, {"from": "human", "value": "And?"}, {"from": "gpt", "value": "This."}], "metric": "anls"}
{"id": "t", "conversations": [{"from": "human", "value": "Say hello.\nAnswer with one word."}, {"from": "gpt", "value": "Hello"}], "task": "chat"}
"#,
        );
        let tasks = from_file(&p).unwrap();
        let names: Vec<&str> = tasks.iter().map(|t| t.name()).collect();
        assert_eq!(names, ["t", "mc", "chat"]);
        // A LLaVA sample's turn is asked exactly as written, with lmms-eval's default length.
        let mut chat = tasks[2].documents().unwrap().unwrap();
        let asked = tasks[2]
            .prompt(&chat.row(0).unwrap(), &Context::default())
            .unwrap();
        assert_eq!(asked.text, "Say hello.\nAnswer with one word.");
        assert_eq!(asked.visual, Visual::None);
        assert_eq!(tasks[2].max_new_tokens(), 1024);
        let mut docs = tasks[0].documents().unwrap().unwrap();
        assert_eq!(docs.len(), 3);
        let row = docs.row(1).unwrap();
        assert_eq!(row.fields["question"], "What?");
        assert_eq!(row.fields["metric"], "anls");
        assert_eq!(row.fields["id"], "7#0");
        let row2 = docs.row(2).unwrap();
        assert_eq!(row2.fields["question"], "And?");
        assert_eq!(row2.fields["answers"], serde_json::json!(["This."]));
        let mut mc = tasks[1].documents().unwrap().unwrap();
        assert_eq!(
            mc.row(0).unwrap().fields["answers"],
            serde_json::json!(["C"])
        );
        assert_eq!(
            mc.row(1).unwrap().fields["answers"],
            serde_json::json!(["B"])
        );
        assert_eq!(tasks[1].max_new_tokens(), 16);
        let prompt = tasks[1]
            .prompt(&mc.row(0).unwrap(), &Context::default())
            .unwrap();
        assert_eq!(
            prompt.text,
            "Q2\nA. p\nB. q\nC. r\nAnswer with the option's letter from the given choices directly."
        );
        // A missing image fails that document only, naming the file.
        let row0 = docs.row(0).unwrap();
        let err = tasks[0].prompt(&row0, &Context::default()).unwrap_err();
        assert!(err.0.contains("a.png"), "{err}");
    }

    #[test]
    fn every_bad_line_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "bad.jsonl",
            r#"{"question": "ok", "answer": "x"}
{"answer": "x"}
{"question": "Q", "choices": ["a", "b"], "answer": "Z"}
{"question": "Q", "answer": "x", "metric": "bleu"}
not json
"#,
        );
        let err = from_file(&p).err().unwrap().to_string();
        assert!(
            err.contains("bad.jsonl:2: `question` (a string) is required"),
            "{err}"
        );
        assert!(
            err.contains("bad.jsonl:3: answer \"Z\" is neither an option letter"),
            "{err}"
        );
        assert!(
            err.contains("bad.jsonl:4: unknown metric \"bleu\""),
            "{err}"
        );
        let p = write(
            dir.path(),
            "worse.jsonl",
            "{\"question\": \"ok\", \"answer\": \"x\"}\nnot json\n",
        );
        let err = from_file(&p).err().unwrap().to_string();
        assert!(err.contains("worse.jsonl:2: not valid JSON"), "{err}");
    }
}
