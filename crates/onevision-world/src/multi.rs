//! Multi-image families: which image differs, counts across images, what changed between two.

use crate::media::{fits, place_in, scene, small_scene, LETTERS};
use crate::rng::Rng;
use crate::scene::{Color, Position, Scene, Shape, Size};
use crate::task::{Task, LETTER_ANSWER, SHORT_ANSWER};

/// The one attribute of one object that changes: also the answers of `multi_changed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Color,
    Shape,
    Size,
    Position,
}

impl Change {
    pub const ALL: [Change; 4] = [Change::Color, Change::Shape, Change::Size, Change::Position];

    pub fn name(self) -> &'static str {
        match self {
            Change::Color => "color",
            Change::Shape => "shape",
            Change::Size => "size",
            Change::Position => "position",
        }
    }
}

/// `scene` with one object's `what` changed (the object drawn at random); `None` when the
/// changed object would not fit.
pub fn change(scene_in: &Scene, what: Change, rng: &mut Rng) -> Option<Scene> {
    let objects = &scene_in.objects;
    let i = rng.below(objects.len());
    let mut o = objects[i];
    match what {
        Change::Color => {
            let others: Vec<Color> = Color::ALL.into_iter().filter(|&c| c != o.color).collect();
            o.color = rng.pick(&others);
        }
        Change::Shape => {
            let others: Vec<Shape> = Shape::ALL.into_iter().filter(|&s| s != o.shape).collect();
            o.shape = rng.pick(&others);
        }
        Change::Size => {
            o.size = match o.size {
                Size::Small => Size::Large,
                Size::Large => Size::Small,
            }
        }
        Change::Position => {
            let cells: Vec<Position> = Position::all().filter(|&p| p != o.position()).collect();
            let cell = rng.pick(&cells);
            (o.x, o.y) = place_in(rng, cell);
        }
    }
    if !fits(objects, &o, Some(i)) {
        return None;
    }
    let mut out = objects.clone();
    out[i] = o;
    Some(scene(out))
}

/// The images, the question (after its `<image>` lines) and the answer of a multi-image family;
/// `class` (0-3) chooses the changed attribute.
pub(crate) fn build(
    task: Task,
    class: usize,
    rng: &mut Rng,
    owned: &dyn Fn(&Scene) -> bool,
) -> Option<(Vec<Scene>, String, String)> {
    match task {
        Task::MultiDiffers => {
            let n = 3 + rng.below(2);
            let base = Scene::sample(rng)?;
            let odd = change(&base, Change::ALL[class], rng)?;
            if !owned(&base) || !owned(&odd) {
                return None;
            }
            let at = rng.below(n);
            let mut images = vec![base; n];
            images[at] = odd;
            let (question, answer) = if rng.below(2) == 0 {
                (
                    format!(
                        "All of these images but one show the same scene. Which image is different? Give its number.\n{SHORT_ANSWER}"
                    ),
                    (at + 1).to_string(),
                )
            } else {
                let options: Vec<String> = (0..n)
                    .map(|k| format!("{}. Image {}", LETTERS[k], k + 1))
                    .collect();
                (
                    format!(
                        "All of these images but one show the same scene. Which image is different?\n{}\n{LETTER_ANSWER}",
                        options.join("\n")
                    ),
                    LETTERS[at].to_owned(),
                )
            };
            Some((images, question, answer))
        }
        Task::MultiCount => {
            let n = 2 + rng.below(3);
            let mut images = Vec::with_capacity(n);
            for _ in 0..n {
                let s = small_scene(rng, 4)?;
                if !owned(&s) {
                    return None;
                }
                images.push(s);
            }
            let pick: &Scene = &images[rng.below(n)];
            let o = pick.objects[rng.below(pick.objects.len())];
            let (question, total) = if rng.below(2) == 0 {
                (
                    format!(
                        "How many {} shapes are there in all the images together?",
                        o.color.name()
                    ),
                    images
                        .iter()
                        .map(|s| s.count_where(|p| p.color == o.color))
                        .sum::<usize>(),
                )
            } else {
                (
                    format!(
                        "How many {} are there in all the images together?",
                        o.shape.plural()
                    ),
                    images
                        .iter()
                        .map(|s| s.count_where(|p| p.shape == o.shape))
                        .sum::<usize>(),
                )
            };
            if total > 9 {
                return None;
            }
            Some((
                images,
                format!("{question}\n{SHORT_ANSWER}"),
                total.to_string(),
            ))
        }
        Task::MultiChanged => {
            let base = Scene::sample(rng)?;
            let what = Change::ALL[class];
            let after = change(&base, what, rng)?;
            if !owned(&base) || !owned(&after) {
                return None;
            }
            Some((
                vec![base, after],
                format!(
                    "One object is different in the second image. What changed: its color, shape, size or position?\n{SHORT_ANSWER}"
                ),
                what.name().to_owned(),
            ))
        }
        _ => None,
    }
}
