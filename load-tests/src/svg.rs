//! Line charts as standalone SVG, written by hand: axes with ticks, one
//! polyline per series, a legend. Enough for latency-by-percentile and
//! rate-over-time plots without a plotting dependency.

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 56.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// How the x axis is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    /// Linear in x.
    Linear,
    /// Percentiles 0–99.99…, spread as HdrHistogram plots do: by
    /// `log10(1 / (1 - p))`, so 90, 99, 99.9 and 99.99 are equally spaced.
    Percentile,
}

/// One line.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(x, y)` points in data units.
    pub points: Vec<(f64, f64)>,
}

/// A chart with a title and labelled axes.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// Label under the x axis.
    pub x_label: String,
    /// Label beside the y axis.
    pub y_label: String,
    /// How x is scaled.
    pub x_axis: XAxis,
    /// The lines.
    pub series: Vec<Series>,
}

impl Chart {
    /// Renders the chart as an SVG document.
    pub fn render(&self) -> String {
        let map_x = |x: f64| match self.x_axis {
            XAxis::Linear => x,
            XAxis::Percentile => percentile_position(x),
        };
        let points = self.series.iter().flat_map(|s| s.points.iter());
        let (mut x_max, mut y_max) = (0.0f64, 0.0f64);
        for &(x, y) in points {
            x_max = x_max.max(map_x(x));
            y_max = y_max.max(y);
        }
        let x_max = if x_max > 0.0 { x_max } else { 1.0 };
        let y_max = nice_ceiling(y_max);
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let px = |x: f64| LEFT + map_x(x) / x_max * plot_w;
        let py = |y: f64| TOP + plot_h - y / y_max * plot_h;

        let mut svg = String::new();
        svg.push_str(&format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        ));
        svg.push_str(&format!(
            r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
            WIDTH / 2.0,
            escape(&self.title)
        ));
        // Horizontal grid and y ticks.
        for i in 0..=5 {
            let y = y_max * f64::from(i) / 5.0;
            svg.push_str(&format!(
                r##"<line x1="{LEFT}" x2="{}" y1="{y1:.1}" y2="{y1:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                WIDTH - RIGHT,
                LEFT - 6.0,
                py(y) + 4.0,
                short_number(y),
                y1 = py(y),
            ));
        }
        for (label, x) in self.x_ticks(x_max) {
            let x_px = LEFT + map_x(x) / x_max * plot_w;
            svg.push_str(&format!(
                r##"<line x1="{x_px:.1}" x2="{x_px:.1}" y1="{TOP}" y2="{:.1}" stroke="#eee"/><text x="{x_px:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
                TOP + plot_h,
                TOP + plot_h + 16.0,
            ));
        }
        svg.push_str(&format!(
            r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/><text x="{}" y="{}" text-anchor="middle">{}</text><text transform="translate(16 {}) rotate(-90)" text-anchor="middle">{}</text>"##,
            LEFT + plot_w / 2.0,
            HEIGHT - 12.0,
            escape(&self.x_label),
            TOP + plot_h / 2.0,
            escape(&self.y_label)
        ));
        for (i, series) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let path: Vec<String> = series
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y.min(y_max))))
                .collect();
            svg.push_str(&format!(
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{}"/><rect x="{}" y="{}" width="12" height="3" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
                path.join(" "),
                LEFT + 10.0,
                TOP + 12.0 + 16.0 * i as f64,
                LEFT + 26.0,
                TOP + 16.0 + 16.0 * i as f64,
                escape(&series.name)
            ));
        }
        svg.push_str("</svg>\n");
        svg
    }

    fn x_ticks(&self, x_max_mapped: f64) -> Vec<(String, f64)> {
        match self.x_axis {
            XAxis::Percentile => [0.0, 90.0, 99.0, 99.9, 99.99, 99.999]
                .into_iter()
                .filter(|&p| percentile_position(p) <= x_max_mapped + 1e-9)
                .map(|p| (format!("{p}%"), p))
                .collect(),
            XAxis::Linear => (0..=6)
                .map(|i| {
                    let x = x_max_mapped * f64::from(i) / 6.0;
                    (short_number(x), x)
                })
                .collect(),
        }
    }
}

/// Where percentile `p` (0–100) sits on a percentile axis.
fn percentile_position(p: f64) -> f64 {
    let remaining = (1.0 - p / 100.0).max(1e-6);
    (1.0 / remaining).log10()
}

/// The next "round" value at or above `value` (1, 2 or 5 times a power of 10).
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * magnitude)
        .find(|&candidate| candidate >= value)
        .unwrap_or(10.0 * magnitude)
}

fn short_number(value: f64) -> String {
    if value >= 1_000_000.0 {
        format!("{:.1}M", value / 1_000_000.0)
    } else if value >= 10_000.0 {
        format!("{:.0}k", value / 1000.0)
    } else if value >= 100.0 || value == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests;
