//! Rendered text, bar and pie charts: deterministic, train and test disjoint, answers true of
//! the document, and the pixels say the same: a tiny OCR for the world's own font reads back
//! every word (in any case), number, label, value and legend line, bar heights are proportional
//! to the values, and every pie slice has its color at its computed angle and its share of the
//! disc's pixels.

use std::collections::HashSet;

use onevision_world::font::{self, ADVANCE, GLYPHS, GLYPH_H, GLYPH_W};
use onevision_world::text::{
    bars, card_scale, chart_scale, doc_item, is_pie, pie_layout, render_doc, slot, write, Doc,
    DocItem, PieChart, Slot, INK, LABELS, MAX_LEAD, MIN_SHARE, WORDS,
};
use onevision_world::{render, Options, Raster, Scene, Split, Task};

const SIDE: u32 = 192;

fn items(split: Split, seed: u64, count: usize) -> Vec<DocItem> {
    (0..count)
        .map(|k| doc_item(split, seed, k).unwrap())
        .collect()
}

fn question(it: &DocItem) -> &str {
    let q = &it.sample.conversations[0].value;
    let q = q.strip_prefix("<image>\n").unwrap();
    q.lines().next().unwrap()
}

fn answer(it: &DocItem) -> &str {
    &it.sample.conversations[1].value
}

/// Reads the one line of `rgb` text inside the box `x0..x1`, `y0..y1` drawn at `scale`: finds
/// the text's pixels, aligns the glyphs' bottom row to the lowest of them (every letter and
/// digit, upper or lower case, touches it), then tries each left edge the first glyph can have
/// and matches every `scale`-sized cell against the glyph table; a blank cell is a space.
/// `None` when nothing reads.
fn ocr(
    r: &Raster,
    (x0, x1, y0, y1): (u32, u32, u32, u32),
    scale: u32,
    rgb: [u8; 3],
) -> Option<String> {
    let on = |x: u32, y: u32| x < r.width && y < r.height && r.pixel(x, y) == rgb;
    let hits: Vec<(u32, u32)> = (y0..y1)
        .flat_map(|y| (x0..x1).map(move |x| (x, y)))
        .filter(|&(x, y)| on(x, y))
        .collect();
    let minx = hits.iter().map(|h| h.0).min()?;
    let maxx = hits.iter().map(|h| h.0).max()?;
    let bottom = hits.iter().map(|h| h.1).max()?;
    let top = (bottom + 1).checked_sub(GLYPH_H * scale)?;
    let cell = |left: u32| -> Option<char> {
        let mut rows = [0u8; 7];
        for (gy, row) in rows.iter_mut().enumerate() {
            for gx in 0..GLYPH_W {
                // The center of the font pixel's block.
                let (x, y) = (
                    left + gx * scale + scale / 2,
                    top + gy as u32 * scale + scale / 2,
                );
                if on(x, y) {
                    *row |= 1 << (GLYPH_W - 1 - gx);
                }
            }
        }
        if rows == [0; 7] {
            return Some(' ');
        }
        GLYPHS.iter().find(|(_, g)| *g == rows).map(|(c, _)| *c)
    };
    (0..GLYPH_W).find_map(|shift| {
        let left = minx.checked_sub(shift * scale)?;
        let n = (maxx + 1 - left).div_ceil(ADVANCE * scale);
        (0..n).map(|i| cell(left + i * ADVANCE * scale)).collect()
    })
}

#[test]
fn every_glyph_reads_back_alone() {
    // Letters and digits all end on the bottom row, which the reader aligns to.
    let alnum: Vec<char> = GLYPHS
        .iter()
        .map(|(c, _)| *c)
        .filter(char::is_ascii_alphanumeric)
        .collect();
    assert_eq!(alnum.len(), 26 + 26 + 10);
    for (c, rows) in GLYPHS.iter().filter(|(c, _)| c.is_ascii_alphanumeric()) {
        assert_ne!(rows[GLYPH_H as usize - 1], 0, "{c}");
        let mut r = render(&Scene { objects: vec![] }, 64);
        let s = c.to_string();
        font::draw(&mut r, &s, 10, 10, 3, [1, 2, 3]);
        assert_eq!(ocr(&r, (0, 64, 0, 64), 3, [1, 2, 3]), Some(s));
    }
    assert_eq!(font::height(4), 4 * GLYPH_H);
    // Whole lines, lower case letters without ascenders among them, and spaces inside.
    for line in ["cow", "Jumpy quiz", "DOG 40%", "axe 7 BOX"] {
        let mut r = render(&Scene { objects: vec![] }, 192);
        font::draw(&mut r, line, 7, 20, 2, [1, 2, 3]);
        assert_eq!(
            ocr(&r, (0, 192, 0, 192), 2, [1, 2, 3]).as_deref(),
            Some(line)
        );
    }
}

