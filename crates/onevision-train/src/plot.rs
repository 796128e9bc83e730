//! The loss and learning-rate curves of a run, as an SVG (`OUTPUT/train_curves.svg`), drawn with
//! plotters from the JSONL log's records: two panels against the optimizer step, the loss on
//! top, one learning-rate line per trained group below.
//!
//! Text is SVG `<text>` (sans-serif) that the viewer renders with its own fonts, so no font file
//! is shipped: plotters without a font feature only estimates label widths for the layout
//! (its `naive` font), which is all an SVG needs.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::log::StepRecord;
use crate::{Error, Result};

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 760;
/// Up to this many steps each point is also marked (so one or a few steps are visible).
const MARK_UP_TO: usize = 60;

/// One line of a panel.
struct Series {
    name: String,
    color: RGBColor,
    points: Vec<(i64, f64)>,
}

/// Writes the curves of `records` to `path` (SVG, whatever the extension). Works from one record
/// on; non-finite values leave gaps.
pub fn plot_curves(records: &[StepRecord], path: &Path) -> Result<()> {
    let err = |e: String| Error::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    };
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let (top, bottom) = root.split_vertically(HEIGHT / 2);
    let (x0, x1) = step_range(records);
    let loss: Vec<(i64, f64)> = records.iter().map(|r| (r.step as i64, r.loss)).collect();
    panel(
        &top,
        "Training loss",
        "loss",
        (x0, x1),
        &[Series {
            name: "loss".to_string(),
            color: BLUE,
            points: loss,
        }],
        false,
    )
    .map_err(err)?;
    let mut groups: Vec<&String> = records.iter().flat_map(|r| r.lr.keys()).collect();
    groups.sort();
    groups.dedup();
    let lrs: Vec<Series> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let pts = records
                .iter()
                .filter_map(|r| r.lr.get(*g).map(|lr| (r.step as i64, *lr)))
                .collect();
            Series {
                name: (*g).clone(),
                color: group_color(g, i),
                points: pts,
            }
        })
        .collect();
    panel(
        &bottom,
        "Learning rate",
        "learning rate",
        (x0, x1),
        &lrs,
        true,
    )
    .map_err(err)?;
    root.present().map_err(|e| err(e.to_string()))
}

/// One chart: `series` against the step axis `x`.
fn panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    y_desc: &str,
    (x0, x1): (i64, i64),
    series: &[Series],
    from_zero: bool,
) -> std::result::Result<(), String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (y0, y1) = value_range(ys, from_zero);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(84)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(e)?;
    let span = (y1 - y0).abs();
    chart
        .configure_mesh()
        .x_desc("optimizer step")
        .y_desc(y_desc)
        .x_labels(10)
        .y_labels(8)
        .y_label_formatter(&|v| tick_label(*v, span))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(e)?;
    let mark = series.iter().map(|s| s.points.len()).max().unwrap_or(0) <= MARK_UP_TO;
    for Series {
        name,
        color,
        points,
    } in series
    {
        let style = ShapeStyle::from(*color).stroke_width(2);
        // Finite runs only: a NaN or inf value breaks the line.
        let mut first = true;
        for run in points.split(|p| !p.1.is_finite()) {
            if run.is_empty() {
                continue;
            }
            let s = chart
                .draw_series(LineSeries::new(run.iter().copied(), style))
                .map_err(e)?;
            if first && series.len() > 1 {
                let c = *color;
                s.label(name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(2))
                });
                first = false;
            }
            if mark {
                chart
                    .draw_series(run.iter().map(|p| Circle::new(*p, 3, color.filled())))
                    .map_err(e)?;
            }
        }
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
    }
    Ok(())
}

/// The step axis: first to last step, widened to at least two steps.
fn step_range(records: &[StepRecord]) -> (i64, i64) {
    let lo = records.iter().map(|r| r.step as i64).min().unwrap_or(0);
    let hi = records.iter().map(|r| r.step as i64).max().unwrap_or(1);
    if hi - lo < 2 {
        (lo - 1, hi + 1)
    } else {
        (lo, hi)
    }
}

