//! Task families over a scene: each builds one question and its answer, true by construction
//! from the scene description (never from the pixels).

use std::fmt;
use std::str::FromStr;

use crate::rng::Rng;
use crate::scene::{Color, Object, Position, Scene, Shape, BACKGROUND_NAME};

/// LLaVA-1.5's short-answer instruction (its VQAv2 / GQA prompts), so exact match can grade.
pub const SHORT_ANSWER: &str = "Answer the question using a single word or phrase.";
/// LLaVA-OneVision's multiple-choice instruction (lmms-eval's MMBench / SEED-Bench post-prompt).
pub const LETTER_ANSWER: &str = "Answer with the option's letter from the given choices directly.";

/// The families, named in each sample's `task` field so `onevision eval` reports per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Task {
    /// Stage 1: a one-sentence caption naming every color and shape with its count.
    Caption,
    /// Stage 1.5: every object with its size, color, shape and position.
    Detail,
    Color,
    Shape,
    /// How many objects of a color, of a shape, or in all (1-6).
    Count,
    Position,
    /// A color, shape or position question with four lettered options.
    Choice,
    // Multi-image and video families (crate::media): `Task::MEDIA`.
    MultiDiffers,
    MultiCount,
    MultiChanged,
    VideoDirection,
    VideoColor,
    VideoAppear,
    VideoOrder,
    // Rendered text, bar and pie charts (crate::text): `Task::DOC`.
    OcrWord,
    OcrNumber,
    ChartValue,
    ChartMax,
}

impl Task {
    pub const ALL: [Task; 7] = [
        Task::Caption,
        Task::Detail,
        Task::Color,
        Task::Shape,
        Task::Count,
        Task::Position,
        Task::Choice,
    ];

