//! Hand-written SVG charts for the report: grouped vertical bars, horizontal bars, and points
//! over time with reference lines. Rendered on the server, so they read without JavaScript and
//! print. Values arrive as `f64` for geometry only; the report's tables carry the exact figures.

use std::fmt::Write as _;

use super::page::esc;

/// Colours for series, in order (pollutants, origins).
pub const PALETTE: &[&str] = &["#0b6e4f", "#d1495b", "#edae49", "#00798c", "#30638e", "#8d6a9f", "#6c757d"];

const W: f64 = 860.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;

/// A round upper bound for an axis: 1, 2 or 5 times a power of ten.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|v| *v >= max).unwrap_or(10.0 * p)
}

fn fmt_tick(v: f64) -> String {
    if v >= 1e8 {
        format!("{:.1}亿", v / 1e8)
    } else if v >= 1e4 && (v / 1e4).fract() == 0.0 {
        format!("{:.0}万", v / 1e4)
    } else if v >= 1e4 {
        format!("{:.1}万", v / 1e4)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn legend(out: &mut String, names: &[String], y: f64) {
    let mut x = LEFT;
    for (i, name) in names.iter().enumerate() {
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            y - 9.0,
            PALETTE[i % PALETTE.len()],
            x + 14.0,
            y,
            esc(name)
        );
        x += 24.0 + 7.0 * name.chars().count() as f64;
    }
}

fn y_axis(out: &mut String, max: f64, plot_h: f64, unit: &str) {
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let y = TOP + plot_h - plot_h * f64::from(i) / 4.0;
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            fmt_tick(v)
        );
    }
    let _ = write!(out, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"start\">{}</text>", 4.0, TOP - 12.0, esc(unit));
}

/// Grouped vertical bars: one group per category, one bar per series.
pub fn bars(title: &str, unit: &str, categories: &[String], series: &[(String, Vec<f64>)]) -> String {
    let plot_h = 220.0;
    let h = TOP + plot_h + 60.0;
    let mut out = format!(
        "<svg class=\"chart\" role=\"img\" viewBox=\"0 0 {W} {h}\" xmlns=\"http://www.w3.org/2000/svg\"><title>{}</title>",
        esc(title)
    );
    let max = nice_max(series.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.0, f64::max));
    y_axis(&mut out, max, plot_h, unit);
    let n = categories.len().max(1) as f64;
    let group = (W - LEFT - RIGHT) / n;
    let bar = (group * 0.8 / series.len().max(1) as f64).min(40.0);
    for (c, category) in categories.iter().enumerate() {
        let x0 = LEFT + group * c as f64 + (group - bar * series.len() as f64) / 2.0;
        for (s, (name, values)) in series.iter().enumerate() {
            let v = values.get(c).copied().unwrap_or(0.0);
            let bh = plot_h * v / max;
            let _ = write!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} {}: {}</title></rect>",
                x0 + bar * s as f64,
                TOP + plot_h - bh,
                bar.max(1.0),
                bh,
                PALETTE[s % PALETTE.len()],
                esc(category),
                esc(name),
                fmt_tick(v)
            );
        }
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            LEFT + group * (c as f64 + 0.5),
            TOP + plot_h + 16.0,
            esc(category)
        );
    }
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
        W - RIGHT,
        TOP + plot_h,
        TOP + plot_h
    );
    let names: Vec<String> = series.iter().map(|(n, _)| n.clone()).collect();
    legend(&mut out, &names, h - 12.0);
    out.push_str("</svg>");
    out
}

