//! Rendered text and charts (issue 12, scope 1): a word or a number written in the bitmap font
//! ([`crate::font`]) among a few distractor shapes (the OCR families; a word in upper case,
//! lower case or capitalized), and charts (the chart families): bar charts whose bars carry a
//! category label below and their value printed above, for even rounds of [`Task::DOC`], and
//! pie charts, for odd ones, whose legend prints each slice's color swatch, label and percentage.
//! Answers are true by construction: they are the strings the picture prints (a pie's value
//! without its `%`, the same answer format as a bar's).
//!
//! Train and test never share a document: as with scenes, the split that owns one is a hash of
//! its canonical description ([`Doc::canonical`]), independent of the seed, and a document
//! owned by the other split is drawn again.

use std::path::Path;

use crate::font;
use crate::raster::{render, Raster};
use crate::rng::{self, Rng};
use crate::scene::{Color, Object, Scene, Shape, Size};
use crate::task::{Task, SHORT_ANSWER};
use crate::{Error, Options, Result, Sample, Split, Turn};

impl Task {
    /// The text and chart families, in the order [`doc_item`] gives them turns.
    pub const DOC: [Task; 4] = [
        Task::OcrWord,
        Task::OcrNumber,
        Task::ChartValue,
        Task::ChartMax,
    ];
}

/// The words an OCR image writes (2-6 letters, all drawable in the font), in upper case; a card
/// writes one in the [`Case`] it draws.
pub const WORDS: [&str; 96] = [
    "AT", "BE", "GO", "HI", "IN", "NO", "ON", "UP", "WE", "OX", "ACE", "ANT", "BAG", "BED", "BOX",
    "CAT", "COW", "CUP", "DOG", "EGG", "FAN", "FOX", "HAT", "JAM", "KEY", "MAP", "NET", "OWL",
    "PEN", "PIG", "RED", "SUN", "TOY", "VAN", "WEB", "ZIP", "BIRD", "BLUE", "BOAT", "CAKE", "DOOR",
    "DUCK", "FISH", "FROG", "GOLD", "HAND", "KING", "LAMP", "MILK", "MOON", "NEST", "PARK", "QUIZ",
    "RAIN", "ROAD", "SHIP", "STAR", "TREE", "WIND", "YARD", "APPLE", "BREAD", "CHAIR", "CLOUD",
    "DANCE", "EARTH", "FLAME", "GRAPE", "HORSE", "HOUSE", "JUICE", "LEMON", "MOUSE", "NIGHT",
    "OCEAN", "PIANO", "QUEEN", "RIVER", "SNAKE", "TIGER", "WATER", "ZEBRA", "ORANGE", "PURPLE",
    "YELLOW", "GARDEN", "CASTLE", "BRIDGE", "ROCKET", "WINDOW", "PLANET", "FOREST", "SILVER",
    "JUNGLE", "PEPPER", "VELVET",
];

/// Chart categories: three letters, so five labels fit side by side at 192 px.
pub const LABELS: [&str; 16] = [
    "ANT", "BEE", "CAT", "DOG", "ELK", "FOX", "GNU", "HEN", "JAY", "KOI", "OWL", "PIG", "RAT",
    "YAK", "EMU", "COW",
];

/// A word or number written across the middle third, with distractor shapes above or below it.
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    pub text: String,
    pub color: Color,
    /// Where the text's left and top edges go in the free room, each in `[0, 1)`.
    pub jitter: (f32, f32),
    /// Small or large shapes in the top and bottom rows of the 3x3 grid (never the middle row).
    pub distractors: Vec<Object>,
}

/// A bar chart: bar `i` is centered in slot `i` of `labels.len()` equal columns, its height
/// proportional to `values[i]`, its value printed above it and its label below.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    pub labels: Vec<&'static str>,
    /// Distinct, so the highest is unique.
    pub values: Vec<u32>,
    pub color: Color,
}

/// A pie chart: slice `i` spans `values[i]` percent of the turn, clockwise from 12 o'clock in
/// order, in `colors[i]`; legend line `i` (to the right of the pie) shows a swatch of that color,
/// then `labels[i]` and `values[i]` as a percentage ("DOG 40%").
#[derive(Debug, Clone, PartialEq)]
pub struct PieChart {
    pub labels: Vec<&'static str>,
    /// Percentages: distinct, each at least [`MIN_SHARE`] (so two digits, and a slice wide
    /// enough to see), summing to 100; the largest leads the next by [`MAX_LEAD`] or more.
    pub values: Vec<u32>,
    /// Distinct, never the background or the [`INK`].
    pub colors: Vec<Color>,
}

