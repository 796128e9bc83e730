//! Video families, as frames (8-16 scenes): an object moving in a direction, changing color,
//! appearing or disappearing, and the order of two such events.

use crate::media::{fits, name, named_once, place_in, scene, small_scene, LETTERS};
use crate::rng::Rng;
use crate::scene::{Color, Object, Position, Scene, Shape, Size};
use crate::task::{Task, LETTER_ANSWER, SHORT_ANSWER};

/// The fewest and most frames of a video.
pub const MIN_FRAMES: usize = 8;
pub const MAX_FRAMES: usize = 16;

/// How far a moving object travels over the whole video, in fractions of the image side (just
/// under one grid cell: 58 px at 192 px).
pub const TRAVEL: f32 = 0.3;

/// The answers of `video_direction` and their unit steps (x right, y down).
pub const DIRECTIONS: [(&str, f32, f32); 4] = [
    ("left", -1.0, 0.0),
    ("right", 1.0, 0.0),
    ("up", 0.0, -1.0),
    ("down", 0.0, 1.0),
];

/// One object over a video: present in frames `start..end`, recolored from a frame on.
#[derive(Debug, Clone, Copy)]
struct Track {
    o: Object,
    start: usize,
    end: usize,
    recolor: Option<(usize, Color)>,
}

fn frames(tracks: &[Track], n: usize) -> Vec<Scene> {
    (0..n)
        .map(|t| {
            scene(
                tracks
                    .iter()
                    .filter(|k| k.start <= t && t < k.end)
                    .map(|k| {
                        let mut o = k.o;
                        if let Some((at, c)) = k.recolor {
                            if at <= t {
                                o.color = c;
                            }
                        }
                        o
                    })
                    .collect(),
            )
        })
        .collect()
}

fn still(s: &Scene, n: usize) -> Vec<Track> {
    s.objects
        .iter()
        .map(|&o| Track {
            o,
            start: 0,
            end: n,
            recolor: None,
        })
        .collect()
}

fn other_color(rng: &mut Rng, c: Color) -> Color {
    let others: Vec<Color> = Color::ALL.into_iter().filter(|&x| x != c).collect();
    rng.pick(&others)
}

/// A new object somewhere clear of `objects`.
fn newcomer(rng: &mut Rng, objects: &[Object]) -> Option<Object> {
    let cells: Vec<Position> = Position::all().collect();
    let cell = rng.pick(&cells);
    let (x, y) = place_in(rng, cell);
    let o = Object {
        shape: rng.pick(&Shape::ALL),
        color: rng.pick(&Color::ALL),
        size: rng.pick(&Size::ALL),
        x,
        y,
    };
    fits(objects, &o, None).then_some(o)
}