#[test]
fn same_seed_same_documents_and_pixels() {
    let (a, b, c) = (
        items(Split::Train, 3, 40),
        items(Split::Train, 3, 40),
        items(Split::Train, 4, 40),
    );
    assert_eq!(a, b);
    assert_ne!(a, c);
    for (x, y) in a.iter().zip(&b).take(8) {
        assert_eq!(render_doc(&x.doc, SIDE), render_doc(&y.doc, SIDE));
    }
    let tasks: Vec<Task> = a.iter().take(4).map(|i| i.sample.task).collect();
    assert_eq!(tasks, Task::DOC);
    for t in Task::DOC {
        assert_eq!(t.name().parse::<Task>(), Ok(t));
        assert_eq!(serde_json::to_value(t).unwrap(), t.name());
    }
    assert_eq!(a[5].sample.id, "train-doc-000005");
    assert_eq!(a[5].sample.image, "images/train/train-doc-000005.png");
}

#[test]
fn train_and_test_never_share_a_document() {
    for (train_seed, test_seed) in [(0, 0), (1, 2)] {
        let train: HashSet<String> = items(Split::Train, train_seed, 800)
            .iter()
            .map(|i| i.doc.canonical())
            .collect();
        for i in items(Split::Test, test_seed, 800) {
            assert_eq!(i.doc.owner(), Split::Test);
            assert!(!train.contains(&i.doc.canonical()), "{}", i.doc.canonical());
        }
        assert!(
            train.len() > 600,
            "{} distinct train documents",
            train.len()
        );
    }
}

#[test]
fn ocr_answers_are_the_text_and_the_pixels_read_them() {
    let mut seen = [0usize; 2];
    let mut cases = [0usize; 3];
    for it in items(Split::Train, 7, 400)
        .into_iter()
        .chain(items(Split::Test, 7, 400))
    {
        let Doc::Card(card) = &it.doc else { continue };
        let (q, a) = (question(&it), answer(&it));
        assert_eq!(a, card.text);
        match it.sample.task {
            Task::OcrWord => {
                assert_eq!(q, "What word is written in the image?");
                // The answer is the word as drawn: upper case, lower case or capitalized.
                let upper = a.to_ascii_uppercase();
                assert!(WORDS.contains(&upper.as_str()), "{a}");
                let lower = a.to_ascii_lowercase();
                let capitalized = format!("{}{}", &upper[..1], &lower[1..]);
                let case = [upper, lower, capitalized]
                    .iter()
                    .position(|w| w == a)
                    .unwrap_or_else(|| panic!("{a} is in no case"));
                cases[case] += 1;
                seen[0] += 1;
            }
            Task::OcrNumber => {
                assert_eq!(q, "What number is shown in the image?");
                let n: u32 = a.parse().unwrap();
                assert!(n < 10_000 && n.to_string() == a, "{a}");
                seen[1] += 1;
            }
            t => panic!("a card for {t}"),
        }
        // The text lies in the middle third (the distractors keep out of it), legible at the
        // default size and at half of it.
        for side in [SIDE, SIDE / 2] {
            let r = render_doc(&it.doc, side);
            let band = (0, side, side / 3, 2 * side / 3);
            assert_eq!(
                ocr(&r, band, card_scale(side), card.color.rgb()).as_deref(),
                Some(a),
                "{} at {side} px",
                it.sample.id
            );
        }
        for o in &card.distractors {
            assert_ne!(o.color, card.color);
            assert!((o.y - 0.5).abs() - o.reach() > 1.0 / 6.0, "{o:?}");
        }
    }
    assert_eq!(seen, [200, 200]);
    // Each case about a third of the 200 words (three words in four are no longer upper case).
    assert!(cases.iter().all(|&n| n.abs_diff(67) <= 25), "{cases:?}");
}