/// The smallest slice of a pie, in percent.
pub const MIN_SHARE: u32 = 10;
/// How much the largest slice of a pie exceeds the next, at least, in percent: enough to see
/// without the legend (18 degrees), so `chart_max` on a pie is a question about the picture.
pub const MAX_LEAD: u32 = 5;

#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    Card(Card),
    Chart(BarChart),
    Pie(PieChart),
}

/// The color of chart text (labels and values).
pub const INK: Color = Color::Black;

impl Doc {
    /// What the document shows, independent of the jitter: the train/test owner is its hash.
    pub fn canonical(&self) -> String {
        match self {
            Doc::Card(c) => {
                let mut parts: Vec<String> = c.distractors.iter().map(Object::canonical).collect();
                parts.sort();
                format!(
                    "text {:?} in {}; {}",
                    c.text,
                    c.color.name(),
                    parts.join("; ")
                )
            }
            Doc::Chart(b) => {
                let bars: Vec<String> = b
                    .labels
                    .iter()
                    .zip(&b.values)
                    .map(|(l, v)| format!("{l} {v}"))
                    .collect();
                format!("bar chart in {}: {}", b.color.name(), bars.join(", "))
            }
            Doc::Pie(p) => {
                let slices: Vec<String> = (0..p.labels.len())
                    .map(|i| format!("{} {} in {}", p.labels[i], p.values[i], p.colors[i].name()))
                    .collect();
                format!("pie chart: {}", slices.join(", "))
            }
        }
    }

    pub fn owner(&self) -> Split {
        Split::owner_of(&self.canonical())
    }
}

/// The font scale of an OCR card: 4 at 192 px (glyphs 20 x 28 px).
pub fn card_scale(side: u32) -> u32 {
    (side / 48).max(1)
}

/// The font scale of chart labels and values: 2 at 192 px (glyphs 10 x 14 px).
pub fn chart_scale(side: u32) -> u32 {
    (side / 96).max(1)
}

/// How an OCR word is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Upper,
    Lower,
    /// The first letter upper case, the rest lower case.
    Capitalized,
}

impl Case {
    pub const ALL: [Case; 3] = [Case::Upper, Case::Lower, Case::Capitalized];

    /// `word` (upper case ASCII) written in this case.
    pub fn apply(self, word: &str) -> String {
        match self {
            Case::Upper => word.to_owned(),
            Case::Lower => word.to_ascii_lowercase(),
            Case::Capitalized => {
                let lower = word.to_ascii_lowercase();
                let mut chars = lower.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            }
        }
    }
}

fn sample_card(task: Task, rng: &mut Rng) -> Card {
    let mut text = if task == Task::OcrWord {
        rng.pick(&WORDS).to_owned()
    } else {
        // 1-4 digits, each length equally likely, no leading zero.
        let digits = 1 + rng.below(4) as u32;
        let lo = if digits == 1 {
            0
        } else {
            10u32.pow(digits - 1)
        };
        (lo + rng.below((10u32.pow(digits) - lo) as usize) as u32).to_string()
    };
    let color = rng.pick(&Color::ALL);
    let jitter = (rng.unit(), rng.unit());
    let mut cells: Vec<usize> = vec![0, 1, 2, 6, 7, 8];
    rng.shuffle(&mut cells);
    let others: Vec<Color> = Color::ALL.into_iter().filter(|&c| c != color).collect();
    let distractors = cells[..rng.below(3)]
        .iter()
        .map(|&cell| {
            let (row, col) = ((cell / 3) as f32, (cell % 3) as f32);
            Object {
                shape: rng.pick(&Shape::ALL),
                color: rng.pick(&others),
                size: rng.pick(&Size::ALL),
                x: (col + 0.3 + 0.4 * rng.unit()) / 3.0,
                y: (row + 0.3 + 0.4 * rng.unit()) / 3.0,
            }
        })
        .collect();
    // Drawn after everything else, so a word's color, place and distractors are what an
    // upper-case-only world drew for the same seed.
    if task == Task::OcrWord {
        text = rng.pick(&Case::ALL).apply(&text);
    }
    Card {
        text,
        color,
        jitter,
        distractors,
    }
}

