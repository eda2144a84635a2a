//! Line charts as self-contained SVG: training curves for the run directory and the report.
//!
//! Small on purpose: numeric axes with rounded ticks (linear, or logarithmic for losses, which
//! fall by orders of magnitude and would flatten into the floor on a linear axis after a few
//! hundred steps), one polyline per series with its raw points faint behind it when it is
//! smoothed, a legend. Any browser, and the report's HTML, shows them; nothing to install.

use std::fmt::Write as _;

/// One line.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(x, y)` points in x order; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
    /// The raw points `points` were smoothed from (see [`ema`]), drawn thin and pale behind the
    /// line in its colour; empty when the line is not smoothed.
    pub raw: Vec<(f64, f64)>,
}

impl Series {
    /// A line of `points` as they are.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
            raw: Vec::new(),
        }
    }

    /// A line of `points` smoothed by an exponential moving average of `weight` (see [`ema`]),
    /// the raw points faint behind it.
    pub fn smoothed(name: impl Into<String>, points: Vec<(f64, f64)>, weight: f64) -> Self {
        Series {
            name: name.into(),
            points: ema(&points, weight),
            raw: points,
        }
    }
}

/// The exponential moving average of `points` (TensorBoard's smoothing): each value is
/// `weight` × the average so far + (1 − `weight`) × the point, divided by `1 − weight^n` so the
/// first points are not pulled toward zero. Non-finite points are skipped.
pub fn ema(points: &[(f64, f64)], weight: f64) -> Vec<(f64, f64)> {
    let weight = weight.clamp(0.0, 0.999_999);
    let mut average = 0.0;
    let mut debias = 1.0;
    points
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|&(x, y)| {
            average = weight * average + (1.0 - weight) * y;
            debias *= weight;
            (x, average / (1.0 - debias))
        })
        .collect()
}

/// A chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// Label under the x axis.
    pub x_label: String,
    /// Label beside the y axis.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Fix the y range (e.g. `[0, 1]` for accuracy) instead of fitting the data.
    pub y_range: Option<(f64, f64)>,
    /// A logarithmic y axis (points at or below zero are left out).
    pub log_y: bool,
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];
const W: f64 = 640.0;
const H: f64 = 360.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 48.0;
/// About how wide one character of legend text is at font-size 12.
const LEGEND_CHAR: f64 = 6.5;

/// "Nice" tick positions covering `[lo, hi]`, about `n` of them.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).abs().max(1e-12);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let start = (lo / step).ceil() * step;
    let mut out = Vec::new();
    let mut v = start;
    while v <= hi + step * 1e-9 {
        out.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        v += step;
    }
    out
}

/// Ticks for a logarithmic axis over `[lo, hi]` (both positive): 1, 2 and 5 of each decade when
/// that gives a handful, only the powers of ten over many decades, linear ticks within one.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let within = |v: &f64| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9);
    // Parsed from decimal text, so a tick is the double nearest `5e-2`, as a label prints it.
    let tick = |m: u32, d: i32| format!("{m}e{d}").parse::<f64>().unwrap_or(f64::NAN);
    let mut all: Vec<f64> = Vec::new();
    for d in first..=last {
        for m in [1, 2, 5] {
            all.push(tick(m, d));
        }
    }
    let all: Vec<f64> = all.into_iter().filter(within).collect();
    if all.len() > 8 {
        return (first..=last).map(|d| tick(1, d)).filter(within).collect();
    }
    if all.len() >= 2 {
        return all;
    }
    ticks(lo, hi, 4).into_iter().filter(|v| *v > 0.0).collect()
}