#[test]
fn charts_are_bars_and_pies_in_turn() {
    for k in 0..64 {
        let it = doc_item(Split::Train, 2, k).unwrap();
        let kind = match &it.doc {
            Doc::Card(_) => "card",
            Doc::Chart(_) => "bar",
            Doc::Pie(_) => "pie",
        };
        let want = match (it.sample.task, is_pie(k)) {
            (Task::OcrWord | Task::OcrNumber, _) => "card",
            (_, false) => "bar",
            (_, true) => "pie",
        };
        assert_eq!(kind, want, "{k}");
        // The canonical description, which decides the split, names the chart's kind.
        match kind {
            "bar" => assert!(it.doc.canonical().starts_with("bar chart in "), "{k}"),
            "pie" => assert!(it.doc.canonical().starts_with("pie chart: "), "{k}"),
            _ => {}
        }
        if kind != "card" {
            let chart = it.sample.conversations[0]
                .value
                .contains(&format!("{kind} chart"));
            assert!(chart, "{:?}", it.sample.conversations[0].value);
        }
    }
}

/// The turn (clockwise from 12 o'clock, in `[0, 1)`) of the middle of slice `i`.
fn mid_turn(pie: &PieChart, i: usize) -> f64 {
    let before: u32 = pie.values[..i].iter().sum();
    (f64::from(before) + f64::from(pie.values[i]) / 2.0) / 100.0
}

/// The pie's answers, and its pixels at `side` px: each slice's color at its computed middle,
/// its share of the disc's pixels close to its value, the largest share the most pixels, and
/// every legend line (swatch color, label, percentage) read back.
fn check_pie(id: &str, pie: &PieChart, task: Task, q: &str, a: &str, side: u32) {
    let r = render_doc(&Doc::Pie(pie.clone()), side);
    let g = pie_layout(pie, side);
    let k = chart_scale(side);
    let n = pie.labels.len();
    // The disc lies left of the legend and inside the image, the legend inside the image.
    assert!(
        g.cx - g.r >= 0.0 && g.cx + g.r <= f64::from(g.swatch_x),
        "{id} at {side}"
    );
    assert!(
        g.cy - g.r >= 0.0 && g.cy + g.r <= f64::from(side),
        "{id} at {side}"
    );
    assert!(
        g.text_x + font::width("DOG 40%", k) <= side,
        "{id} at {side}"
    );
    assert!(g.top + n as u32 * g.pitch <= side);
    for i in 0..n {
        // 0.6 of the radius out along the slice's middle: at least 5 % of a turn from either
        // edge (MIN_SHARE / 2), which is more than a pixel's diagonal there at 96 px and up.
        let t = std::f64::consts::TAU * (mid_turn(pie, i) - 0.25);
        let (x, y) = (g.cx + 0.6 * g.r * t.cos(), g.cy + 0.6 * g.r * t.sin());
        assert_eq!(
            r.pixel(x as u32, y as u32),
            pie.colors[i].rgb(),
            "{id} at {side}: slice {i} at ({x:.1}, {y:.1})"
        );
    }
    // Pixels of each slice's color on the pie's side of the image.
    let mut count = vec![0usize; n];
    for y in 0..side {
        for x in 0..g.swatch_x {
            if let Some(i) = pie.colors.iter().position(|c| c.rgb() == r.pixel(x, y)) {
                count[i] += 1;
            }
        }
    }
    let total: usize = count.iter().sum();
    // Anti-aliased edges are blends of two colors and not counted: about one pixel along each
    // radius and the rim, so the tolerance grows as the disc shrinks.
    let tol = if side >= 192 { 1.5 } else { 3.0 };
    for i in 0..n {
        let share = 100.0 * count[i] as f64 / total as f64;
        assert!(
            (share - f64::from(pie.values[i])).abs() <= tol,
            "{id} at {side}: slice {i} has {share:.2} % of the pixels, its value is {}",
            pie.values[i]
        );
    }
    for i in 0..n {
        let top = g.top + i as u32 * g.pitch;
        let swatch = r.pixel(g.swatch_x + 2 * k, top + 3 * k);
        assert_eq!(swatch, pie.colors[i].rgb(), "{id} at {side}: swatch {i}");
        let line = (g.text_x, side, top, top + g.pitch);
        let want = format!("{} {}%", pie.labels[i], pie.values[i]);
        assert_eq!(ocr(&r, line, k, INK.rgb()), Some(want), "{id} at {side}");
    }
    match task {
        Task::ChartValue => {
            let label = q
                .strip_prefix("What is the value of ")
                .and_then(|r| r.strip_suffix(" in the pie chart?"))
                .unwrap();
            let i = pie.labels.iter().position(|l| *l == label).unwrap();
            assert_eq!(a, pie.values[i].to_string());
            // The legend line of that label prints the answer.
            let top = g.top + i as u32 * g.pitch;
            let line = ocr(&r, (g.text_x, side, top, top + g.pitch), k, INK.rgb()).unwrap();
            assert_eq!(line, format!("{label} {a}%"));
        }
        Task::ChartMax => {
            assert_eq!(q, "Which category has the largest share in the pie chart?");
            let i = pie.labels.iter().position(|l| *l == a).unwrap();
            assert!(pie.values.iter().all(|&v| v <= pie.values[i]));
            // The most pixels are the answer's color.
            let most = (0..n).max_by_key(|&j| count[j]).unwrap();
            assert_eq!(most, i, "{id} at {side}: {count:?} for {:?}", pie.values);
        }
        t => panic!("a pie for {t}"),
    }
}