fn sample_chart(rng: &mut Rng) -> BarChart {
    let n = 3 + rng.below(3);
    let mut labels = LABELS.to_vec();
    rng.shuffle(&mut labels);
    labels.truncate(n);
    let mut values: Vec<u32> = (1..=9).collect();
    rng.shuffle(&mut values);
    values.truncate(n);
    if rng.below(2) == 1 {
        values.iter_mut().for_each(|v| *v *= 10);
    }
    let color = rng.pick(&CHART_COLORS);
    BarChart {
        labels,
        values,
        color,
    }
}

/// The colors of bars and pie slices: every named color but the [`INK`].
const CHART_COLORS: [Color; 7] = [
    Color::Red,
    Color::Green,
    Color::Blue,
    Color::Yellow,
    Color::Purple,
    Color::Orange,
    Color::White,
];

/// 3-5 slices; `None` when no shares as [`PieChart::values`] asks came up in 100 tries (the
/// caller draws again).
fn sample_pie(rng: &mut Rng) -> Option<PieChart> {
    let n = 3 + rng.below(3);
    let mut labels = LABELS.to_vec();
    rng.shuffle(&mut labels);
    labels.truncate(n);
    let mut colors = CHART_COLORS.to_vec();
    rng.shuffle(&mut colors);
    colors.truncate(n);
    // The percent above MIN_SHARE each, split at n - 1 uniform cut points.
    let free = 100 - MIN_SHARE * n as u32;
    for _ in 0..100 {
        let mut cuts: Vec<u32> = (1..n)
            .map(|_| rng.below(free as usize + 1) as u32)
            .collect();
        cuts.push(0);
        cuts.push(free);
        cuts.sort_unstable();
        let values: Vec<u32> = cuts.windows(2).map(|w| MIN_SHARE + w[1] - w[0]).collect();
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let distinct = sorted.windows(2).all(|w| w[0] < w[1]);
        if distinct && sorted[n - 1] >= sorted[n - 2] + MAX_LEAD {
            return Some(PieChart {
                labels,
                values,
                colors,
            });
        }
    }
    None
}

/// The top-left corner of a card's text at `side` px: inside the middle third, 2 px clear of it.
pub fn card_origin(card: &Card, side: u32) -> (u32, u32) {
    let k = card_scale(side);
    let (w, h) = (font::width(&card.text, k), font::height(k));
    let margin = side / 16;
    let free_x = side.saturating_sub(w + 2 * margin);
    let (top, bottom) = (side / 3 + 2, 2 * side / 3 - 2);
    let free_y = bottom.saturating_sub(top + h);
    (
        margin + (card.jitter.0 * free_x as f32) as u32,
        top + (card.jitter.1 * free_y as f32) as u32,
    )
}

/// A bar's rectangle in pixels: left, width, top, bottom (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarBox {
    pub x: u32,
    pub w: u32,
    pub top: u32,
    pub bottom: u32,
}

/// The bar rectangles at `side` px: the baseline leaves room for the labels below, the pixel
/// height is `values[i] / unit * px` with one whole number of pixels per unit, so heights are
/// exactly proportional to the values.
pub fn bars(chart: &BarChart, side: u32) -> Vec<BarBox> {
    let k = chart_scale(side);
    let line = font::height(k);
    let baseline = side - line - 4 * k;
    let top_room = 2 * k + line + 2 * k;
    let unit = if chart.values.iter().any(|&v| v >= 10) {
        10
    } else {
        1
    };
    let px = (baseline.saturating_sub(top_room) / 9).max(1);
    let n = chart.labels.len() as u32;
    let slot = side / n;
    let w = (slot * 3 / 5).max(1);
    chart
        .values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let h = v / unit * px;
            BarBox {
                x: i as u32 * slot + (slot - w) / 2,
                w,
                top: baseline - h,
                bottom: baseline,
            }
        })
        .collect()
}

