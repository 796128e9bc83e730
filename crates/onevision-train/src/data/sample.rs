//! One training sample, parsed from LLaVA-NeXT's JSON shape as `LazySupervisedDataset._get_item`
//! reads it, with every way it can be wrong reported as a [`Problem`].

use std::fmt;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::media::{Fault, Kind, MediaChecker};
use super::{Origin, Problem, Speaker, Turn};

/// LLaVA-NeXT's image placeholder (`DEFAULT_IMAGE_TOKEN`).
pub const IMAGE_MARKER: &str = "<image>";

/// The media of a sample; paths already resolved against the image / video folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaRef {
    Text,
    /// One path is a single image (AnyRes), several a multi-image set (the pad path), as
    /// `_get_item` decides by `len(image_file) > 1`.
    Images(Vec<PathBuf>),
    /// A video file or a directory of its frames; its one `<image>` marker stands for it.
    Video(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Modality {
    Text,
    SingleImage,
    MultiImage,
    Video,
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Modality::Text => "text",
            Modality::SingleImage => "single image",
            Modality::MultiImage => "multi-image",
            Modality::Video => "video",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The sample's `id` (a number is written as JSON writes it); a sample without one is named
    /// `<file>:<line>`, since many public sets have no ids (upstream falls back to the index).
    pub id: String,
    pub origin: Origin,
    pub media: MediaRef,
    /// The turns as written (a leading gpt turn included: the template drops it, as
    /// `preprocess_qwen` does), after `preprocess_multimodal`'s rewrite for media samples.
    pub turns: Vec<Turn>,
}

impl Sample {
    pub fn modality(&self) -> Modality {
        match &self.media {
            MediaRef::Text => Modality::Text,
            MediaRef::Images(paths) if paths.len() == 1 => Modality::SingleImage,
            MediaRef::Images(_) => Modality::MultiImage,
            MediaRef::Video(_) => Modality::Video,
        }
    }
}

/// Python's `str.strip()`: it strips what `str.isspace()` calls whitespace, which is Unicode's
/// White_Space (Rust's `char::is_whitespace`) plus the separators U+001C..U+001F.
pub(crate) fn python_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// LLaVA-NeXT's `preprocess_multimodal` for one turn, with the OneVision settings
/// (`mm_use_im_start_end` off, no `mmtag`): a value holding exactly one `<image>` not at its
/// very start becomes `"<image>\n" + rest.strip()` (then stripped again, which can only trim
/// the end); a value with several markers is left as is (the "interleaved data" TODO upstream);
/// then the VideoInstruct-100K noise string `QA_GT_caption_based_noisy` is removed, in every
/// value, after the strip (so a space before it stays).
pub fn preprocess_multimodal(value: &str) -> String {
    let mut value = if value.matches(IMAGE_MARKER).count() == 1 && !value.starts_with(IMAGE_MARKER)
    {
        let rest = value.replace(IMAGE_MARKER, "");
        let joined = format!("{IMAGE_MARKER}\n{}", python_strip(&rest));
        python_strip(&joined).to_owned()
    } else {
        value.to_owned()
    };
    const NOISE: &str = "QA_GT_caption_based_noisy";
    if value.contains(NOISE) {
        value = value.replace(NOISE, "");
    }
    value
}

/// The JSON type of a value, for "a JSON list; expected ...".
pub(super) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// The same with its article, for "`id` is an object; expected ...".
pub(super) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A turn's field: the key it was found under (for messages) and its value.
type Field<'a> = Option<(&'static str, &'a Value)>;

/// The `role` / `content` keys that `preprocess_qwen` reads first (it falls back to `from` /
/// `value` when either is missing), or LLaVA's `from` / `value`, each key alone accepted too.
fn turn_fields(turn: &Map<String, Value>) -> (Field<'_>, Field<'_>) {
    if let (Some(role), Some(content)) = (turn.get("role"), turn.get("content")) {
        return (Some(("role", role)), Some(("content", content)));
    }
    let from = turn
        .get("from")
        .map(|v| ("from", v))
        .or_else(|| turn.get("role").map(|v| ("role", v)));
    let value = turn
        .get("value")
        .map(|v| ("value", v))
        .or_else(|| turn.get("content").map(|v| ("content", v)));
    (from, value)
}

/// `human`/`gpt` as LLaVA writes them, `user`/`assistant` as `preprocess_qwen`'s
/// `roles.get(role, role)` passes them through. Case-sensitive, as upstream.
fn speaker(role: &str) -> Option<Speaker> {
    match role {
        "human" | "user" => Some(Speaker::Human),
        "gpt" | "assistant" => Some(Speaker::Gpt),
        _ => None,
    }
}

fn speaker_name(s: Speaker) -> &'static str {
    match s {
        Speaker::Human => "human",
        Speaker::Gpt => "gpt",
    }
}