#[test]
fn pie_answers_are_true_and_the_pixels_show_them() {
    let mut seen = [0usize; 2];
    for it in items(Split::Train, 8, 400)
        .into_iter()
        .chain(items(Split::Test, 8, 400))
    {
        let Doc::Pie(pie) = &it.doc else { continue };
        let (q, a) = (question(&it), answer(&it));
        let n = pie.labels.len();
        assert!((3..=5).contains(&n));
        assert_eq!(pie.values.len(), n);
        assert_eq!(pie.values.iter().sum::<u32>(), 100, "{:?}", pie.values);
        assert!(pie.values.iter().all(|&v| (MIN_SHARE..100).contains(&v)));
        let mut sorted = pie.values.clone();
        sorted.sort_unstable();
        assert!(sorted.windows(2).all(|w| w[0] < w[1]), "{:?}", pie.values);
        assert!(
            sorted[n - 1] >= sorted[n - 2] + MAX_LEAD,
            "{:?}",
            pie.values
        );
        let colors: HashSet<_> = pie.colors.iter().collect();
        assert_eq!(colors.len(), n);
        assert!(!pie.colors.contains(&INK));
        let labels: HashSet<_> = pie.labels.iter().collect();
        assert_eq!(labels.len(), n);
        assert!(pie.labels.iter().all(|l| LABELS.contains(l)));
        // At the default size, half of it, and larger sizes (`--image-size`).
        for side in [SIDE, SIDE / 2, 288, 384] {
            check_pie(&it.sample.id, pie, it.sample.task, q, a, side);
        }
        seen[usize::from(it.sample.task == Task::ChartMax)] += 1;
    }
    assert_eq!(seen, [100, 100]);
}