/// Horizontal bars, one per labelled value.
pub fn hbars(title: &str, unit: &str, items: &[(String, f64)]) -> String {
    let row = 24.0;
    let label_w = 180.0;
    let h = TOP + row * items.len().max(1) as f64 + 20.0;
    let mut out = format!(
        "<svg class=\"chart\" role=\"img\" viewBox=\"0 0 {W} {h}\" xmlns=\"http://www.w3.org/2000/svg\"><title>{}</title>",
        esc(title)
    );
    let max = nice_max(items.iter().map(|(_, v)| *v).fold(0.0, f64::max));
    let width = W - label_w - RIGHT - 80.0;
    let _ = write!(out, "<text x=\"{label_w}\" y=\"{:.1}\">{}</text>", TOP - 12.0, esc(unit));
    for (i, (label, v)) in items.iter().enumerate() {
        let y = TOP + row * i as f64;
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text><rect x=\"{label_w}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            label_w - 6.0,
            y + 15.0,
            esc(label),
            (width * v / max).max(1.0),
            row - 6.0,
            PALETTE[0],
            label_w + width * v / max + 6.0,
            y + 15.0,
            fmt_tick(*v)
        );
    }
    out.push_str("</svg>");
    out
}

/// Points over time (x in milliseconds since the epoch), one series each, with horizontal
/// reference lines (value, label).
pub fn points_over_time(
    title: &str,
    unit: &str,
    series: &[(String, Vec<(i64, f64)>)],
    references: &[(f64, String)],
) -> String {
    let plot_h = 220.0;
    let h = TOP + plot_h + 60.0;
    let mut out = format!(
        "<svg class=\"chart\" role=\"img\" viewBox=\"0 0 {W} {h}\" xmlns=\"http://www.w3.org/2000/svg\"><title>{}</title>",
        esc(title)
    );
    let all: Vec<(i64, f64)> = series.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let max = nice_max(all.iter().map(|p| p.1).chain(references.iter().map(|r| r.0)).fold(0.0, f64::max) * 1.05);
    y_axis(&mut out, max, plot_h, unit);
    let (t0, t1) = all.iter().fold((i64::MAX, i64::MIN), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let span = if t1 > t0 { (t1 - t0) as f64 } else { 1.0 };
    let x_of = |t: i64| {
        if t1 > t0 {
            LEFT + 10.0 + (W - LEFT - RIGHT - 20.0) * (t - t0) as f64 / span
        } else {
            (LEFT + W - RIGHT) / 2.0
        }
    };
    for (v, label) in references {
        let y = TOP + plot_h - plot_h * v / max;
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#b3541e\" stroke-dasharray=\"5 4\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#b3541e\">{}</text>",
            W - RIGHT,
            W - RIGHT,
            y - 4.0,
            esc(label)
        );
    }
    for (s, (name, pts)) in series.iter().enumerate() {
        let color = PALETTE[s % PALETTE.len()];
        let mut sorted = pts.clone();
        sorted.sort_by_key(|p| p.0);
        if sorted.len() > 1 {
            let path: Vec<String> =
                sorted.iter().map(|(t, v)| format!("{:.1},{:.1}", x_of(*t), TOP + plot_h - plot_h * v / max)).collect();
            let _ = write!(
                out,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>",
                path.join(" ")
            );
        }
        for (t, v) in &sorted {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{color}\"><title>{}: {v:.1}</title></circle>",
                x_of(*t),
                TOP + plot_h - plot_h * v / max,
                esc(name)
            );
        }
    }
    if t1 >= t0 && !all.is_empty() {
        let ends: &[(i64, &str)] = if t1 > t0 { &[(t0, "start"), (t1, "end")] } else { &[(t0, "middle")] };
        for &(t, anchor) in ends {
            let day = crate::domain::Timestamp::from_micros(t.saturating_mul(1000)).to_string();
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
                x_of(t),
                TOP + plot_h + 16.0,
                esc(day.get(..10).unwrap_or(&day))
            );
        }
    }
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
        W - RIGHT,
        TOP + plot_h,
        TOP + plot_h
    );
    let names: Vec<String> = series.iter().map(|(n, _)| n.clone()).collect();
    legend(&mut out, &names, h - 12.0);
    out.push_str("</svg>");
    out
}
