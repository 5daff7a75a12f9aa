//! The SVG line charts of the drop timeline and the benchmark plots, drawn with
//! plotters: a title, two axes from 0 with round ticks and their labels, horizontal
//! grid lines, one line per series and a legend beside the plot. Any browser opens
//! the file.
//!
//! plotters is built without a font library (no `ttf` feature, so no font-kit,
//! fontconfig or freetype): its SVG backend writes every text as a `<text>` element
//! that the viewer lays out, and needs fonts only to estimate text sizes for spacing,
//! which its built-in estimate does.

use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 460;
/// Beside the plot, for the legend.
const LEGEND_WIDTH: u32 = 170;
/// plotters divides font sizes by 1.24 for SVG, so these come out near 12 and 16 px.
const TEXT_SIZE: f64 = 15.0;
const TITLE_SIZE: f64 = 20.0;
const FONT: &str = "sans-serif";
const GRID: RGBColor = RGBColor(0xe5, 0xe5, 0xe5);
const AXIS: RGBColor = RGBColor(0x33, 0x33, 0x33);

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
    /// Legend text.
    pub name: &'a str,
    /// The line's colour.
    pub colour: RGBColor,
    /// (x, y) points, x ascending.
    pub points: Vec<(f64, f64)>,
}

/// The top of an axis over `values`: their maximum, or 1 when there is none above 0
/// (plotters needs a range that is not empty).
fn axis_max(values: impl Iterator<Item = f64>) -> f64 {
    let max = values.fold(0.0, f64::max);
    if max > 0.0 && max.is_finite() {
        max
    } else {
        1.0
    }
}

/// An axis label: whole numbers without decimals, others with one.
fn label(value: &f64) -> String {
    if value.fract().abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

impl Chart<'_> {
    /// The SVG of `series` (axes start at 0).
    pub fn render(&self, series: &[Series]) -> Result<String> {
        let mut svg = String::new();
        self.draw(series, &mut svg)?;
        Ok(svg)
    }

    fn draw(&self, series: &[Series], svg: &mut String) -> Result<()> {
        let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let (plot, legend) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let points = || series.iter().flat_map(|s| s.points.iter());
        let x_max = axis_max(points().map(|p| p.0));
        // Headroom, so the highest point does not run along the top of the frame.
        let y_max = axis_max(points().map(|p| p.1)) * 1.05;

        let mut chart = ChartBuilder::on(&plot)
            .caption(self.title, (FONT, TITLE_SIZE))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .max_light_lines(0)
            .bold_line_style(GRID)
            .axis_style(AXIS)
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&label)
            .y_label_formatter(&label)
            .label_style((FONT, TEXT_SIZE))
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .draw()?;
        for line in series {
            chart.draw_series(LineSeries::new(
                line.points.iter().copied(),
                line.colour.stroke_width(2),
            ))?;
        }

        let text =
            TextStyle::from((FONT, TEXT_SIZE).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        for (index, line) in series.iter().enumerate() {
            let y = 60 + 22 * i32::try_from(index)?;
            legend.draw(&PathElement::new(
                vec![(10, y), (34, y)],
                line.colour.stroke_width(3),
            ))?;
            legend.draw(&Text::new(line.name, (40, y), text.clone()))?;
        }
        root.present()?;
        Ok(())
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
            let svg = chart
                .render(&[Series {
                    name: "s",
                    colour: BLACK,
                    points,
                }])
                .expect("renders");
            assert!(svg.len() < 20_000, "{} bytes", svg.len());
            assert!(
                svg.starts_with("<svg") && svg.ends_with("</svg>\n"),
                "{svg}"
            );
            assert!(svg.matches("<text").count() >= 3 + 2, "{svg}");
        }
    }

    #[test]
    fn tick_labels_are_round() {
        let chart = Chart {
            title: "t",
            x_label: "x",
            y_label: "y",
        };
        let svg = chart
            .render(&[Series {
                name: "s",
                colour: BLACK,
                points: vec![(0.0, 0.0), (9.3, 18_734.0)],
            }])
            .expect("renders");
        let labels: Vec<&str> = svg
            .split("</text>")
            .filter_map(|text| text.rsplit('>').next())
            .map(str::trim)
            .filter(|text| text.parse::<f64>().is_ok())
            .collect();
        assert!(labels.len() >= 6, "{labels:?}");
        for text in labels {
            let significant = text.replace('.', "").trim_matches('0').len();
            assert!(significant <= 2, "{text} is not a round tick");
        }
        assert_eq!(label(&2000.0), "2000");
        assert_eq!(label(&0.5), "0.5");
    }
}