#[test]
fn chart_answers_are_true_and_the_pixels_show_them() {
    let mut seen = [0usize; 2];
    for it in items(Split::Train, 8, 400)
        .into_iter()
        .chain(items(Split::Test, 8, 400))
    {
        let Doc::Chart(chart) = &it.doc else { continue };
        let (q, a) = (question(&it), answer(&it));
        let n = chart.labels.len();
        assert!((3..=5).contains(&n));
        let distinct: HashSet<u32> = chart.values.iter().copied().collect();
        assert_eq!(distinct.len(), n, "{:?}", chart.values);
        let tens = chart
            .values
            .iter()
            .all(|v| v % 10 == 0 && (10..=90).contains(v));
        let ones = chart.values.iter().all(|v| (1..=9).contains(v));
        assert!(tens || ones, "{:?}", chart.values);
        match it.sample.task {
            Task::ChartValue => {
                let label = q
                    .strip_prefix("What is the value of ")
                    .and_then(|r| r.strip_suffix(" in the bar chart?"))
                    .unwrap();
                let i = chart.labels.iter().position(|l| *l == label).unwrap();
                assert_eq!(a, chart.values[i].to_string());
                seen[0] += 1;
            }
            Task::ChartMax => {
                assert_eq!(q, "Which category has the highest value in the bar chart?");
                let i = chart.labels.iter().position(|l| *l == a).unwrap();
                assert!(chart.values.iter().all(|&v| v <= chart.values[i]));
                seen[1] += 1;
            }
            t => panic!("a chart for {t}"),
        }
        let k: usize = it.sample.id.rsplit('-').next().unwrap().parse().unwrap();
        assert!(!is_pie(k), "{}", it.sample.id);
        assert!(chart.labels.iter().all(|l| LABELS.contains(l)));
        // At the default size and at half of it.
        for side in [SIDE, SIDE / 2] {
            let r = render_doc(&it.doc, side);
            let k = chart_scale(side);
            let slot = side / n as u32;
            let boxes = bars(chart, side);
            let mut heights = vec![];
            for (i, b) in boxes.iter().enumerate() {
                // The bar's height, measured down the middle of its slot.
                let x = i as u32 * slot + slot / 2;
                let h = (0..side)
                    .filter(|&y| r.pixel(x, y) == chart.color.rgb())
                    .count() as u32;
                assert_eq!(h, b.bottom - b.top);
                heights.push(h);
                // The label below and the value above read back from the pixels.
                let column = (i as u32 * slot, (i as u32 + 1) * slot);
                let below = (column.0, column.1, b.bottom + 1, side);
                assert_eq!(
                    ocr(&r, below, k, INK.rgb()).as_deref(),
                    Some(chart.labels[i])
                );
                let above = (column.0, column.1, 0, b.top);
                let value = chart.values[i].to_string();
                assert_eq!(
                    ocr(&r, above, k, INK.rgb()),
                    Some(value),
                    "{}",
                    it.sample.id
                );
            }
            for i in 0..n {
                assert!(heights[i] > 0);
                for j in 0..n {
                    assert_eq!(
                        heights[i] * chart.values[j],
                        heights[j] * chart.values[i],
                        "{:?} vs {heights:?}",
                        chart.values
                    );
                }
            }
        }
    }
    assert_eq!(seen, [100, 100]);
}

#[test]
fn slots_leave_the_other_families_numbered_as_before() {
    let slots: Vec<Slot> = (0..36).map(slot).collect();
    let others: Vec<usize> = slots
        .iter()
        .filter_map(|s| match s {
            Slot::Other(j) => Some(*j),
            Slot::Doc(_) => None,
        })
        .collect();
    let docs: Vec<usize> = slots
        .iter()
        .filter_map(|s| match s {
            Slot::Doc(k) => Some(*k),
            Slot::Other(_) => None,
        })
        .collect();
    assert_eq!(others, (0..28).collect::<Vec<_>>());
    assert_eq!(docs, (0..8).collect::<Vec<_>>());
}

#[test]
fn onevision_train_loads_the_written_samples() {
    let out = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(out.path().join("images/test")).unwrap();
    let samples: Vec<_> = (0..8)
        .map(|k| write(out.path(), Split::Test, 11, k, &Options::default()).unwrap())
        .collect();
    let json = out.path().join("test.json");
    std::fs::write(&json, serde_json::to_vec_pretty(&samples).unwrap()).unwrap();
    let opts = onevision_train::data::DataOptions {
        image_folder: Some(out.path().to_path_buf()),
        ..Default::default()
    };
    let ds = onevision_train::data::load(&json, &opts).unwrap();
    ds.require_clean().unwrap();
    assert_eq!(ds.samples.len(), 8);
    assert_eq!(ds.modality_counts().single_image, 8);
    let raw: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(raw[2]["task"], "chart_value");
    assert_eq!(raw[2]["metric"], "exact");
    let img = image::open(out.path().join(raw[0]["image"].as_str().unwrap())).unwrap();
    assert_eq!((img.width(), img.height()), (SIDE, SIDE));
}

#[test]
fn generate_writes_the_text_and_chart_samples_after_every_fourteen() {
    let out = tempfile::tempdir().unwrap();
    let summary = onevision_world::generate(out.path(), Split::Train, 5, 18).unwrap();
    assert!(
        Task::DOC.iter().all(|t| summary.per_task[t] == 1),
        "{summary}"
    );
    let raw: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary.json).unwrap()).unwrap();
    for k in 0..4 {
        let it = doc_item(Split::Train, 5, k).unwrap();
        assert_eq!(raw[14 + k], serde_json::to_value(&it.sample).unwrap());
        let png = image::open(out.path().join(&it.sample.image))
            .unwrap()
            .to_rgb8();
        assert_eq!(png.into_raw(), render_doc(&it.doc, SIDE).pixels);
    }
}