    /// How `onevision eval` grades the family: `recall` (the share of the reference's phrases
    /// the answer has: each object group of a caption, each object of a description) for the
    /// free-text families, `exact` for the rest.
    pub fn metric(self) -> &'static str {
        match self {
            Task::Caption | Task::Detail => "recall",
            _ => "exact",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Task::Caption => "caption",
            Task::Detail => "detail",
            Task::Color => "color",
            Task::Shape => "shape",
            Task::Count => "count",
            Task::Position => "position",
            Task::Choice => "choice",
            Task::MultiDiffers => "multi_differs",
            Task::MultiCount => "multi_count",
            Task::MultiChanged => "multi_changed",
            Task::VideoDirection => "video_direction",
            Task::VideoColor => "video_color",
            Task::VideoAppear => "video_appear",
            Task::VideoOrder => "video_order",
            Task::OcrWord => "ocr_word",
            Task::OcrNumber => "ocr_number",
            Task::ChartValue => "chart_value",
            Task::ChartMax => "chart_max",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// As its name, the `task` field `onevision eval` groups scores by.
impl serde::Serialize for Task {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl FromStr for Task {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Task::ALL
            .into_iter()
            .chain(Task::MEDIA)
            .chain(Task::DOC)
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Task::ALL
                    .iter()
                    .chain(&Task::MEDIA)
                    .chain(&Task::DOC)
                    .map(|t| t.name())
                    .collect();
                format!("unknown task {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// A question (without the `<image>` line) and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qa {
    pub question: String,
    pub answer: String,
}

/// Builds `task`'s question about `scene`; `None` when the scene has no object the question can
/// name unambiguously (the caller draws another scene).
pub fn ask(task: Task, scene: &Scene, rng: &mut Rng) -> Option<Qa> {
    match task {
        Task::Caption => Some(Qa {
            question: "Write a short caption for the image.".to_owned(),
            answer: caption(scene),
        }),
        Task::Detail => Some(Qa {
            question: "Describe every object in the image: its size, color, shape and position."
                .to_owned(),
            answer: detail(scene),
        }),
        Task::Color | Task::Shape | Task::Position => {
            let (question, answer, _) = attribute(task, scene, rng)?;
            Some(Qa {
                question: format!("{question}\n{SHORT_ANSWER}"),
                answer,
            })
        }
        Task::Count => {
            let (question, answer) = count(scene, rng);
            Some(Qa {
                question: format!("{question}\n{SHORT_ANSWER}"),
                answer,
            })
        }
        Task::Choice => choice(scene, rng),
        // Several images or frames: crate::media builds these.
        _ => None,
    }
}

const NUMBERS: [&str; 7] = ["zero", "one", "two", "three", "four", "five", "six"];

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// "A red circle and two blue squares.": each (color, shape) once, in reading order of first
/// appearance, with its count.
pub fn caption(scene: &Scene) -> String {
    let mut groups: Vec<(Color, Shape, usize)> = Vec::new();
    for o in &scene.objects {
        match groups
            .iter_mut()
            .find(|(c, s, _)| *c == o.color && *s == o.shape)
        {
            Some(g) => g.2 += 1,
            None => groups.push((o.color, o.shape, 1)),
        }
    }
    let phrases: Vec<String> = groups
        .iter()
        .map(|&(c, s, k)| {
            if k == 1 {
                format!("{} {} {}", article(c.name()), c.name(), s.name())
            } else {
                format!("{} {} {}", NUMBERS[k], c.name(), s.plural())
            }
        })
        .collect();
    sentence(&list(&phrases))
}

/// "There are two shapes on a gray background. A large red circle at the top left. ..."
pub fn detail(scene: &Scene) -> String {
    let n = scene.objects.len();
    let head = if n == 1 {
        format!("There is one shape on a {BACKGROUND_NAME} background.")
    } else {
        format!(
            "There are {} shapes on a {BACKGROUND_NAME} background.",
            NUMBERS[n]
        )
    };
    let mut out = head;
    for o in &scene.objects {
        out.push(' ');
        out.push_str(&sentence(&format!(
            "{} {} {} {} at the {}",
            article(o.size.name()),
            o.size.name(),
            o.color.name(),
            o.shape.name(),
            o.position()
        )));
    }
    out
}

/// "x", "x and y", "x, y and z".
fn list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn sentence(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => format!("{}{}.", f.to_uppercase(), c.as_str()),
        None => String::new(),
    }
}

/// Which attributes a referring expression uses.
#[derive(Clone, Copy)]
struct Refer {
    size: bool,
    color: bool,
    shape: bool,
    position: bool,
}

impl Refer {
    const fn new(size: bool, color: bool, shape: bool, position: bool) -> Self {
        Self {
            size,
            color,
            shape,
            position,
        }
    }

    fn matches(self, a: &Object, b: &Object) -> bool {
        (!self.size || a.size == b.size)
            && (!self.color || a.color == b.color)
            && (!self.shape || a.shape == b.shape)
            && (!self.position || a.position() == b.position())
    }

    fn phrase(self, o: &Object) -> String {
        let mut words = vec!["the"];
        if self.size {
            words.push(o.size.name());
        }
        if self.color {
            words.push(o.color.name());
        }
        words.push(if self.shape { o.shape.name() } else { "object" });
        let mut s = words.join(" ");
        if self.position {
            s.push_str(" at the ");
            s.push_str(o.position().name());
        }
        s
    }
}

/// The shortest expression that names `scene.objects[i]` alone without the asked attribute.
fn refer(task: Task, scene: &Scene, i: usize) -> Option<String> {
    let options: &[Refer] = match task {
        Task::Color => &[
            Refer::new(false, false, true, false),
            Refer::new(true, false, true, false),
            Refer::new(false, false, true, true),
            Refer::new(true, false, true, true),
        ],
        Task::Shape => &[
            Refer::new(false, true, false, false),
            Refer::new(true, true, false, false),
            Refer::new(false, true, false, true),
            Refer::new(true, true, false, true),
        ],
        _ => &[
            Refer::new(false, true, true, false),
            Refer::new(true, true, true, false),
        ],
    };
    let o = &scene.objects[i];
    options
        .iter()
        .find(|r| scene.count_where(|p| r.matches(o, p)) == 1)
        .map(|r| r.phrase(o))
}

/// A color, shape or position question about an object it can name alone: (question, answer,
/// the asked object).
fn attribute(task: Task, scene: &Scene, rng: &mut Rng) -> Option<(String, String, Object)> {
    let n = scene.objects.len();
    let start = rng.below(n);
    (0..n).map(|k| (start + k) % n).find_map(|i| {
        let name = refer(task, scene, i)?;
        let o = scene.objects[i];
        Some(match task {
            Task::Color => (
                format!("What color is {name}?"),
                o.color.name().to_owned(),
                o,
            ),
            Task::Shape => (
                format!("What shape is {name}?"),
                o.shape.name().to_owned(),
                o,
            ),
            _ => (
                format!("Where is {name}?"),
                o.position().name().to_owned(),
                o,
            ),
        })
    })
}

/// Half the questions count the dominant color (its count is uniform in 1-6), a quarter a shape
/// in the scene, a quarter all objects.
fn count(scene: &Scene, rng: &mut Rng) -> (String, String) {
    let kind = rng.below(4);
    let o = scene.objects[rng.below(scene.objects.len())];
    if kind < 2 {
        // The dominant color is the most frequent one (ties: the first in reading order).
        let best = scene
            .objects
            .iter()
            .map(|p| p.color)
            .min_by_key(|&c| std::cmp::Reverse(scene.count_where(|p| p.color == c)))
            .unwrap_or(o.color);
        let k = scene.count_where(|p| p.color == best);
        (
            format!("How many {} shapes are there?", best.name()),
            k.to_string(),
        )
    } else if kind == 2 {
        let k = scene.count_where(|p| p.shape == o.shape);
        (
            format!("How many {} are there?", o.shape.plural()),
            k.to_string(),
        )
    } else {
        (
            "How many shapes are there?".to_owned(),
            scene.objects.len().to_string(),
        )
    }
}

const LETTERS: [&str; 4] = ["A", "B", "C", "D"];

fn choice(scene: &Scene, rng: &mut Rng) -> Option<Qa> {
    let task = rng.pick(&[Task::Color, Task::Shape, Task::Position]);
    let (question, answer, _) = attribute(task, scene, rng)?;
    let pool: Vec<&str> = match task {
        Task::Color => Color::ALL.iter().map(|c| c.name()).collect(),
        Task::Shape => Shape::ALL.iter().map(|s| s.name()).collect(),
        _ => Position::all().map(Position::name).collect(),
    };
    let mut wrong: Vec<&str> = pool.into_iter().filter(|&p| p != answer).collect();
    rng.shuffle(&mut wrong);
    let mut options: Vec<&str> = wrong.into_iter().take(LETTERS.len() - 1).collect();
    let at = rng.below(LETTERS.len());
    options.insert(at, &answer);
    let lines: Vec<String> = LETTERS
        .iter()
        .zip(&options)
        .map(|(l, o)| format!("{l}. {o}"))
        .collect();
    Some(Qa {
        question: format!("{question}\n{}\n{LETTER_ANSWER}", lines.join("\n")),
        answer: LETTERS[at].to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::Size;

    fn obj(color: Color, shape: Shape, cell: u8) -> Object {
        let (row, col) = (f32::from(cell / 3), f32::from(cell % 3));
        Object {
            shape,
            color,
            size: Size::Small,
            x: (col + 0.5) / 3.0,
            y: (row + 0.5) / 3.0,
        }
    }

    #[test]
    fn task_names_round_trip() {
        for t in Task::ALL {
            assert_eq!(t.name().parse::<Task>(), Ok(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.name());
        }
        assert!("ocr"
            .parse::<Task>()
            .unwrap_err()
            .contains("expected one of caption"));
    }

    #[test]
    fn caption_groups_and_counts() {
        let scene = Scene {
            objects: vec![
                obj(Color::Red, Shape::Circle, 0),
                obj(Color::Blue, Shape::Square, 1),
                obj(Color::Blue, Shape::Square, 5),
                obj(Color::Orange, Shape::Star, 8),
            ],
        };
        assert_eq!(
            caption(&scene),
            "A red circle, two blue squares and an orange star."
        );
    }

    #[test]
    fn detail_lists_every_object() {
        let scene = Scene {
            objects: vec![obj(Color::Red, Shape::Circle, 4)],
        };
        assert_eq!(
            detail(&scene),
            "There is one shape on a gray background. A small red circle at the center."
        );
    }

    #[test]
    fn referring_expressions_are_unique_and_minimal() {
        let scene = Scene {
            objects: vec![
                obj(Color::Red, Shape::Circle, 0),
                obj(Color::Blue, Shape::Circle, 2),
            ],
        };
        // Both are circles: the color question needs the position.
        assert_eq!(
            refer(Task::Color, &scene, 0).as_deref(),
            Some("the circle at the top left")
        );
        assert_eq!(
            refer(Task::Shape, &scene, 1).as_deref(),
            Some("the blue object")
        );
    }
}
