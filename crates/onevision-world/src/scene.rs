//! The scene model: shapes in named colors, sizes and grid positions on a plain background.
//!
//! Geometry is in fractions of the image side, so one scene renders at any image size. Object
//! centers are drawn inside the middle of a 3x3 grid cell (never within 30 % of a cell of its
//! border), so the named position of every object is unambiguous in the pixels too.

use std::fmt;

use crate::rng::Rng;

/// The most objects in a scene, and the largest count a counting question asks for.
pub const MAX_OBJECTS: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Star,
}

impl Shape {
    pub const ALL: [Shape; 4] = [Shape::Circle, Shape::Square, Shape::Triangle, Shape::Star];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Star => "star",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Shape::Circle => "circles",
            Shape::Square => "squares",
            Shape::Triangle => "triangles",
            Shape::Star => "stars",
        }
    }

    /// The farthest point of the shape from its center, in units of the size's radius (the
    /// square's half-diagonal: 0.8 * sqrt 2). Used for the non-overlap test and image bounds.
    pub fn extent(self) -> f32 {
        match self {
            Shape::Circle => 1.0,
            Shape::Square => 0.8 * std::f32::consts::SQRT_2,
            Shape::Triangle | Shape::Star => 1.1,
        }
    }
}

/// Named colors, at least 98 apart (Euclidean, 0-255 RGB) from each other and from the
/// background (the closest pairs: purple/background 98, red/orange 101, yellow/orange 103), so
/// a small vision tower tells them apart and a pixel check needs no fine tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Color {
    Red,
    Green,
    Blue,
    Yellow,
    Purple,
    Orange,
    White,
    Black,
}

impl Color {
    pub const ALL: [Color; 8] = [
        Color::Red,
        Color::Green,
        Color::Blue,
        Color::Yellow,
        Color::Purple,
        Color::Orange,
        Color::White,
        Color::Black,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Color::Red => "red",
            Color::Green => "green",
            Color::Blue => "blue",
            Color::Yellow => "yellow",
            Color::Purple => "purple",
            Color::Orange => "orange",
            Color::White => "white",
            Color::Black => "black",
        }
    }

    pub fn rgb(self) -> [u8; 3] {
        match self {
            Color::Red => [230, 25, 25],
            Color::Green => [30, 180, 30],
            Color::Blue => [30, 60, 230],
            Color::Yellow => [240, 220, 20],
            Color::Purple => [140, 40, 170],
            Color::Orange => [255, 120, 0],
            Color::White => [250, 250, 250],
            Color::Black => [15, 15, 15],
        }
    }
}

/// The plain background every scene is drawn on (mid gray: no named color is near it).
pub const BACKGROUND: [u8; 3] = [128, 128, 128];
pub const BACKGROUND_NAME: &str = "gray";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Size {
    Small,
    Large,
}

impl Size {
    pub const ALL: [Size; 2] = [Size::Small, Size::Large];

    pub fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }

    /// The shape's radius as a fraction of the image side. Large * the largest extent (1.13)
    /// stays inside the 30 % cell margin (0.1 of the side), so no object is clipped.
    pub fn radius(self) -> f32 {
        match self {
            Size::Small => 0.05,
            Size::Large => 0.085,
        }
    }
}

/// A cell of the 3x3 grid, row-major from the top left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub row: u8,
    pub col: u8,
}

impl Position {
    pub const NAMES: [&'static str; 9] = [
        "top left",
        "top center",
        "top right",
        "middle left",
        "center",
        "middle right",
        "bottom left",
        "bottom center",
        "bottom right",
    ];

    pub fn all() -> impl Iterator<Item = Position> {
        (0..9u8).map(|i| Position {
            row: i / 3,
            col: i % 3,
        })
    }

    /// The cell holding a point given in fractions of the image side.
    pub fn of(x: f32, y: f32) -> Position {
        let cell = |v: f32| ((v * 3.0).floor() as i32).clamp(0, 2) as u8;
        Position {
            row: cell(y),
            col: cell(x),
        }
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[usize::from(self.row * 3 + self.col)]
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One filled shape; `x`, `y` is its center in fractions of the image side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Object {
    pub shape: Shape,
    pub color: Color,
    pub size: Size,
    pub x: f32,
    pub y: f32,
}

impl Object {
    /// "small red circle @ top left": what names the object in a canonical description (its
    /// cell, not its jittered center).
    pub fn canonical(&self) -> String {
        format!(
            "{} {} {} @ {}",
            self.size.name(),
            self.color.name(),
            self.shape.name(),
            self.position()
        )
    }

    pub fn position(&self) -> Position {
        Position::of(self.x, self.y)
    }

    /// The radius of the circle around the center that holds the whole shape.
    pub fn reach(&self) -> f32 {
        self.size.radius() * self.shape.extent()
    }
}

/// Objects in reading order (row, then column, then left to right), none overlapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub objects: Vec<Object>,
}

/// The gap kept between any two objects, as a fraction of the image side.
const GAP: f32 = 0.02;
/// Placement tries per object before the whole scene is drawn again.
const PLACE_TRIES: usize = 100;

impl Scene {
    /// Draws a scene: a dominant color with 1..=6 objects (uniform, so counting answers 1-6 are
    /// equally common), then 0..=(6 - k) objects in other colors; shapes and sizes uniform;
    /// centers by rejection sampling against the objects already placed. `None` when an object
    /// found no free place (the caller draws again).
    pub fn sample(rng: &mut Rng) -> Option<Scene> {
        Self::sample_at_most(rng, MAX_OBJECTS)
    }