fn parse_turns(conversations: &Value) -> Result<Vec<Turn>, Vec<String>> {
    let Value::Array(list) = conversations else {
        return Err(vec![format!(
            "`conversations` is {}; expected a list of turns like {{\"from\": \"human\", \"value\": \"...\"}}",
            kind_of(conversations)
        )]);
    };
    if list.is_empty() {
        return Err(vec![
            "`conversations` is empty; expected a human turn and a gpt turn at least".to_owned(),
        ]);
    }
    let mut turns = Vec::with_capacity(list.len());
    let mut errors = Vec::new();
    for (k, turn) in list.iter().enumerate() {
        let k = k + 1;
        let Value::Object(turn) = turn else {
            errors.push(format!(
                "turn {k} is {}; expected an object with `from` and `value`",
                kind_of(turn)
            ));
            continue;
        };
        let (from, value) = turn_fields(turn);
        let from = match from {
            None => {
                errors.push(format!(
                    "turn {k} has no `from` (or `role`); expected \"human\" or \"gpt\""
                ));
                None
            }
            Some((_, Value::String(role))) => match speaker(role) {
                Some(s) => Some(s),
                None => {
                    errors.push(format!(
                        "turn {k} is from {role:?}; expected \"human\" or \"gpt\" (or \"user\" / \"assistant\")"
                    ));
                    None
                }
            },
            Some((key, other)) => {
                errors.push(format!(
                    "turn {k}: `{key}` is {}; expected \"human\" or \"gpt\"",
                    kind_of(other)
                ));
                None
            }
        };
        let value = match value {
            None => {
                errors.push(format!(
                    "turn {k} has no `value` (or `content`); expected a string"
                ));
                None
            }
            Some((_, Value::String(s))) => Some(s.clone()),
            Some((key, other)) => {
                errors.push(format!(
                    "turn {k}: `{key}` is {}; expected a string",
                    kind_of(other)
                ));
                None
            }
        };
        if let (Some(from), Some(value)) = (from, value) {
            turns.push(Turn { from, value });
        }
    }
    if errors.is_empty() {
        Ok(turns)
    } else {
        Err(errors)
    }
}

/// After dropping one leading turn that is not the human's (as `preprocess_qwen` and the other
/// `preprocess_*` functions do), turns alternate human, gpt, human, ...; and there is something
/// to learn from: a gpt turn. A trailing human turn is allowed (it is masked).
fn check_alternation(turns: &[Turn]) -> Result<(), String> {
    let start = usize::from(turns.first().is_some_and(|t| t.from != Speaker::Human));
    for (k, turn) in turns.iter().enumerate().skip(start) {
        let expected = if (k - start) % 2 == 0 {
            Speaker::Human
        } else {
            Speaker::Gpt
        };
        if turn.from != expected {
            return Err(format!(
                "turn {} is from {}; expected {}: turns alternate human, gpt, human, gpt, ... \
                 (after one leading gpt turn, which is dropped as LLaVA-NeXT's preprocess_qwen drops it)",
                k + 1,
                speaker_name(turn.from),
                speaker_name(expected)
            ));
        }
    }
    if turns.len() <= start + 1 {
        return Err(format!(
            "no gpt turn after the first human turn ({} turn(s)); expected at least one gpt answer to learn from",
            turns.len()
        ));
    }
    Ok(())
}

