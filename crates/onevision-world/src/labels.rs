//! Dense per-pixel labels of a world image (for a dense pretraining objective of the vision
//! tower): which shape, color, size and glyph each pixel shows, in the same geometry as
//! [`crate::raster::render`] and [`text::render_doc`] draw it.
//!
//! A shape covers a pixel when its point-in-shape test holds at the pixel's center; a text's
//! glyph labels its whole cell, its color only the ink pixels. Later drawing overwrites earlier
//! drawing in the order the renderers draw, so a color label is what the picture shows there.

use crate::font::{self, GLYPHS, GLYPH_H, GLYPH_W};
use crate::raster::Inside;
use crate::scene::{Color, Object, Scene, Shape, Size};
use crate::text::{self, Doc};

/// Classes of each label, 0 ("none" / background) included.
pub const SHAPE_CLASSES: usize = 1 + Shape::ALL.len();
pub const COLOR_CLASSES: usize = 1 + Color::ALL.len();
pub const SIZE_CLASSES: usize = 1 + Size::ALL.len();
pub const GLYPH_CLASSES: usize = 1 + GLYPHS.len();

/// Per-pixel labels of a `side` x `side` world image, row-major, one byte a pixel; 0
/// everywhere means "nothing / background".
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMap {
    pub side: u32,
    /// 0 none, 1 + index in [`Shape::ALL`] of the shape covering the pixel center.
    pub shape: Vec<u8>,
    /// 0 background, 1 + index in [`Color::ALL`] of the color drawn at the pixel: an object's
    /// color, a glyph's ink pixel, a bar, a pie slice (the slice at the pixel center), a legend
    /// swatch.
    pub color: Vec<u8>,
    /// 0 none, 1 small, 2 large (objects only).
    pub size: Vec<u8>,
    /// 0 none, 1 + index in [`GLYPHS`] of the glyph whose whole cell (`GLYPH_W * scale` x
    /// `GLYPH_H * scale` at its top-left corner, as [`font::draw`] places it) covers the pixel;
    /// spaces and characters the font lacks leave 0.
    pub glyph: Vec<u8>,
    /// Object centers in pixels, `(o.x * side, o.y * side)`, for every object (a card's
    /// distractors included).
    pub centers: Vec<(f32, f32)>,
}

impl LabelMap {
    fn blank(side: u32) -> Self {
        let n = side as usize * side as usize;
        Self {
            side,
            shape: vec![0; n],
            color: vec![0; n],
            size: vec![0; n],
            glyph: vec![0; n],
            centers: Vec::new(),
        }
    }

    /// (shape, color, size, glyph) at pixel (`x`, `y`).
    pub fn at(&self, x: u32, y: u32) -> (u8, u8, u8, u8) {
        let i = y as usize * self.side as usize + x as usize;
        (self.shape[i], self.color[i], self.size[i], self.glyph[i])
    }

    /// Labels `o`'s pixels, scanning the box raster::draw scans.
    fn object(&mut self, o: &Object) {
        let (n, s) = (self.side as usize, self.side as f32);
        let (cx, cy, r) = (o.x * s, o.y * s, o.size.radius() * s);
        self.centers.push((cx, cy));
        let inside = Inside::new(o.shape, cx, cy, r);
        let reach = o.reach() * s;
        let lo = |c: f32| ((c - reach).floor().max(0.0)) as usize;
        let hi = |c: f32| ((c + reach).ceil() as usize).min(n);
        let (shape, color, size) = (
            class(&Shape::ALL, o.shape),
            class(&Color::ALL, o.color),
            class(&Size::ALL, o.size),
        );
        for py in lo(cy)..hi(cy) {
            for px in lo(cx)..hi(cx) {
                if inside.contains(px as f32 + 0.5, py as f32 + 0.5) {
                    let i = py * n + px;
                    self.shape[i] = shape;
                    self.color[i] = color;
                    self.size[i] = size;
                }
            }
        }
    }

    /// Sets the color label over a `w` x `h` box, clipped (as [`font::fill`]).
    fn fill(&mut self, x: u32, y: u32, w: u32, h: u32, color: Color) {
        let c = class(&Color::ALL, color);
        let side = self.side;
        for py in y..(y + h).min(side) {
            let row = py as usize * side as usize;
            self.color[row + x.min(side) as usize..row + (x + w).min(side) as usize].fill(c);
        }
    }

    /// Labels `text` as [`font::draw`] draws it: the glyph over each cell, the color on its
    /// ink pixels.
    fn text(&mut self, text: &str, x: u32, y: u32, scale: u32, color: Color) {
        let side = self.side;
        for (k, ch) in text.chars().enumerate() {
            let Some(g) = GLYPHS.iter().position(|(c, _)| *c == ch) else {
                continue;
            };
            let left = x + k as u32 * font::ADVANCE * scale;
            let (x1, y1) = (
                (left + GLYPH_W * scale).min(side),
                (y + GLYPH_H * scale).min(side),
            );
            for py in y..y1 {
                let row = py as usize * side as usize;
                self.glyph[row + left.min(side) as usize..row + x1 as usize].fill(1 + g as u8);
            }
            for (gy, bits) in GLYPHS[g].1.iter().enumerate() {
                for gx in 0..GLYPH_W {
                    if bits >> (GLYPH_W - 1 - gx) & 1 == 1 {
                        let (px, py) = (left + gx * scale, y + gy as u32 * scale);
                        self.fill(px, py, scale, scale, color);
                    }
                }
            }
        }
    }
}

