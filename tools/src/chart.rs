//! A self-contained SVG line chart, written by hand: polylines, two axes with round
//! ticks, and a legend, which any browser opens without a plotting library. The drop
//! timeline and the benchmark plots use it.

use std::fmt::Write as _;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 460.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

/// Titles of a chart.
#[derive(Debug, Clone, Copy)]
pub struct Chart<'a> {
    /// Above the plot.
    pub title: &'a str,
    /// Under the x axis.
    pub x_label: &'a str,
    /// Along the y axis.
    pub y_label: &'a str,
}

/// One line.
#[derive(Debug, Clone)]
pub struct Series<'a> {
    /// Legend text (also the polyline's id).
    pub name: &'a str,
    /// CSS colour.
    pub colour: &'a str,
    /// (x, y) points, x ascending.
    pub points: Vec<(f64, f64)>,
}

/// A round tick step (1, 2 or 5 times a power of ten) giving about `target` ticks
/// over `0..=max`.
fn tick_step(max: f64, target: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / target;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|factor| factor * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude);
    step.max(f64::MIN_POSITIVE)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn label(value: f64) -> String {
    if value.fract().abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

impl Chart<'_> {
    /// The SVG of `series` (axes start at 0).
    pub fn render(&self, series: &[Series]) -> String {
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let points = || series.iter().flat_map(|s| s.points.iter());
        // Steps come from the same maxima the axes use, so an empty or all-zero series
        // still gets a handful of ticks (a step derived from 0 would never end).
        let x_data_max = points().map(|p| p.0).fold(0.0, f64::max);
        let x_max = if x_data_max > 0.0 && x_data_max.is_finite() {
            x_data_max
        } else {
            1.0
        };
        let x_step = tick_step(x_max, 8.0);
        let y_data_max = points().map(|p| p.1).fold(0.0, f64::max);
        let y_data_max = if y_data_max > 0.0 && y_data_max.is_finite() {
            y_data_max
        } else {
            1.0
        };
        let y_step = tick_step(y_data_max, 6.0);
        let y_max = (y_data_max / y_step).ceil() * y_step;
        let x = |t: f64| LEFT + t / x_max * plot_w;
        let y = |v: f64| TOP + plot_h - v / y_max * plot_h;

        let mut svg = String::new();
        // `write!` into a String cannot fail; the results are ignored on purpose.
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            svg,
            r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="28" text-anchor="middle" font-size="16">{}</text>"#,
            LEFT + plot_w / 2.0,
            escape(self.title)
        );
        let mut tick = 0.0;
        while tick <= y_max + y_step / 2.0 {
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + plot_w,
                LEFT - 8.0,
                y(tick) + 4.0,
                label(tick),
                py = y(tick),
            );
            tick += y_step;
        }
        let mut tick = 0.0;
        while tick <= x_max + x_step / 1e6 {
            let _ = writeln!(
                svg,
                r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#333"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + plot_h,
                TOP + plot_h + 5.0,
                TOP + plot_h + 20.0,
                label(tick),
                px = x(tick),
            );
            tick += x_step;
        }
        let _ = writeln!(
            svg,
            r##"<path d="M{LEFT},{TOP} V{:.1} H{:.1}" fill="none" stroke="#333"/>"##,
            TOP + plot_h,
            LEFT + plot_w
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + plot_w / 2.0,
            HEIGHT - 15.0,
            escape(self.x_label)
        );
        let _ = writeln!(
            svg,
            r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
            TOP + plot_h / 2.0,
            TOP + plot_h / 2.0,
            escape(self.y_label)
        );
        for (index, line) in series.iter().enumerate() {
            let points: Vec<String> = line
                .points
                .iter()
                .map(|(px, py)| format!("{:.1},{:.1}", x(*px), y(*py)))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline id="series-{}" fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
                escape(line.name),
                line.colour,
                points.join(" ")
            );
            let ly = TOP + 10.0 + index as f64 * 22.0;
            let lx = LEFT + plot_w + 20.0;
            let _ = writeln!(
                svg,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
                lx + 24.0,
                line.colour,
                lx + 30.0,
                ly + 4.0,
                escape(line.name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_flat_series_still_render_a_few_ticks() {
        let chart = Chart {
            title: "t",
            x_label: "x",
            y_label: "y",
        };
        for points in [vec![], vec![(0.0, 0.0)], vec![(0.0, 5.0), (0.0, 7.0)]] {
            let svg = chart.render(&[Series {
                name: "s",
                colour: "#000",
                points,
            }]);
            assert!(svg.len() < 20_000, "{} bytes", svg.len());
            assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        }
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(10.0, 5.0), 2.0);
        assert_eq!(tick_step(20_000.0, 6.0), 5_000.0);
        assert_eq!(tick_step(0.9, 8.0), 0.2);
        assert_eq!(tick_step(0.0, 8.0), 1.0);
    }
}