/// The `image` / `video` fields, resolved; `null` is read as absent (datasets exported from a
/// table write `"image": null` for their text-only rows).
fn parse_media(
    obj: &Map<String, Value>,
    checker: &MediaChecker<'_>,
) -> Result<(MediaRef, Vec<(Kind, String)>), String> {
    let image = obj.get("image").filter(|v| !v.is_null());
    let video = obj.get("video").filter(|v| !v.is_null());
    match (image, video) {
        (Some(_), Some(_)) => Err(
            "has both `image` and `video`; expected one of them (or neither, for text)".to_owned(),
        ),
        (None, None) => Ok((MediaRef::Text, Vec::new())),
        (None, Some(Value::String(v))) => Ok((
            MediaRef::Video(checker.resolve(Kind::Video, v)),
            vec![(Kind::Video, v.clone())],
        )),
        (None, Some(other)) => Err(format!(
            "`video` is {}; expected a path string",
            kind_of(other)
        )),
        (Some(Value::String(p)), None) => Ok((
            MediaRef::Images(vec![checker.resolve(Kind::Image, p)]),
            vec![(Kind::Image, p.clone())],
        )),
        (Some(Value::Array(list)), None) => {
            if list.is_empty() {
                return Err(
                    "`image` is an empty list; expected at least one path (leave `image` out for a text-only sample)"
                        .to_owned(),
                );
            }
            let mut raws = Vec::with_capacity(list.len());
            for (k, item) in list.iter().enumerate() {
                match item {
                    Value::String(p) => raws.push(p.clone()),
                    other => {
                        return Err(format!(
                            "`image` element {} is {}; expected a path string",
                            k + 1,
                            kind_of(other)
                        ))
                    }
                }
            }
            let paths = raws
                .iter()
                .map(|p| checker.resolve(Kind::Image, p))
                .collect();
            Ok((
                MediaRef::Images(paths),
                raws.into_iter().map(|p| (Kind::Image, p)).collect(),
            ))
        }
        (Some(other), None) => Err(format!(
            "`image` is {}; expected a path or a list of paths",
            kind_of(other)
        )),
    }
}

/// How many markers a sample's media needs, and the message when the count differs.
fn check_markers(media: &MediaRef, found: usize) -> Result<(), String> {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    match media {
        MediaRef::Text if found > 0 => Err(format!(
            "{found} `<image>` marker{} in a sample without `image` or `video`; expected none \
             (or give the sample its image)",
            plural(found)
        )),
        MediaRef::Images(paths) if found != paths.len() => Err(format!(
            "{found} `<image>` marker{} for {} image{}; expected one marker per image",
            plural(found),
            paths.len(),
            plural(paths.len())
        )),
        MediaRef::Video(_) if found != 1 => Err(format!(
            "{found} `<image>` marker{} in a video sample; expected exactly 1, which stands for the video",
            plural(found)
        )),
        _ => Ok(()),
    }
}