/// 1 + the index of `v` in `all`.
fn class<T: PartialEq>(all: &[T], v: T) -> u8 {
    1 + all.iter().position(|a| *a == v).expect("a listed value") as u8
}

/// The labels of [`crate::raster::render`]`(scene, side)`.
pub fn label_scene(scene: &Scene, side: u32) -> LabelMap {
    let mut m = LabelMap::blank(side);
    for o in &scene.objects {
        m.object(o);
    }
    m
}

/// The labels of [`text::render_doc`]`(doc, side)`, drawn in the order it draws.
pub fn label_doc(doc: &Doc, side: u32) -> LabelMap {
    match doc {
        Doc::Card(card) => {
            let mut m = LabelMap::blank(side);
            for o in &card.distractors {
                m.object(o);
            }
            let (x, y) = text::card_origin(card, side);
            m.text(&card.text, x, y, text::card_scale(side), card.color);
            m
        }
        Doc::Chart(chart) => {
            let mut m = LabelMap::blank(side);
            let k = text::chart_scale(side);
            let boxes = text::bars(chart, side);
            for (i, b) in boxes.iter().enumerate() {
                m.fill(b.x, b.top, b.w, b.bottom - b.top, chart.color);
                for (t, x, y) in text::bar_texts(chart, side, i, b) {
                    m.text(&t, x, y, k, text::INK);
                }
            }
            if let Some(b) = boxes.first() {
                m.fill(0, b.bottom, side, (k / 2).max(1), text::INK);
            }
            m
        }
        Doc::Pie(pie) => {
            let mut m = LabelMap::blank(side);
            let g = text::pie_layout(pie, side);
            let n = side as usize;
            let lo = |c: f64| (c - g.r).floor().max(0.0) as usize;
            let hi = |c: f64| ((c + g.r).ceil().max(0.0) as usize).min(n);
            let colors: Vec<u8> = pie.colors.iter().map(|&c| class(&Color::ALL, c)).collect();
            for py in lo(g.cy)..hi(g.cy) {
                for px in lo(g.cx)..hi(g.cx) {
                    let (x, y) = (px as f64 + 0.5, py as f64 + 0.5);
                    if let Some(i) = text::slice_at(pie, &g, x, y) {
                        m.color[py * n + px] = colors[i];
                    }
                }
            }
            let k = text::chart_scale(side);
            for (i, &color) in pie.colors.iter().enumerate() {
                let y = g.top + i as u32 * g.pitch;
                m.fill(g.swatch_x, y, GLYPH_W * k, font::height(k), color);
                m.text(&text::legend_line(pie, i), g.text_x, y, k, text::INK);
            }
            m
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raster::{render, Raster};
    use crate::rng::Rng;
    use crate::scene::BACKGROUND;
    use crate::text::{doc_item, render_doc};
    use crate::Split;

    const SIDE: u32 = 192;

    fn scenes() -> Vec<Scene> {
        (0..50u64)
            .filter_map(|seed| Scene::sample(&mut Rng::new(seed)))
            .collect()
    }

    fn docs() -> Vec<Doc> {
        (0..40)
            .map(|k| doc_item(Split::Train, 7, k).unwrap().doc)
            .collect()
    }

    /// Where a pixel and its 8 neighbours share one color label c, the picture shows exactly
    /// that color. Where the label is 0 over the 5 x 5 pixels around a pixel, it shows the
    /// background: 8 neighbours are not enough there, as a triangle's or star's tip can cover a
    /// few of the 16 samples of a pixel while missing its center and its neighbours' centers
    /// (1-2 pixels of a scene). Returns how many pixels were checked per label.
    fn check_colors(m: &LabelMap, r: &Raster, what: &str) -> [usize; COLOR_CLASSES] {
        let mut seen = [0; COLOR_CLASSES];
        for y in 2..m.side - 2 {
            for x in 2..m.side - 2 {
                let c = m.at(x, y).1;
                let reach = if c == 0 { 2 } else { 1 };
                let uniform = (y - reach..=y + reach)
                    .all(|ny| (x - reach..=x + reach).all(|nx| m.at(nx, ny).1 == c));
                if !uniform {
                    continue;
                }
                let want = if c == 0 {
                    BACKGROUND
                } else {
                    Color::ALL[usize::from(c) - 1].rgb()
                };
                assert_eq!(r.pixel(x, y), want, "{what}: pixel ({x}, {y}) labelled {c}");
                seen[usize::from(c)] += 1;
            }
        }
        seen
    }

    /// Text is drawn solid: every ink pixel of a glyph cell is exactly the text's color, and
    /// there are some.
    fn check_ink(m: &LabelMap, r: &Raster, ink: Color, what: &str) {
        let c = class(&Color::ALL, ink);
        let mut n = 0;
        for y in 0..m.side {
            for x in 0..m.side {
                let (_, color, _, glyph) = m.at(x, y);
                if glyph != 0 && color == c {
                    assert_eq!(r.pixel(x, y), ink.rgb(), "{what}: ink at ({x}, {y})");
                    n += 1;
                }
            }
        }
        assert!(n > 0, "{what}: no ink");
    }

    fn check_objects(m: &LabelMap, objects: &[Object], what: &str) {
        assert_eq!(m.centers.len(), objects.len(), "{what}");
        for (o, &(cx, cy)) in objects.iter().zip(&m.centers) {
            assert_eq!((cx, cy), (o.x * SIDE as f32, o.y * SIDE as f32), "{what}");
            let want = (
                class(&Shape::ALL, o.shape),
                class(&Color::ALL, o.color),
                class(&Size::ALL, o.size),
            );
            let (s, c, z, _) = m.at(cx as u32, cy as u32);
            assert_eq!((s, c, z), want, "{what}: the center of {}", o.canonical());
        }
        for i in 0..m.shape.len() {
            assert_eq!(m.shape[i] != 0, m.size[i] != 0, "{what}: pixel {i}");
        }
    }

    /// The glyph labels of a text row, one per distinct cell left to right, as characters.
    fn read_row(m: &LabelMap, y: u32) -> String {
        let mut out = String::new();
        let mut prev = 0;
        for x in 0..m.side {
            let g = m.at(x, y).3;
            if g != 0 && g != prev {
                out.push(GLYPHS[usize::from(g) - 1].0);
            }
            prev = g;
        }
        out
    }

    #[test]
    fn scene_labels_match_the_pixels() {
        let scenes = scenes();
        assert!(scenes.len() > 30);
        let mut seen = [0; COLOR_CLASSES];
        for (i, scene) in scenes.iter().enumerate() {
            let m = label_scene(scene, SIDE);
            let what = format!("scene {i}");
            for (s, n) in seen
                .iter_mut()
                .zip(check_colors(&m, &render(scene, SIDE), &what))
            {
                *s += n;
            }
            check_objects(&m, &scene.objects, &what);
            // No text in a scene: shape, size and color cover the same pixels.
            for p in 0..m.shape.len() {
                assert_eq!(m.shape[p] != 0, m.color[p] != 0, "{what}: pixel {p}");
            }
            assert!(m.glyph.iter().all(|&g| g == 0), "{what}");
        }
        assert!(seen.iter().all(|&n| n > 0), "every color checked: {seen:?}");
    }

    #[test]
    fn doc_labels_match_the_pixels_and_spell_the_text() {
        let (mut cards, mut charts, mut pies) = (0, 0, 0);
        for (k, doc) in docs().iter().enumerate() {
            let m = label_doc(doc, SIDE);
            let what = format!("doc {k}");
            let r = render_doc(doc, SIDE);
            let seen = check_colors(&m, &r, &what);
            let ink = match doc {
                Doc::Card(card) => card.color,
                _ => text::INK,
            };
            check_ink(&m, &r, ink, &what);
            match doc {
                Doc::Card(card) => {
                    cards += 1;
                    check_objects(&m, &card.distractors, &what);
                    let (_, y) = text::card_origin(card, SIDE);
                    let row = y + font::height(text::card_scale(SIDE)) / 2;
                    assert_eq!(read_row(&m, row), card.text.replace(' ', ""), "{what}");
                    assert!(
                        seen[usize::from(class(&Color::ALL, card.color))] > 0,
                        "{what}"
                    );
                }
                Doc::Chart(chart) => {
                    charts += 1;
                    assert!(m.centers.is_empty() && m.shape.iter().all(|&s| s == 0));
                    let b = text::bars(chart, SIDE)[0];
                    let row = b.bottom + 2 * text::chart_scale(SIDE) + 1;
                    assert_eq!(read_row(&m, row), chart.labels.concat(), "{what}");
                    assert!(
                        seen[usize::from(class(&Color::ALL, chart.color))] > 0,
                        "{what}"
                    );
                }
                Doc::Pie(pie) => {
                    pies += 1;
                    let g = text::pie_layout(pie, SIDE);
                    for (i, &color) in pie.colors.iter().enumerate() {
                        let row = g.top + i as u32 * g.pitch + 1;
                        let line = text::legend_line(pie, i).replace(' ', "");
                        assert_eq!(read_row(&m, row), line, "{what}");
                        assert!(seen[usize::from(class(&Color::ALL, color))] > 0, "{what}");
                    }
                }
            }
        }
        assert!(
            cards >= 10 && charts >= 5 && pies >= 5,
            "{cards} {charts} {pies}"
        );
    }

    #[test]
    fn labelling_is_deterministic() {
        for scene in scenes().iter().take(10) {
            assert_eq!(label_scene(scene, SIDE), label_scene(scene, SIDE));
        }
        for doc in docs().iter().take(12) {
            assert_eq!(label_doc(doc, SIDE), label_doc(doc, SIDE));
        }
    }
}
