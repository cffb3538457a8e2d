//! Unit tests for the SVG charts.

use super::*;

#[test]
fn chart_is_a_complete_svg_with_one_line_per_series() {
    let chart = Chart {
        title: "latency <p>".to_owned(),
        x_label: "percentile".to_owned(),
        y_label: "ms".to_owned(),
        x_axis: XAxis::Percentile,
        series: vec![
            Series {
                name: "a".to_owned(),
                points: vec![(0.0, 0.1), (99.0, 1.0), (99.9, 3.0)],
            },
            Series {
                name: "b".to_owned(),
                points: vec![(0.0, 0.2)],
            },
        ],
    };
    let svg = chart.render();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 2);
    assert!(svg.contains("latency &lt;p&gt;"));
}

#[test]
fn axis_tops_are_round_numbers() {
    assert_eq!(nice_ceiling(0.0), 1.0);
    assert_eq!(nice_ceiling(3.2), 5.0);
    assert_eq!(nice_ceiling(20_000.0), 20_000.0);
    assert_eq!(nice_ceiling(21_000.0), 50_000.0);
}