/// The frames, the question (after its `<image>` line) and the answer of a video family;
/// `class` (0-3) chooses the direction, or whether an object appears or disappears.
pub(crate) fn build(
    task: Task,
    class: usize,
    rng: &mut Rng,
    owned: &dyn Fn(&Scene) -> bool,
) -> Option<(Vec<Scene>, String, String)> {
    let n = MIN_FRAMES + rng.below(MAX_FRAMES - MIN_FRAMES + 1);
    let (video, question, answer) = match task {
        Task::VideoDirection => {
            let base = small_scene(rng, 3)?;
            let i = rng.below(base.objects.len());
            let o = base.objects[i];
            if !named_once(&base, &o) {
                return None;
            }
            let (dir, dx, dy) = DIRECTIONS[class];
            let mut video = Vec::with_capacity(n);
            for t in 0..n {
                let f = TRAVEL * t as f32 / (n - 1) as f32;
                let mut p = o;
                p.x += dx * f;
                p.y += dy * f;
                if !fits(&base.objects, &p, Some(i)) {
                    return None;
                }
                let mut objects = base.objects.clone();
                objects[i] = p;
                video.push(scene(objects));
            }
            (
                video,
                format!("Which direction does the {} move in the video?", name(&o)),
                dir.to_owned(),
            )
        }
        Task::VideoColor => {
            let base = small_scene(rng, 3)?;
            let i = rng.below(base.objects.len());
            let o = base.objects[i];
            if !named_once(&base, &o) {
                return None;
            }
            let c = other_color(rng, o.color);
            let mut tracks = still(&base, n);
            tracks[i].recolor = Some((1 + rng.below(n - 2), c));
            (
                frames(&tracks, n),
                format!("What color does the {} turn in the video?", name(&o)),
                c.name().to_owned(),
            )
        }
        Task::VideoAppear => {
            let base = small_scene(rng, 3)?;
            let mut tracks = still(&base, n);
            let at = 1 + rng.below(n - 2);
            let appear = class < 2;
            let o = if appear {
                let o = newcomer(rng, &base.objects)?;
                tracks.push(Track {
                    o,
                    start: at,
                    end: n,
                    recolor: None,
                });
                o
            } else {
                let i = rng.below(base.objects.len());
                tracks[i].end = at;
                base.objects[i]
            };
            let everyone = scene(tracks.iter().map(|k| k.o).collect());
            if !named_once(&everyone, &o) {
                return None;
            }
            let verb = if appear { "appear" } else { "disappear" };
            if rng.below(2) == 0 {
                (
                    frames(&tracks, n),
                    "Does an object appear or disappear in the video?".to_owned(),
                    verb.to_owned(),
                )
            } else {
                (
                    frames(&tracks, n),
                    format!("Which object {verb}s in the video?"),
                    name(&o),
                )
            }
        }
        Task::VideoOrder => {
            let base = small_scene(rng, 2)?;
            let mut tracks = still(&base, n);
            let t1 = 1 + rng.below(n / 2 - 1);
            let t2 = t1 + 2 + rng.below(n - 3 - t1);
            let mut used = vec![false; tracks.len()];
            let mut phrases = Vec::with_capacity(2);
            for t in [t1, t2] {
                let free: Vec<usize> = (0..used.len()).filter(|&i| !used[i]).collect();
                let kind = rng.below(3);
                if kind == 0 {
                    let all: Vec<Object> = tracks.iter().map(|k| k.o).collect();
                    let o = newcomer(rng, &all)?;
                    tracks.push(Track {
                        o,
                        start: t,
                        end: n,
                        recolor: None,
                    });
                    phrases.push(format!("a {} appears", name(&o)));
                } else {
                    let i = *free.get(rng.below(free.len().max(1)))?;
                    used[i] = true;
                    let o = tracks[i].o;
                    if kind == 1 {
                        let c = other_color(rng, o.color);
                        tracks[i].recolor = Some((t, c));
                        phrases.push(format!("the {} turns {}", name(&o), c.name()));
                    } else {
                        tracks[i].end = t;
                        phrases.push(format!("the {} disappears", name(&o)));
                    }
                }
            }
            // Every name the options use (before and after a recolor) is one object's only.
            let mut names: Vec<(Color, Shape)> =
                tracks.iter().map(|k| (k.o.color, k.o.shape)).collect();
            names.extend(
                tracks
                    .iter()
                    .filter_map(|k| k.recolor.map(|(_, c)| (c, k.o.shape))),
            );
            let mut unique = names.clone();
            unique.sort();
            unique.dedup();
            if unique.len() != names.len() {
                return None;
            }
            let first = rng.below(2);
            let options = if first == 0 {
                [&phrases[0], &phrases[1]]
            } else {
                [&phrases[1], &phrases[0]]
            };
            (
                frames(&tracks, n),
                format!(
                    "Which happens first in the video?\nA. {}\nB. {}\n{LETTER_ANSWER}",
                    options[0], options[1]
                ),
                LETTERS[first].to_owned(),
            )
        }
        _ => return None,
    };
    let ends = [&video[0], &video[n - 1]];
    if !ends.iter().all(|s| owned(s)) {
        return None;
    }
    let question = if task == Task::VideoOrder {
        question
    } else {
        format!("{question}\n{SHORT_ANSWER}")
    };
    Some((video, question, answer))
}