/// Parses one sample; on any problem, pushes every problem found to `problems` and returns
/// `None` (the sample is not trained on).
pub(super) fn parse_sample(
    value: &Value,
    origin: &Origin,
    checker: &mut MediaChecker<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Sample> {
    let Value::Object(obj) = value else {
        problems.push(Problem::new(
            origin,
            None,
            format!(
                "a JSON {}; expected a sample object with `conversations`",
                json_type(value)
            ),
        ));
        return None;
    };
    let before = problems.len();

    let (own_id, id_problem) = match obj.get("id") {
        None | Some(Value::Null) => (None, None),
        Some(Value::String(s)) => (Some(s.clone()), None),
        Some(Value::Number(n)) => (Some(n.to_string()), None),
        Some(other) => (
            None,
            Some(format!(
                "`id` is {}; expected a string or a number",
                kind_of(other)
            )),
        ),
    };
    let id = own_id.as_deref();
    let mut report = |what: String| problems.push(Problem::new(origin, id, what));
    if let Some(what) = id_problem {
        report(what);
    }

    let media = parse_media(obj, checker).map_err(&mut report).ok();

    let turns = match obj.get("conversations") {
        None => {
            report(
                "no `conversations`; expected a list of turns like {\"from\": \"human\", \"value\": \"...\"}"
                    .to_owned(),
            );
            None
        }
        Some(c) => match parse_turns(c) {
            Ok(turns) => Some(turns),
            Err(errors) => {
                errors.into_iter().for_each(&mut report);
                None
            }
        },
    };

    let turns = turns.and_then(|turns| {
        check_alternation(&turns)
            .map_err(&mut report)
            .ok()
            .map(|()| turns)
    });

    // `_get_item` runs `preprocess_multimodal` for image and video samples only.
    let turns = match (&media, turns) {
        (Some((MediaRef::Text, _)), Some(turns)) => Some(turns),
        (_, Some(turns)) => Some(
            turns
                .into_iter()
                .map(|t| Turn {
                    from: t.from,
                    value: preprocess_multimodal(&t.value),
                })
                .collect(),
        ),
        (_, None) => None,
    };

    if let (Some((media, _)), Some(turns)) = (&media, &turns) {
        let found = turns
            .iter()
            .map(|t| t.value.matches(IMAGE_MARKER).count())
            .sum();
        if let Err(what) = check_markers(media, found) {
            report(what);
        }
    }

    if let Some((_, raws)) = &media {
        for (kind, raw) in raws {
            let path = checker.resolve(*kind, raw);
            match checker.check(*kind, &path) {
                Ok(()) => {}
                Err(Fault::Missing) => report(format!(
                    "{} {raw:?} not found at {}; expected a file there (relative {} paths are resolved against {})",
                    kind.name(),
                    path.display(),
                    kind.name(),
                    checker.base_hint(*kind)
                )),
                Err(Fault::Unusable(why)) => {
                    report(format!("{} {} {why}", kind.name(), path.display()))
                }
            }
        }
    }

    if problems.len() > before {
        return None;
    }
    let (media, _) = media?;
    let turns = turns?;
    let id = own_id.unwrap_or_else(|| origin.to_string());
    Some(Sample {
        id,
        origin: origin.clone(),
        media,
        turns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DataOptions;
    use serde_json::json;
    use std::path::Path;

    #[test]
    fn marker_rewrite_follows_preprocess_multimodal() {
        // Not at the start: moved to the front, the rest stripped.
        assert_eq!(
            preprocess_multimodal("Describe this. <image>"),
            "<image>\nDescribe this."
        );
        assert_eq!(
            preprocess_multimodal("What is <image> here?"),
            "<image>\nWhat is  here?"
        );
        // Leading whitespace means "not at its start".
        assert_eq!(preprocess_multimodal("  <image>\nhi  "), "<image>\nhi");
        // Only the marker: the final strip removes the newline.
        assert_eq!(preprocess_multimodal(" <image> "), "<image>");
        // At the start: untouched, trailing whitespace included.
        assert_eq!(preprocess_multimodal("<image>\nhi  "), "<image>\nhi  ");
        // Two markers: untouched (interleaved data).
        assert_eq!(
            preprocess_multimodal("a <image> b <image>"),
            "a <image> b <image>"
        );
        // Python's strip: Unicode spaces and the U+001C..U+001F separators.
        assert_eq!(
            preprocess_multimodal("\u{3000}x\u{1c}<image>\u{a0}"),
            "<image>\nx"
        );
        // Not a marker: untouched.
        assert_eq!(preprocess_multimodal("x <Image> y "), "x <Image> y ");
        // The noise string goes after the strip, leaving the space before it.
        assert_eq!(
            preprocess_multimodal("Q QA_GT_caption_based_noisy<image>"),
            "<image>\nQ "
        );
        assert_eq!(
            preprocess_multimodal("<image>\nQ QA_GT_caption_based_noisy"),
            "<image>\nQ "
        );
    }

    #[test]
    fn python_strip_matches_str_isspace() {
        // The set printed by `[hex(c) for c in range(0x110000) if chr(c).isspace()]`.
        let py: Vec<u32> = [
            0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680,
        ]
        .into_iter()
        .chain(0x2000..=0x200a)
        .chain([0x2028, 0x2029, 0x202f, 0x205f, 0x3000])
        .collect();
        for c in (0..0x11_0000u32).filter_map(char::from_u32) {
            let s = c.to_string();
            assert_eq!(
                python_strip(&s).is_empty(),
                py.contains(&(c as u32)),
                "U+{:04X}",
                c as u32
            );
        }
    }

    fn parse(v: Value) -> (Option<Sample>, Vec<String>) {
        let opts = DataOptions::default();
        let mut checker = MediaChecker::new(&opts);
        let mut problems = Vec::new();
        let origin = Origin {
            file: PathBuf::from("d.jsonl"),
            line: 4,
        };
        let s = parse_sample(&v, &origin, &mut checker, &mut problems);
        (s, problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn role_aliases_and_keys() {
        let (s, p) = parse(json!({"id": 5, "conversations": [
            {"from": "user", "value": "hi"},
            {"role": "assistant", "content": "yo"},
            {"from": "human", "value": "more"},
            {"role": "gpt", "value": "ok", "weight": 1},
        ]}));
        assert!(p.is_empty(), "{p:?}");
        let s = s.expect("sample");
        assert_eq!(s.id, "5");
        let roles: Vec<Speaker> = s.turns.iter().map(|t| t.from).collect();
        assert_eq!(
            roles,
            [Speaker::Human, Speaker::Gpt, Speaker::Human, Speaker::Gpt]
        );
        assert_eq!(s.turns[1].value, "yo");
        assert_eq!(s.modality(), Modality::Text);
        // Case-sensitive, as `roles.get(role, role)`.
        let (s, p) = parse(
            json!({"conversations": [{"from": "Human", "value": "a"}, {"from": "gpt", "value": "b"}]}),
        );
        assert!(s.is_none());
        assert_eq!(
            p,
            ["d.jsonl:4: turn 1 is from \"Human\"; expected \"human\" or \"gpt\" (or \"user\" / \"assistant\")"]
        );
    }

    #[test]
    fn id_falls_back_to_origin_and_text_is_not_rewritten() {
        let (s, p) = parse(json!({"conversations": [
            {"from": "gpt", "value": "a leading answer"},
            {"from": "human", "value": "plain QA_GT_caption_based_noisy "},
            {"from": "gpt", "value": "b"},
        ], "image": null, "extra": [1, 2]}));
        assert!(p.is_empty(), "{p:?}");
        let s = s.expect("sample");
        assert_eq!(s.id, "d.jsonl:4");
        assert_eq!(s.media, MediaRef::Text);
        // The leading gpt turn is kept; text samples skip preprocess_multimodal.
        assert_eq!(s.turns.len(), 3);
        assert_eq!(s.turns[1].value, "plain QA_GT_caption_based_noisy ");
    }

    #[test]
    fn alternation_rules() {
        let t = |from| Turn {
            from,
            value: String::new(),
        };
        use Speaker::{Gpt, Human};
        assert!(check_alternation(&[t(Human), t(Gpt)]).is_ok());
        assert!(check_alternation(&[t(Gpt), t(Human), t(Gpt)]).is_ok());
        assert!(check_alternation(&[t(Human), t(Gpt), t(Human)]).is_ok());
        assert!(check_alternation(&[t(Gpt), t(Gpt), t(Human)]).is_err());
        assert!(check_alternation(&[t(Human), t(Human), t(Gpt)]).is_err());
        assert!(check_alternation(&[t(Human)]).is_err());
        assert!(check_alternation(&[t(Gpt), t(Human)]).is_err());
    }

    #[test]
    fn paths_resolve_against_folders_absolute_kept() {
        let opts = DataOptions {
            image_folder: Some(PathBuf::from("/imgs")),
            video_folder: None,
            seed: 0,
        };
        let c = MediaChecker::new(&opts);
        assert_eq!(
            c.resolve(Kind::Image, "a/b.png"),
            Path::new("/imgs/a/b.png")
        );
        assert_eq!(
            c.resolve(Kind::Image, "/abs/c.png"),
            Path::new("/abs/c.png")
        );
        assert_eq!(c.resolve(Kind::Video, "v.mp4"), Path::new("v.mp4"));
    }
}
