//! The timeline as a self-contained SVG line chart (queue length, admitted, decided
//! over time), drawn by the shared chart in [`crate::chart`].

use anyhow::Result;
use plotters::style::RGBColor;

use super::tally::Sample;
use crate::chart::{Chart, Series};

/// Reads one series' value from a sample.
type Read = fn(&Sample) -> u64;

/// Each series: name in the legend, colour, and how to read it from a sample.
const SERIES: [(&str, RGBColor, Read); 3] = [
    ("queue", RGBColor(0xd9, 0x5f, 0x02), |s| s.queue),
    ("admitted", RGBColor(0x1b, 0x9e, 0x77), |s| s.admitted),
    ("decided", RGBColor(0x75, 0x70, 0xb3), |s| s.decided),
];

/// The chart of `samples` under `title`.
pub fn render_svg(samples: &[Sample], title: &str) -> Result<String> {
    let series: Vec<Series> = SERIES
        .iter()
        .map(|(name, colour, read)| Series {
            name,
            colour: *colour,
            points: samples.iter().map(|s| (s.t_s, read(s) as f64)).collect(),
        })
        .collect();
    Chart {
        title,
        x_label: "seconds since the crowd started",
        y_label: "users",
    }
    .render(&series)
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

    /// The text of every `<text>` element.
    fn texts(svg: &str) -> Vec<&str> {
        svg.split("</text>")
            .filter_map(|chunk| Some(chunk.rsplit_once("<text")?.1.split_once('>')?.1.trim()))
            .collect()
    }

    #[test]
    fn chart_has_axes_three_series_and_a_legend() {
        let samples: Vec<Sample> = (0..40)
            .map(|i| sample(i as f64 * 0.25, i * 50, i * 20, i * 18))
            .collect();
        let svg = render_svg(&samples, "demo <1> & co").expect("renders");
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_balanced(&svg);
        let texts = texts(&svg);
        for (name, colour, _) in SERIES {
            assert!(texts.contains(&name), "legend {name}: {texts:?}");
            let stroke = format!(
                r##"stroke="#{:02X}{:02X}{:02X}""##,
                colour.0, colour.1, colour.2
            );
            assert_eq!(
                svg.matches(&stroke).count(),
                2,
                "{name}: its line and legend mark"
            );
        }
        assert!(
            texts.contains(&"seconds since the crowd started"),
            "{texts:?}"
        );
        assert!(texts.contains(&"users"), "{texts:?}");
        assert!(texts.contains(&"demo &lt;1&gt; &amp; co"), "title escaped");
        assert!(svg.matches(',').count() >= 3 * 40, "every point drawn");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn empty_and_flat_timelines_still_render() {
        for samples in [vec![], vec![sample(0.0, 0, 0, 0)]] {
            let svg = render_svg(&samples, "empty").expect("renders");
            assert!(svg.starts_with("<svg"));
            assert_balanced(&svg);
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
    }
}