/// The value axis over the finite values, with 5% headroom; from 0 for learning rates.
fn value_range(values: impl Iterator<Item = f64>, from_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if from_zero {
        lo = lo.min(0.0);
    }
    let pad = if hi > lo {
        0.05 * (hi - lo)
    } else {
        (0.05 * hi.abs()).max(1e-3 * hi.abs().max(1e-9))
    };
    if from_zero && lo >= 0.0 {
        (0.0, hi + pad)
    } else {
        (lo - pad, hi + pad)
    }
}

/// Tick labels readable for losses (2.35) and learning rates (1.0e-5) alike.
fn tick_label(v: f64, span: f64) -> String {
    if v == 0.0 {
        "0".to_string()
    } else if v.abs() < 1e-2 || v.abs() >= 1e5 {
        format!("{v:.1e}")
    } else if span < 0.05 {
        format!("{v:.4}")
    } else {
        format!("{v:.2}")
    }
}

/// Fixed colours per group, so plots of different runs read alike.
fn group_color(name: &str, i: usize) -> RGBColor {
    match name {
        "language" => RGBColor(31, 119, 180),
        "vision" => RGBColor(44, 160, 44),
        "projector" => RGBColor(214, 39, 40),
        _ => [
            RGBColor(148, 103, 189),
            RGBColor(255, 127, 14),
            RGBColor(23, 190, 207),
        ][i % 3],
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn records(n: usize) -> Vec<StepRecord> {
        (1..=n)
            .map(|s| {
                let m = if s <= 3 {
                    s as f64 / 3.0
                } else {
                    0.5 * (1.0
                        + (std::f64::consts::PI * (s - 3) as f64 / (n.max(4) - 3) as f64).cos())
                };
                StepRecord {
                    step: s,
                    epoch: s as f64 / n as f64,
                    loss: 3.0 / (1.0 + 0.05 * s as f64) + 0.02 * ((s * 7) % 5) as f64,
                    lr: BTreeMap::from([
                        ("language".to_string(), 1e-5 * m),
                        ("vision".to_string(), 2e-6 * m),
                        ("projector".to_string(), 1e-5 * m),
                    ]),
                    grad_norm: 1.0,
                    tokens: 1000,
                    samples_per_s: 1.0,
                    tokens_per_s: 1000.0,
                    skipped_samples: 0,
                    truncated_samples: 0,
                }
            })
            .collect()
    }

    #[test]
    fn writes_an_svg_with_labels_for_one_and_many_steps() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))?;
        for n in [0, 1, 2, 500] {
            let path = dir.path().join(format!("curves-{n}.svg"));
            let mut recs = records(n);
            if n == 500 {
                recs[100].loss = f64::NAN;
            }
            plot_curves(&recs, &path)?;
            let svg = std::fs::read_to_string(&path).map_err(|e| Error::Config(e.to_string()))?;
            assert!(svg.starts_with("<svg"), "n={n}");
            for text in ["Training loss", "Learning rate", "optimizer step"] {
                assert!(svg.contains(text), "n={n}: {text}");
            }
            if n > 0 {
                for g in ["language", "vision", "projector"] {
                    assert!(svg.contains(g), "n={n}: legend {g}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn ranges_and_labels() {
        assert_eq!(step_range(&records(1)), (0, 2));
        assert_eq!(step_range(&records(10)), (1, 10));
        assert_eq!(value_range([2.0, 3.0].into_iter(), false), (1.95, 3.05));
        assert_eq!(value_range([f64::NAN].into_iter(), false), (0.0, 1.0));
        let (lo, hi) = value_range([0.0, 1e-5].into_iter(), true);
        assert_eq!(lo, 0.0);
        assert!(hi > 1e-5);
        let (lo, hi) = value_range([2.0].into_iter(), false);
        assert!(lo < 2.0 && hi > 2.0);
        assert_eq!(tick_label(1e-5, 1e-5), "1.0e-5");
        assert_eq!(tick_label(2.345, 1.0), "2.35");
        assert_eq!(tick_label(0.0, 1.0), "0");
    }
}