/// Where a pie chart goes at `side` px: the disc on the left, the legend on the right (lines of
/// "DOG 40%" at the chart scale, 2 px glyph pixels at 192 px as a bar chart's labels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PieLayout {
    /// The disc's center and radius, in pixels.
    pub cx: f64,
    pub cy: f64,
    pub r: f64,
    /// The left edges of the legend's swatches (a glyph cell of the slice's color) and text.
    pub swatch_x: u32,
    pub text_x: u32,
    /// The top of legend line 0, and from one line's top to the next.
    pub top: u32,
    pub pitch: u32,
}

/// The layout of `pie` at `side` px: the legend flush right, 2 font pixels from the edge, its
/// lines centered vertically; the disc centered in the room left of it, 2 font pixels clear.
pub fn pie_layout(pie: &PieChart, side: u32) -> PieLayout {
    let k = chart_scale(side);
    let (margin, gap, swatch) = (2 * k, 2 * k, font::GLYPH_W * k);
    // Every line is as wide: three-letter labels and two-digit shares.
    let text = font::width("DOG 40%", k);
    let swatch_x = side.saturating_sub(margin + text + gap + swatch);
    let pitch = font::height(k) + 3 * k;
    let block = pie.labels.len() as u32 * pitch - 3 * k;
    let (cx, cy) = (f64::from(swatch_x) / 2.0, f64::from(side) / 2.0);
    PieLayout {
        cx,
        cy,
        r: (cx.min(cy) - f64::from(margin)).max(0.0),
        swatch_x,
        text_x: swatch_x + swatch + gap,
        top: side.saturating_sub(block) / 2,
        pitch,
    }
}

/// The slice of `pie` the point (`x`, `y`) (pixels, y down) falls in; `None` outside the disc.
/// Slices run clockwise from 12 o'clock, slice `i` over the turn's fractions from the sum of the
/// values before it to that sum plus `values[i]`, in percent.
pub fn slice_at(pie: &PieChart, g: &PieLayout, x: f64, y: f64) -> Option<usize> {
    let (dx, dy) = (x - g.cx, y - g.cy);
    if dx * dx + dy * dy > g.r * g.r {
        return None;
    }
    // With y down, atan2 turns clockwise from 3 o'clock; a quarter turn back starts at 12.
    let percent = 100.0 * (dy.atan2(dx) / std::f64::consts::TAU + 0.25).rem_euclid(1.0);
    let mut end = 0;
    for (i, &v) in pie.values.iter().enumerate() {
        end += v;
        if percent < f64::from(end) {
            return Some(i);
        }
    }
    Some(pie.values.len() - 1)
}

/// Legend line `i` of a pie: "DOG 40%".
pub fn legend_line(pie: &PieChart, i: usize) -> String {
    format!("{} {}%", pie.labels[i], pie.values[i])
}

/// Samples per pixel side of a pie's edges, as [`crate::raster`] draws shapes.
const PIE_SUPERSAMPLE: u32 = 4;

/// Fills the disc of `pie`, anti-aliased: each pixel the mean of a 4x4 grid of samples, each
/// the color of its slice or the background, so a pixel all inside one slice is exactly its color.
fn draw_pie(r: &mut Raster, pie: &PieChart, g: &PieLayout) {
    let lo = |c: f64| (c - g.r).floor().max(0.0) as u32;
    let hi = |c: f64, n: u32| ((c + g.r).ceil().max(0.0) as u32).min(n);
    let n = PIE_SUPERSAMPLE;
    for py in lo(g.cy)..hi(g.cy, r.height) {
        for px in lo(g.cx)..hi(g.cx, r.width) {
            let bg = r.pixel(px, py);
            let (mut sum, mut hits) = ([0u32; 3], 0);
            for sy in 0..n {
                for sx in 0..n {
                    let x = f64::from(px) + (f64::from(sx) + 0.5) / f64::from(n);
                    let y = f64::from(py) + (f64::from(sy) + 0.5) / f64::from(n);
                    let rgb = match slice_at(pie, g, x, y) {
                        Some(i) => {
                            hits += 1;
                            pie.colors[i].rgb()
                        }
                        None => bg,
                    };
                    for c in 0..3 {
                        sum[c] += u32::from(rgb[c]);
                    }
                }
            }
            if hits > 0 {
                let m = n * n;
                let rgb = sum.map(|v| ((v + m / 2) / m) as u8);
                font::fill(r, px, py, 1, 1, rgb);
            }
        }
    }
}

