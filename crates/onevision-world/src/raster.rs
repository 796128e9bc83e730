//! Anti-aliased filled shapes: each pixel is the mean of a 4x4 grid of samples (coverage blended
//! over the background). Objects never overlap, so drawing order does not matter.

use crate::scene::{Object, Scene, Shape, BACKGROUND};

/// Samples per pixel side (16 per pixel): edges get 17 levels, enough that a small shape's
/// outline does not alias at 192 px.
const SUPERSAMPLE: usize = 4;

/// An RGB image, row-major, 3 bytes a pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raster {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl Raster {
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = 3 * (y as usize * self.width as usize + x as usize);
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }
}

/// Draws `scene` on a `side` x `side` image.
pub fn render(scene: &Scene, side: u32) -> Raster {
    let n = side as usize;
    let mut pixels = BACKGROUND.repeat(n * n);
    for o in &scene.objects {
        draw(&mut pixels, n, o);
    }
    Raster {
        width: side,
        height: side,
        pixels,
    }
}

fn draw(pixels: &mut [u8], n: usize, o: &Object) {
    let s = n as f32;
    let (cx, cy, r) = (o.x * s, o.y * s, o.size.radius() * s);
    let inside = Inside::new(o.shape, cx, cy, r);
    let reach = o.reach() * s;
    let lo = |c: f32| ((c - reach).floor().max(0.0)) as usize;
    let hi = |c: f32| ((c + reach).ceil() as usize).min(n);
    let rgb = o.color.rgb();
    let step = 1.0 / SUPERSAMPLE as f32;
    for py in lo(cy)..hi(cy) {
        for px in lo(cx)..hi(cx) {
            let mut hits = 0usize;
            for sy in 0..SUPERSAMPLE {
                for sx in 0..SUPERSAMPLE {
                    let x = px as f32 + (sx as f32 + 0.5) * step;
                    let y = py as f32 + (sy as f32 + 0.5) * step;
                    hits += usize::from(inside.contains(x, y));
                }
            }
            if hits == 0 {
                continue;
            }
            let a = hits as f32 / (SUPERSAMPLE * SUPERSAMPLE) as f32;
            let i = 3 * (py * n + px);
            for c in 0..3 {
                let bg = f32::from(pixels[i + c]);
                pixels[i + c] = (bg + (f32::from(rgb[c]) - bg) * a).round() as u8;
            }
        }
    }
}

/// A point-in-shape test in pixel coordinates (y down).
pub(crate) enum Inside {
    Circle { cx: f32, cy: f32, r: f32 },
    Square { cx: f32, cy: f32, half: f32 },
    Polygon(Vec<(f32, f32)>),
}

impl Inside {
    pub(crate) fn new(shape: Shape, cx: f32, cy: f32, r: f32) -> Self {
        use std::f32::consts::{FRAC_PI_2, TAU};
        // Vertices on circles around the center, the first pointing up.
        let ring = |k: usize, radius: &dyn Fn(usize) -> f32| {
            (0..k)
                .map(|i| {
                    let t = -FRAC_PI_2 + TAU * i as f32 / k as f32;
                    (cx + radius(i) * t.cos(), cy + radius(i) * t.sin())
                })
                .collect()
        };
        match shape {
            Shape::Circle => Inside::Circle { cx, cy, r },
            Shape::Square => Inside::Square {
                cx,
                cy,
                half: 0.8 * r,
            },
            // Equilateral, its centroid at the center (the center pixel is well inside).
            Shape::Triangle => Inside::Polygon(ring(3, &|_| 1.1 * r)),
            // Five points; the inner radius is 0.45 of the outer.
            Shape::Star => Inside::Polygon(ring(10, &|i| {
                if i % 2 == 0 {
                    1.1 * r
                } else {
                    0.45 * 1.1 * r
                }
            })),
        }
    }

    pub(crate) fn contains(&self, x: f32, y: f32) -> bool {
        match self {
            Inside::Circle { cx, cy, r } => (x - cx).powi(2) + (y - cy).powi(2) <= r * r,
            Inside::Square { cx, cy, half } => (x - cx).abs() <= *half && (y - cy).abs() <= *half,
            Inside::Polygon(v) => {
                // Even-odd crossing test (the star is simple, so even-odd equals nonzero).
                let mut inside = false;
                let mut j = v.len() - 1;
                for i in 0..v.len() {
                    let ((xi, yi), (xj, yj)) = (v[i], v[j]);
                    if (yi > y) != (yj > y) && x < xj + (y - yj) * (xi - xj) / (yi - yj) {
                        inside = !inside;
                    }
                    j = i;
                }
                inside
            }
        }
    }
}