    /// [`Scene::sample`] with at most `max` objects (clamped to 1..=[`MAX_OBJECTS`]): the
    /// dominant color's 1..=max, then 0..=(max - k) others. At `MAX_OBJECTS` it draws exactly
    /// what [`Scene::sample`] draws.
    pub fn sample_at_most(rng: &mut Rng, max: usize) -> Option<Scene> {
        let max = max.clamp(1, MAX_OBJECTS);
        let dominant = rng.pick(&Color::ALL);
        let k = 1 + rng.below(max);
        let extra = rng.below(max - k + 1);
        let others: Vec<Color> = Color::ALL
            .iter()
            .copied()
            .filter(|&c| c != dominant)
            .collect();
        let mut colors = vec![dominant; k];
        colors.extend((0..extra).map(|_| rng.pick(&others)));
        let mut objects: Vec<Object> = Vec::with_capacity(colors.len());
        for color in colors {
            let shape = rng.pick(&Shape::ALL);
            let size = rng.pick(&Size::ALL);
            let placed = (0..PLACE_TRIES).find_map(|_| {
                let cell = rng.below(9);
                let (row, col) = ((cell / 3) as f32, (cell % 3) as f32);
                // Within +-0.2 of a cell around its center: 30 % of a cell from every border.
                let x = (col + 0.3 + 0.4 * rng.unit()) / 3.0;
                let y = (row + 0.3 + 0.4 * rng.unit()) / 3.0;
                let o = Object {
                    shape,
                    color,
                    size,
                    x,
                    y,
                };
                let free = objects
                    .iter()
                    .all(|p| (p.x - x).hypot(p.y - y) >= p.reach() + o.reach() + GAP);
                free.then_some(o)
            })?;
            objects.push(placed);
        }
        objects.sort_by(|a, b| {
            a.position()
                .cmp(&b.position())
                .then(a.x.total_cmp(&b.x))
                .then(a.y.total_cmp(&b.y))
        });
        Some(Scene { objects })
    }

    /// What the scene's text can say about it: each object's size, color, shape and cell, as a
    /// sorted list. Two scenes with the same canonical description are the same scene for the
    /// train/test split, however their centers jitter inside the cells.
    pub fn canonical(&self) -> String {
        let mut parts: Vec<String> = self.objects.iter().map(Object::canonical).collect();
        parts.sort();
        parts.join("; ")
    }

    pub fn count_where(&self, f: impl Fn(&Object) -> bool) -> usize {
        self.objects.iter().filter(|o| f(o)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colors_are_far_apart() {
        let mut all: Vec<[u8; 3]> = Color::ALL.iter().map(|c| c.rgb()).collect();
        all.push(BACKGROUND);
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                let d2: i32 = (0..3)
                    .map(|c| (i32::from(a[c]) - i32::from(b[c])).pow(2))
                    .sum();
                assert!(
                    d2 >= 98 * 98,
                    "{a:?} and {b:?} are {:.0} apart",
                    f64::from(d2).sqrt()
                );
            }
        }
    }

    #[test]
    fn no_object_leaves_the_image_or_its_cell_margin() {
        let worst =
            Size::Large.radius() * Shape::ALL.iter().map(|s| s.extent()).fold(0.0, f32::max);
        // Centers are at least 0.3 of a cell (0.1 of the side) from every cell border.
        assert!(worst < 0.1, "{worst}");
        let mut rng = Rng::new(1);
        for _ in 0..200 {
            let Some(scene) = Scene::sample(&mut rng) else {
                continue;
            };
            assert!((1..=MAX_OBJECTS).contains(&scene.objects.len()));
            for o in &scene.objects {
                assert!(o.x - o.reach() > 0.0 && o.x + o.reach() < 1.0, "{o:?}");
                assert!(o.y - o.reach() > 0.0 && o.y + o.reach() < 1.0, "{o:?}");
            }
        }
    }
}