fn label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e4 || v.abs() < 1e-3 {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Chart {
    /// The chart as an SVG document.
    pub fn to_svg(&self) -> String {
        let log = self.log_y;
        let drawable =
            move |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!log || y > 0.0);
        let points = || {
            self.series
                .iter()
                .flat_map(|s| s.points.iter().chain(&s.raw))
                .filter(|p| drawable(p))
        };
        let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
        let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y) in points() {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if !x0.is_finite() {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        if let Some((lo, hi)) = self.y_range {
            (y0, y1) = (lo, hi);
        } else if log {
            // Pad by 5% of the span in decades, as the linear axis pads by 5% of its span.
            let pad = ((y1.log10() - y0.log10()) * 0.05).max(0.02);
            y0 /= 10f64.powf(pad);
            y1 *= 10f64.powf(pad);
        } else {
            let pad = ((y1 - y0) * 0.05).max(1e-9);
            y0 = if y0 >= 0.0 {
                (y0 - pad).max(0.0)
            } else {
                y0 - pad
            };
            y1 += pad;
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        if y1 <= y0 {
            y1 = y0 + 1.0;
        }
        if log && y0 <= 0.0 {
            y0 = y1 / 10.0;
        }
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
        let sy = |y: f64| {
            let share = if log {
                (y.log10() - y0.log10()) / (y1.log10() - y0.log10())
            } else {
                (y - y0) / (y1 - y0)
            };
            TOP + (1.0 - share) * ph
        };

        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
            W / 2.0,
            escape(&self.title)
        );
        let y_ticks = if log {
            log_ticks(y0, y1)
        } else {
            ticks(y0, y1, 5)
        };
        for t in y_ticks {
            let y = sy(t);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + pw,
                LEFT - 6.0,
                y + 4.0,
                label(t)
            );
        }
        for t in ticks(x0, x1, 6) {
            let x = sx(t);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + ph,
                TOP + ph + 4.0,
                TOP + ph + 18.0,
                label(t)
            );
        }
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            H - 8.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + ph / 2.0,
            escape(&self.y_label)
        );
        let line = |points: &[(f64, f64)]| -> Vec<String> {
            points
                .iter()
                .filter(|p| drawable(p))
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y.clamp(y0, y1))))
                .collect()
        };
        // Raw points first, so every smoothed line is drawn over them.
        for (i, series) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let raw = line(&series.raw);
            if raw.len() > 1 {
                let _ = writeln!(
                    s,
                    r#"<polyline class="raw" fill="none" stroke="{color}" stroke-opacity="0.25" stroke-width="1" points="{}"/>"#,
                    raw.join(" ")
                );
            }
        }
        let longest_name = self
            .series
            .iter()
            .map(|s| s.name.chars().count())
            .max()
            .unwrap_or(0) as f64;
        for (i, series) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts = line(&series.points);
            if pts.len() == 1 {
                let (x, y) = pts[0].split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(s, r#"<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>"#);
            } else if !pts.is_empty() {
                let _ = writeln!(
                    s,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
                    pts.join(" ")
                );
            }
            let ly = TOP + 14.0 + 16.0 * i as f64;
            let lx = LEFT + pw - 40.0 - LEGEND_CHAR * longest_name;
            let _ = writeln!(
                s,
                r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
                ly - 4.0,
                lx + 18.0,
                ly - 4.0,
                lx + 24.0,
                escape(&series.name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let close = |a: Vec<f64>, b: &[f64]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
        };
        assert!(close(ticks(0.0, 1.0, 5), &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]));
        assert!(close(ticks(3.0, 97.0, 4), &[25.0, 50.0, 75.0]));
        assert_eq!(label(0.6000000000000001), "0.6");
        let t = ticks(0.13, 2.7, 5);
        assert!(
            t.first().unwrap() >= &0.13 && t.last().unwrap() <= &2.7,
            "{t:?}"
        );
    }

    #[test]
    fn a_chart_draws_every_series_and_escapes_text() {
        let chart = Chart {
            title: "loss <train & eval>".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            series: vec![
                Series::new(
                    "train",
                    vec![(1.0, 2.0), (2.0, 1.5), (3.0, f64::NAN), (4.0, 1.0)],
                ),
                Series::new("eval", vec![(4.0, 1.2)]),
            ],
            y_range: None,
            log_y: false,
        };
        let svg = chart.to_svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(svg.contains("loss &lt;train &amp; eval&gt;"));
        // The NaN point is skipped: three points in the train line.
        let line = svg.lines().find(|l| l.starts_with("<polyline")).unwrap();
        let points = line.split("points=\"").nth(1).unwrap();
        assert_eq!(points.split_whitespace().count(), 3);
    }

    #[test]
    fn the_moving_average_is_debiased_and_follows_the_trend() {
        let flat: Vec<(f64, f64)> = (0..5).map(|i| (i as f64, 3.0)).collect();
        // A constant stays itself from the first point: no pull toward zero.
        for (_, y) in ema(&flat, 0.9) {
            assert!((y - 3.0).abs() < 1e-12, "{y}");
        }
        let noisy: Vec<(f64, f64)> = (0..200)
            .map(|i| (i as f64, if i % 2 == 0 { 2.0 } else { 0.0 }))
            .collect();
        let smooth = ema(&noisy, 0.9);
        assert_eq!(smooth.len(), noisy.len());
        let last = smooth.last().unwrap().1;
        assert!((last - 1.0).abs() < 0.1, "{last}");
        assert_eq!(ema(&[(0.0, f64::NAN), (1.0, 1.0)], 0.9), vec![(1.0, 1.0)]);
    }

    /// Loss falls by orders of magnitude; on a linear axis everything after the first few
    /// hundred steps lay flat on the floor.
    #[test]
    fn a_log_axis_spreads_orders_of_magnitude_and_draws_raw_points_faint() {
        let points: Vec<(f64, f64)> = (1..=1000)
            .map(|i| {
                (
                    i as f64,
                    10.0 / i as f64 + if i % 2 == 0 { 0.01 } else { 0.0 },
                )
            })
            .collect();
        let chart = Chart {
            title: "t".into(),
            x_label: "step".into(),
            y_label: "loss (log scale)".into(),
            series: vec![Series::smoothed("train", points, 0.9)],
            y_range: None,
            log_y: true,
        };
        let svg = chart.to_svg();
        // Decade ticks, and one pale line of the raw points under the smoothed one.
        assert!(
            svg.contains(">0.1</text>") && svg.contains(">1</text>"),
            "{svg}"
        );
        assert_eq!(svg.matches(r#"class="raw""#).count(), 1);
        let raw_at = svg.find(r#"class="raw""#).unwrap();
        let line_at = svg.find(r#"<polyline fill="none""#).unwrap();
        assert!(raw_at < line_at, "the raw line is drawn first, behind");
        // The second half of the run (loss 0.02 to 0.01) still falls visibly: more than 5% of
        // the plot's height, where a linear axis gives it less than a pixel.
        let ys = |svg: &str| -> Vec<f64> {
            let line = svg
                .lines()
                .find(|l| l.starts_with(r#"<polyline fill="none""#))
                .unwrap();
            line.split("points=\"")
                .nth(1)
                .unwrap()
                .trim_end_matches("\"/>")
                .split_whitespace()
                .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
                .collect()
        };
        let log_ys = ys(&svg);
        assert!(
            log_ys[999] - log_ys[499] > (H - TOP - BOTTOM) / 20.0,
            "{} {}",
            log_ys[499],
            log_ys[999]
        );
        let linear = Chart {
            log_y: false,
            ..chart.clone()
        };
        let lin_ys = ys(&linear.to_svg());
        assert!(
            lin_ys[999] - lin_ys[499] < 1.0,
            "{} {}",
            lin_ys[499],
            lin_ys[999]
        );
        // Zero or negative values cannot be drawn on a log axis, and do not break it.
        let chart = Chart {
            series: vec![Series::new("x", vec![(0.0, 0.0), (1.0, -1.0), (2.0, 0.5)])],
            ..chart
        };
        assert!(chart.to_svg().contains("<circle"));
    }

    #[test]
    fn log_ticks_are_round() {
        assert_eq!(log_ticks(0.05, 3.0), vec![0.05, 0.1, 0.2, 0.5, 1.0, 2.0]);
        assert_eq!(
            log_ticks(1e-4, 1e3),
            vec![1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0]
        );
        let narrow = log_ticks(1.2, 1.8);
        assert!(
            narrow.len() >= 2 && narrow.iter().all(|t| (1.2..=1.8).contains(t)),
            "{narrow:?}"
        );
    }
}