/// The two texts of bar `i` (box `b`) at `side` px, with their top-left corners: its value,
/// centered in its slot 2 font pixels above the bar, then its label 2 font pixels below it.
pub(crate) fn bar_texts(
    chart: &BarChart,
    side: u32,
    i: usize,
    b: &BarBox,
) -> [(String, u32, u32); 2] {
    let k = chart_scale(side);
    let slot = side / chart.labels.len() as u32;
    let center = i as u32 * slot + slot / 2;
    let value = chart.values[i].to_string();
    let vx = center - font::width(&value, k) / 2;
    let vy = b.top - 2 * k - font::height(k);
    let label = chart.labels[i];
    let lx = center - font::width(label, k) / 2;
    [(value, vx, vy), (label.to_owned(), lx, b.bottom + 2 * k)]
}

/// Draws `doc` on a `side` x `side` image.
pub fn render_doc(doc: &Doc, side: u32) -> Raster {
    match doc {
        Doc::Card(card) => {
            let mut r = render(
                &Scene {
                    objects: card.distractors.clone(),
                },
                side,
            );
            let (x, y) = card_origin(card, side);
            font::draw(&mut r, &card.text, x, y, card_scale(side), card.color.rgb());
            r
        }
        Doc::Chart(chart) => {
            let mut r = render(&Scene { objects: vec![] }, side);
            let k = chart_scale(side);
            let ink = INK.rgb();
            let boxes = bars(chart, side);
            for (i, b) in boxes.iter().enumerate() {
                font::fill(&mut r, b.x, b.top, b.w, b.bottom - b.top, chart.color.rgb());
                for (text, x, y) in bar_texts(chart, side, i, b) {
                    font::draw(&mut r, &text, x, y, k, ink);
                }
            }
            // The axis line under the bars.
            if let Some(b) = boxes.first() {
                font::fill(&mut r, 0, b.bottom, side, (k / 2).max(1), ink);
            }
            r
        }
        Doc::Pie(pie) => {
            let mut r = render(&Scene { objects: vec![] }, side);
            let g = pie_layout(pie, side);
            draw_pie(&mut r, pie, &g);
            let k = chart_scale(side);
            for (i, color) in pie.colors.iter().enumerate() {
                let y = g.top + i as u32 * g.pitch;
                let (w, h) = (font::GLYPH_W * k, font::height(k));
                font::fill(&mut r, g.swatch_x, y, w, h, color.rgb());
                font::draw(&mut r, &legend_line(pie, i), g.text_x, y, k, INK.rgb());
            }
            r
        }
    }
}

/// A text or chart sample with the document it shows.
#[derive(Debug, Clone, PartialEq)]
pub struct DocItem {
    pub doc: Doc,
    pub sample: Sample,
}

/// Draws per sample before giving up (a draw is rejected when the other split owns it, or a pie
/// found no distinct shares).
const MAX_ATTEMPTS: usize = 1000;

fn doc_seed(split: Split, seed: u64, k: usize, attempt: usize) -> u64 {
    let tag = split
        .name()
        .bytes()
        .fold(0x7465_7874_0000_0000u64, |h, b| rng::mix(h ^ u64::from(b))); // "text"
    rng::mix(rng::mix(rng::mix(seed ^ tag) ^ k as u64) ^ attempt as u64)
}

fn ask(task: Task, doc: &Doc, rng: &mut Rng) -> (String, String) {
    match doc {
        Doc::Card(c) => {
            let q = if task == Task::OcrWord {
                "What word is written in the image?"
            } else {
                "What number is shown in the image?"
            };
            (q.to_owned(), c.text.clone())
        }
        Doc::Pie(p) => {
            if task == Task::ChartValue {
                let i = rng.below(p.labels.len());
                (
                    format!("What is the value of {} in the pie chart?", p.labels[i]),
                    p.values[i].to_string(),
                )
            } else {
                let best = (0..p.values.len())
                    .max_by_key(|&i| p.values[i])
                    .unwrap_or(0);
                (
                    "Which category has the largest share in the pie chart?".to_owned(),
                    p.labels[best].to_owned(),
                )
            }
        }
        Doc::Chart(b) => {
            if task == Task::ChartValue {
                let i = rng.below(b.labels.len());
                (
                    format!("What is the value of {} in the bar chart?", b.labels[i]),
                    b.values[i].to_string(),
                )
            } else {
                let best = (0..b.values.len())
                    .max_by_key(|&i| b.values[i])
                    .unwrap_or(0);
                (
                    "Which category has the highest value in the bar chart?".to_owned(),
                    b.labels[best].to_owned(),
                )
            }
        }
    }
}

