//! Writing results: the JSON file (`--out`) and a small report folder
//! (`--report-dir`) with a Markdown summary and SVG plots.
//!
//! Scenarios hand over a serializable result, summary lines and charts;
//! this module only writes files.

use crate::procstat::ProcSample;
use crate::stats::{LatencyRecorder, LatencySummary, Timeline};
use crate::svg::{Chart, Series, XAxis};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A named chart; written as `<scenario>-<name>.svg`.
#[derive(Debug, Clone)]
pub struct Plot {
    /// Short name, part of the file name.
    pub name: &'static str,
    /// The chart.
    pub chart: Chart,
}

/// Writes `value` as pretty JSON to `path`, creating parent folders.
///
/// # Errors
///
/// When the file cannot be written.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    create_parent(path)?;
    let text = serde_json::to_string_pretty(value).context("encoding results")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// Writes `<dir>/<scenario>.md` with `lines` and every plot as
/// `<dir>/<scenario>-<name>.svg`; returns the Markdown file's path.
///
/// # Errors
///
/// When a file cannot be written.
pub fn write_report(
    dir: &Path,
    scenario: &str,
    lines: &[String],
    plots: &[Plot],
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut markdown = format!("# `{scenario}` run\n\n");
    for line in lines {
        markdown.push_str(&format!("- {line}\n"));
    }
    for plot in plots {
        let file = format!("{scenario}-{}.svg", plot.name);
        std::fs::write(dir.join(&file), plot.chart.render())
            .with_context(|| format!("writing {file}"))?;
        markdown.push_str(&format!("\n![{}]({file})\n", plot.chart.title));
    }
    let path = dir.join(format!("{scenario}.md"));
    std::fs::write(&path, markdown).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display())),
        _ => Ok(()),
    }
}

/// Latency by percentile, in milliseconds, one line per distribution.
pub fn latency_chart(title: &str, distributions: &[(&str, &LatencyRecorder)]) -> Chart {
    Chart {
        title: title.to_owned(),
        x_label: "percentile".to_owned(),
        y_label: "latency (ms)".to_owned(),
        x_axis: XAxis::Percentile,
        series: distributions
            .iter()
            .map(|(name, recorder)| Series {
                name: (*name).to_owned(),
                points: recorder
                    .spectrum()
                    .into_iter()
                    // The last point is the 100th percentile, which the
                    // axis cannot place; 99.999 stands for the tail.
                    .map(|(percentile, micros)| (percentile.min(99.999), micros as f64 / 1000.0))
                    .collect(),
            })
            .collect(),
    }
}

/// Events per second over the run, one line per timeline, aligned on the
/// earliest start.
pub fn rate_chart(title: &str, y_label: &str, timelines: &[(&str, &Timeline)]) -> Chart {
    let origin = timelines
        .iter()
        .map(|(_, timeline)| timeline.start_unix_us)
        .min()
        .unwrap_or(0);
    Chart {
        title: title.to_owned(),
        x_label: "time (s)".to_owned(),
        y_label: y_label.to_owned(),
        x_axis: XAxis::Linear,
        series: timelines
            .iter()
            .map(|(name, timeline)| {
                let shift = timeline.start_unix_us.saturating_sub(origin) as f64 / 1e6;
                Series {
                    name: (*name).to_owned(),
                    points: timeline
                        .rate_points()
                        .into_iter()
                        .map(|(secs, rate)| (secs + shift, rate))
                        .collect(),
                }
            })
            .collect(),
    }
}

/// Hub CPU (percent of one core) and resident memory (MiB) over the run.
pub fn resources_chart(title: &str, samples: &[ProcSample]) -> Chart {
    let origin = samples.first().map_or(0, |sample| sample.at_unix_us);
    let secs = |sample: &ProcSample| sample.at_unix_us.saturating_sub(origin) as f64 / 1e6;
    let cpu = samples
        .windows(2)
        .map(|pair| {
            let wall = pair[1].at_unix_us.saturating_sub(pair[0].at_unix_us).max(1) as f64;
            (
                secs(&pair[1]),
                pair[1].cpu_since(&pair[0]) as f64 / wall * 100.0,
            )
        })
        .collect();
    let rss = samples
        .iter()
        .map(|sample| (secs(sample), sample.rss_kib as f64 / 1024.0))
        .collect();
    Chart {
        title: title.to_owned(),
        x_label: "time (s)".to_owned(),
        y_label: "CPU % of one core / RSS MiB".to_owned(),
        x_axis: XAxis::Linear,
        series: vec![
            Series {
                name: "hub CPU (% of one core)".to_owned(),
                points: cpu,
            },
            Series {
                name: "hub RSS (MiB)".to_owned(),
                points: rss,
            },
        ],
    }
}

/// `label p50/p90/p99/p99.9/max` in milliseconds.
pub fn latency_line(label: &str, summary: &LatencySummary) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "{label} (ms, n={}): p50 {:.3}, p90 {:.3}, p99 {:.3}, p99.9 {:.3}, max {:.3}",
        summary.count,
        ms(summary.p50_us),
        ms(summary.p90_us),
        ms(summary.p99_us),
        ms(summary.p999_us),
        ms(summary.max_us)
    )
}
