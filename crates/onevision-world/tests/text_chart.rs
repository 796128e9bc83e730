//! Rendered text and bar charts: deterministic, train and test disjoint, answers true of the
//! document, and the pixels say the same: a tiny OCR for the world's own font reads back every
//! word, number, label and value, and bar heights are proportional to the values.

use std::collections::HashSet;

use onevision_world::font::{self, ADVANCE, GLYPHS, GLYPH_H, GLYPH_W};
use onevision_world::text::{
    bars, card_scale, chart_scale, doc_item, render_doc, slot, write, Doc, DocItem, Slot, INK,
    LABELS, WORDS,
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
/// the text's pixels, then tries each left edge the first glyph can have and matches every
/// `scale`-sized cell against the glyph table. `None` when nothing reads.
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
    let top = hits.iter().map(|h| h.1).min()?;
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
    // Letters and digits all start on the top row, which the reader aligns to.
    for (c, rows) in GLYPHS.iter().filter(|(c, _)| c.is_ascii_alphanumeric()) {
        assert_ne!(rows[0], 0, "{c}");
        let mut r = render(&Scene { objects: vec![] }, 64);
        let s = c.to_string();
        font::draw(&mut r, &s, 10, 10, 3, [1, 2, 3]);
        assert_eq!(ocr(&r, (0, 64, 0, 64), 3, [1, 2, 3]), Some(s));
    }
    assert_eq!(font::height(4), 4 * GLYPH_H);
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
                assert!(WORDS.contains(&a), "{a}");
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
    assert_eq!(seen, [200, 200]);
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
