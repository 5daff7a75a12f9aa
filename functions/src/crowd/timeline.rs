//! The timeline as a self-contained SVG line chart (queue length, admitted, decided
//! over time), written by hand: three polylines, two axes with round ticks, and a
//! legend, which any browser opens without a plotting library.

use std::fmt::Write as _;

use super::tally::Sample;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 460.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

/// Reads one series' value from a sample.
type Read = fn(&Sample) -> u64;

/// Each series: name in the legend, colour, and how to read it from a sample.
const SERIES: [(&str, &str, Read); 3] = [
    ("queue", "#d95f02", |s| s.queue),
    ("admitted", "#1b9e77", |s| s.admitted),
    ("decided", "#7570b3", |s| s.decided),
];

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

/// The chart of `samples` under `title`.
pub fn render_svg(samples: &[Sample], title: &str) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let t_max = samples.iter().map(|s| s.t_s).fold(0.0, f64::max).max(1.0);
    let y_data_max = samples
        .iter()
        .flat_map(|s| SERIES.iter().map(move |(_, _, read)| read(s)))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let x_step = tick_step(t_max, 8.0);
    let y_step = tick_step(y_data_max, 6.0);
    let y_max = (y_data_max / y_step).ceil() * y_step;
    let x = |t: f64| LEFT + t / t_max * plot_w;
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
        escape(title)
    );

    // Grid and ticks.
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
    while tick <= t_max + x_step / 1e6 {
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

    // Axes and their labels.
    let _ = writeln!(
        svg,
        r##"<path d="M{LEFT},{TOP} V{:.1} H{:.1}" fill="none" stroke="#333"/>"##,
        TOP + plot_h,
        LEFT + plot_w
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds since the crowd started</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">users</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );

    // Series and legend.
    for (index, (name, colour, read)) in SERIES.iter().enumerate() {
        let points: Vec<String> = samples
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.t_s), y(read(s) as f64)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline id="series-{name}" fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let ly = TOP + 10.0 + index as f64 * 22.0;
        let lx = LEFT + plot_w + 20.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"/><text x="{}" y="{}">{name}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_s: f64, entered: u64, admitted: u64, decided: u64) -> Sample {
        Sample {
            t_s,
            entered,
            queue: entered - admitted,
            admitted,
            decided,
        }
    }

    /// Every `<tag ...>` is closed by `</tag>` or is self-closing, in nesting order.
    fn assert_balanced(svg: &str) {
        let mut open: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("unterminated tag") + start;
            let tag = &rest[start + 1..end];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop().as_deref(), Some(name), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                let name = tag.split_whitespace().next().expect("tag name");
                open.push(name.to_owned());
            }
            rest = &rest[end + 1..];
        }
        assert!(open.is_empty(), "unclosed: {open:?}");
    }

    #[test]
    fn chart_has_axes_three_series_and_a_legend() {
        let samples: Vec<Sample> = (0..40)
            .map(|i| sample(i as f64 * 0.25, i * 50, i * 20, i * 18))
            .collect();
        let svg = render_svg(&samples, "demo <1> & co");
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_balanced(&svg);
        for name in ["queue", "admitted", "decided"] {
            assert!(svg.contains(&format!(r#"id="series-{name}""#)), "{name}");
            assert!(svg.contains(&format!(">{name}</text>")), "legend {name}");
        }
        assert!(svg.contains("seconds since the crowd started"));
        assert!(svg.contains("demo &lt;1&gt; &amp; co"), "title escaped");
        assert!(svg.matches(',').count() >= 3 * 40, "every point drawn");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn empty_and_flat_timelines_still_render() {
        for samples in [vec![], vec![sample(0.0, 0, 0, 0)]] {
            let svg = render_svg(&samples, "empty");
            assert!(svg.starts_with("<svg"));
            assert_balanced(&svg);
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
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