/// Whether chart sample `k` is a pie: in odd rounds of [`Task::DOC`] (`k / 4` odd), so each
/// chart family is half bars, half pies, and the bar charts of even rounds are drawn exactly as
/// before pies existed.
pub fn is_pie(k: usize) -> bool {
    (k / Task::DOC.len()) % 2 == 1
}

/// Text or chart sample `k` of a split: the families of [`Task::DOC`] in turn (`k` mod 4); a
/// chart is a pie when [`is_pie`], else bars.
pub fn doc_item(split: Split, seed: u64, k: usize) -> Result<DocItem> {
    let task = Task::DOC[k % Task::DOC.len()];
    for attempt in 0..MAX_ATTEMPTS {
        let mut rng = Rng::new(doc_seed(split, seed, k, attempt));
        let doc = match task {
            Task::OcrWord | Task::OcrNumber => Doc::Card(sample_card(task, &mut rng)),
            _ if is_pie(k) => match sample_pie(&mut rng) {
                Some(p) => Doc::Pie(p),
                None => continue,
            },
            _ => Doc::Chart(sample_chart(&mut rng)),
        };
        if doc.owner() != split {
            continue;
        }
        let (question, answer) = ask(task, &doc, &mut rng);
        let id = format!("{split}-doc-{k:06}");
        let sample = Sample {
            image: format!("images/{split}/{id}.png"),
            images: vec![],
            video: String::new(),
            id,
            conversations: vec![
                Turn {
                    from: "human",
                    value: format!("<image>\n{question}\n{SHORT_ANSWER}"),
                },
                Turn {
                    from: "gpt",
                    value: answer,
                },
            ],
            task,
            metric: "exact",
        };
        return Ok(DocItem { doc, sample });
    }
    Err(Error::Exhausted { index: k })
}

/// Writes text or chart sample `k`'s PNG under `out` and returns the sample.
pub fn write(out: &Path, split: Split, seed: u64, k: usize, opts: &Options) -> Result<Sample> {
    let DocItem { doc, sample } = doc_item(split, seed, k)?;
    let path = out.join(&sample.image);
    let r = render_doc(&doc, opts.image_size);
    image::save_buffer_with_format(
        &path,
        &r.pixels,
        r.width,
        r.height,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|source| Error::Png { path, source })?;
    Ok(sample)
}

/// Where sample `index` of a generated split comes from: in every 18, the first 14 are the
/// other families (numbered on their own, so their ids do not change) and the last 4 are
/// [`Task::DOC`] in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Other(usize),
    Doc(usize),
}

/// The other families' samples per round of [`slot`].
const OTHER: usize = 14;

pub fn slot(index: usize) -> Slot {
    let d = Task::DOC.len();
    let (round, f) = (index / (OTHER + d), index % (OTHER + d));
    if f < OTHER {
        Slot::Other(round * OTHER + f)
    } else {
        Slot::Doc(round * d + f - OTHER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_and_label_is_drawable() {
        for w in WORDS.iter().chain(&LABELS) {
            assert!((2..=6).contains(&w.len()), "{w}");
            assert!(w.chars().all(|c| font::glyph(c).is_some()), "{w}");
        }
        assert!(font::width("YELLOW", card_scale(192)) + 2 * 12 <= 192);
        assert!(5 * (font::width("ANT", chart_scale(192)) + 2) <= 192);
        for case in Case::ALL {
            for w in WORDS {
                let drawn = case.apply(w);
                assert_eq!(drawn.to_ascii_uppercase(), w);
                assert!(drawn.chars().all(|c| font::glyph(c).is_some()), "{drawn}");
            }
        }
        assert_eq!(Case::Capitalized.apply("DOG"), "Dog");
        assert_eq!(Case::Lower.apply("DOG"), "dog");
    }
}
